"""MAC addresses: one form everywhere (lower-case text, "02:42:ac:1e:00:02") and one parser.

A MAC reaches netlink (as 6 bytes), the restart record, QEMU's and Solo5's command lines and
the user's options; each of them takes what ``parse_mac`` returns.
"""
from __future__ import annotations

_HEX = frozenset("0123456789abcdefABCDEF")


def format_mac(data: bytes) -> str:
    return ":".join("%02x" % b for b in data)


def mac_bytes(text: str) -> bytes:
    """"aa:bb:cc:dd:ee:ff" (either case) to 6 bytes; ValueError for anything else.

    Exactly six groups of two ASCII hex digits: int(x, 16) alone also takes " a", "+a", "_a"
    or other scripts' digits, and a MAC reaches QEMU's and Solo5's command lines as written.
    """
    if not (isinstance(text, str) and len(text) == 17
            and all(c == ":" if i % 3 == 2 else c in _HEX for i, c in enumerate(text))):
        raise ValueError("%r is not a MAC address like aa:bb:cc:dd:ee:ff" % (text,))
    return bytes.fromhex(text.replace(":", ""))


def parse_mac(text: str, unicast: bool = True) -> str:
    """``text`` as a MAC in lower case; ValueError when it is none. ``unicast``: also refuse
    what no interface can have as its own address, multicast (broadcast included) and all
    zeros (the kernel's is_valid_ether_addr)."""
    octets = mac_bytes(text)
    if unicast and octets[0] & 1:
        raise ValueError("%s is a multicast MAC address, not a unicast one" % text)
    if unicast and not any(octets):
        raise ValueError("00:00:00:00:00:00 is not a usable MAC address")
    return format_mac(octets)


def random_mac(raw: bytes | None = None) -> str:
    """A fresh locally administered unicast MAC (bit 1 of the first octet set, bit 0 clear)."""
    import os

    raw = bytearray(os.urandom(6) if raw is None else raw[:6])
    raw[0] = (raw[0] & 0xFC) | 0x02
    return format_mac(raw)
