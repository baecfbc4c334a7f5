"""Address text read as ``ipaddress`` reads it, into ukrun.kernel.inet's values.

A run reads text only from a restart record and from resolv.conf; the rest of its addresses
come packed from netlink. Pure.
"""
from __future__ import annotations

from ukrun.kernel.inet import _BITS, IP, Interface

# --- integers ------------------------------------------------------------------------------

_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")


def v4_int(text: str) -> int:
    """A dotted-quad IPv4 address as a number; ValueError when ``text`` is none."""
    octets = text.split(".")
    if len(octets) != 4:
        raise ValueError("expected 4 octets in %r" % text)
    value = 0
    for octet in octets:
        # ASCII digits only, at most 3, no leading zero (as glibc's inet_pton), at most 255.
        if (not octet or not _DIGITS.issuperset(octet) or len(octet) > 3
                or (octet != "0" and octet[0] == "0") or int(octet) > 255):
            raise ValueError("%r is not an octet of an IPv4 address (%r)" % (octet, text))
        value = value << 8 | int(octet)
    return value


def _hextet(text: str) -> int:
    if not _HEX.issuperset(text) or not 1 <= len(text) <= 4:
        raise ValueError("%r is not a group of an IPv6 address" % text)
    return int(text, 16)


def v6_int(text: str) -> int:
    """An IPv6 address (without its zone) as a number, by ipaddress's rules: 3 to 9
    colon-separated parts, one "::" at most, an optional dotted IPv4 suffix, 1 to 4 hex digits
    a group."""
    parts = text.split(":")
    if len(parts) < 3:
        raise ValueError("%r has too few parts for an IPv6 address" % text)
    if "." in parts[-1]:
        low = v4_int(parts.pop())
        parts += ["%x" % (low >> 16), "%x" % (low & 0xFFFF)]
    if len(parts) > 9:
        raise ValueError("%r has too many colons" % text)
    skip = None
    for index in range(1, len(parts) - 1):
        if not parts[index]:
            if skip is not None:
                raise ValueError("%r has more than one '::'" % text)
            skip = index
    if skip is not None:
        high, low = skip, len(parts) - skip - 1
        if not parts[0]:
            high -= 1
            if high:
                raise ValueError("%r starts with a single ':'" % text)
        if not parts[-1]:
            low -= 1
            if low:
                raise ValueError("%r ends with a single ':'" % text)
        skipped = 8 - high - low
        if skipped < 1:
            raise ValueError("%r has too many groups for its '::'" % text)
    else:
        if len(parts) != 8:
            raise ValueError("%r has not 8 groups" % text)
        high, low, skipped = 8, 0, 0
    value = 0
    for part in parts[:high]:
        value = value << 16 | _hextet(part)
    value <<= 16 * skipped
    for part in parts[len(parts) - low:]:
        value = value << 16 | _hextet(part)
    return value


def prefix(text: str, version: int) -> int:
    """The prefix length after an address's '/', as ipaddress reads it: a decimal number up to
    the version's bits or, for IPv4, a netmask or a hostmask; ValueError when it is none."""
    if text.isascii() and text.isdigit() and int(text) <= (32 if version == 4 else 128):
        return int(text)
    if version == 4:  # ipaddress also takes a netmask or a hostmask there
        try:
            mask = v4_int(text)
        except ValueError:
            mask = None
        for candidate in (mask, None if mask is None else mask ^ 0xFFFFFFFF):
            if candidate is not None:
                ones = 32 - ((candidate & -candidate).bit_length() - 1 if candidate else 32)
                if candidate == 0xFFFFFFFF << (32 - ones) & 0xFFFFFFFF:
                    return ones
    raise ValueError("%r is not a prefix length of IPv%d" % (text, version))


# --- addresses and interfaces -------------------------------------------------------------

def _address(text: str, version: int) -> IP:
    if not isinstance(text, str):
        raise TypeError("an address is text, not %s" % type(text).__name__)
    if not text or "/" in text:
        raise ValueError("%r is not an IPv%d address" % (text, version))
    if version == 4:
        return IP.from_int(v4_int(text), 4)
    text, sep, zone = text.partition("%")
    if sep and (not zone or "%" in zone):
        raise ValueError("%r has no valid zone" % (text + sep + zone))
    if not text:
        raise ValueError("an empty IPv6 address")
    return IP(v6_int(text).to_bytes(16, "big"), zone if sep else None)


def address(text: str, version: int | None = None) -> IP:
    """The address ``text`` writes (an IPv6 zone allowed), as ipaddress.ip_address (or
    IPv4Address/IPv6Address with ``version``) reads it; ValueError when it is none."""
    if version is not None:
        return _address(text, version)
    try:
        return _address(text, 4)
    except ValueError:
        pass
    try:
        return _address(text, 6)
    except ValueError:
        raise ValueError("%r does not appear to be an IPv4 or IPv6 address" % (text,)) from None


def interface(text: str, version: int) -> Interface:
    """``ADDR[/PREFIX]`` as ipaddress's IPv4Interface/IPv6Interface reads it (no prefix: a
    host's; an IPv4 prefix may be a netmask or hostmask); ValueError when it is none."""
    if not isinstance(text, str):
        raise TypeError("an interface is text, not %s" % type(text).__name__)
    parts = text.split("/")
    if len(parts) > 2:
        raise ValueError("more than one '/' in %r" % text)
    ip = _address(parts[0], version)
    if len(parts) == 2:
        prefixlen = prefix(parts[1], version)
    else:
        prefixlen = _BITS[version]
    return Interface(ip, prefixlen)
