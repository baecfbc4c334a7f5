"""IP addresses, interfaces (an address with its prefix) and networks as small values: the part
of ``ipaddress`` a run reads, without what ``ipaddress`` costs to import.

``import ipaddress`` loads functools, collections and the rest of what they import: about 4 ms
of a run's start on this kind of machine, more than ukrun's own work on the kernel. A run reads
addresses from netlink (packed bytes), from its restart record and from resolv.conf (text),
and writes them into the guest's words, the record and messages. The values and their text are
here; reading text back is ukrun.kernel.inet_text's (a run that finds no record and needs no
DNS server reads none), and ``public()`` turns these values into ``ipaddress`` objects where
the library hands them to its users (``ukrun.discover``, ``ukrun.plan``).

The values keep ``ipaddress``'s names and meanings for what ukrun uses (``ip``, ``network``,
``prefixlen``, ``with_prefixlen``, ``netmask``, ``packed``, ``version``, ``scope_id``,
``is_loopback`` ...), write the text ``ipaddress`` writes (on this Python), parse what it
parses, and compare equal to (and hash like) the ``ipaddress`` object of the same value, so the
two mix in sets, dicts and comparisons. Code that takes addresses from outside (tests, library
users) can be given either. ``kind(value)`` says what a value is, for both.
"""
from __future__ import annotations

import sys

# From Python 3.13 ipaddress writes an IPv4-mapped IPv6 address with its IPv4 part dotted
# (::ffff:1.2.3.4), and such an address is loopback when its IPv4 address is.
_MAPPED_AS_IPV4 = sys.version_info >= (3, 13)

ADDRESS, INTERFACE, NETWORK = "address", "interface", "network"
_BITS = {4: 32, 6: 128}
_SIZES = {4: 4, 16: 6}  # packed length -> version


def _frozen(self, name, value):
    raise AttributeError("%s is immutable" % type(self).__name__)


def _public_kind(value):
    """What an ``ipaddress`` object is, or None for anything else. None too while ipaddress
    was never imported: then no such object can exist, and nothing is imported to ask."""
    module = sys.modules.get("ipaddress")
    if module is None:
        return None
    if isinstance(value, (module.IPv4Interface, module.IPv6Interface)):
        return INTERFACE
    if isinstance(value, (module.IPv4Address, module.IPv6Address)):
        return ADDRESS
    if isinstance(value, (module.IPv4Network, module.IPv6Network)):
        return NETWORK
    return None


def kind(value):
    """(ADDRESS, INTERFACE or NETWORK, 4 or 6) for an address value of this module or of
    ``ipaddress``; None for anything else (text, None, ...)."""
    found = _KINDS.get(type(value)) or _public_kind(value)
    return None if found is None else (found, value.version)


# --- addresses ------------------------------------------------------------------------------

class IP:
    """An IPv4 or IPv6 address: ``packed`` (4 or 16 bytes, network order) and, for IPv6, the
    zone ``scope_id`` (fe80::1%eth0) or None."""

    __slots__ = ("packed", "scope_id")
    __setattr__ = _frozen

    def __init__(self, packed: bytes, scope_id: str | None = None):
        if type(packed) is not bytes or len(packed) not in _SIZES:
            raise ValueError("%r is no packed IPv4 or IPv6 address" % (packed,))
        if scope_id is not None and (len(packed) != 16 or not scope_id or "%" in scope_id):
            raise ValueError("zone %r on %r" % (scope_id, packed))
        object.__setattr__(self, "packed", packed)
        object.__setattr__(self, "scope_id", scope_id)

    @classmethod
    def from_int(cls, value: int, version: int) -> "IP":
        return cls(value.to_bytes(_BITS[version] // 8, "big"))

    @property
    def version(self) -> int:
        return _SIZES[len(self.packed)]

    @property
    def max_prefixlen(self) -> int:
        return _BITS[self.version]

    def __int__(self) -> int:
        return int.from_bytes(self.packed, "big")

    def _in(self, prefix: int, length: int) -> bool:
        bits = self.max_prefixlen
        return int(self) >> (bits - length) == prefix >> (bits - length)

    @property
    def is_loopback(self) -> bool:
        if self.version == 4:
            return self._in(0x7F << 24, 8)
        mapped = self.ipv4_mapped if _MAPPED_AS_IPV4 else None
        return int(self) == 1 if mapped is None else mapped.is_loopback

    @property
    def is_unspecified(self) -> bool:
        return int(self) == 0

    @property
    def is_multicast(self) -> bool:
        return self._in(0xE0 << 24, 4) if self.version == 4 else self._in(0xFF << 120, 8)

    @property
    def is_link_local(self) -> bool:
        return self._in(0xA9FE << 16, 16) if self.version == 4 else self._in(0xFE80 << 112, 10)

    @property
    def is_reserved(self) -> bool:
        if self.version == 4:
            return self._in(0xF0 << 24, 4)
        return any(self._in(prefix << 112, length) for prefix, length in _V6_RESERVED)

    @property
    def ipv4_mapped(self) -> "IP | None":
        """The IPv4 address in ::ffff:a.b.c.d, else None (IPv6 only, as in ipaddress)."""
        if self.version != 6:
            raise AttributeError("an IPv4 address has no ipv4_mapped")
        return IP(self.packed[12:]) if self.packed[:12] == _MAPPED_PREFIX else None

    def __str__(self) -> str:
        if self.version == 4:
            return "%d.%d.%d.%d" % tuple(self.packed)
        text = _v6_text(int(self), mapped_dotted=_MAPPED_AS_IPV4)
        return text if self.scope_id is None else "%s%%%s" % (text, self.scope_id)

    def __repr__(self) -> str:
        return "IP(%r)" % str(self)

    def __eq__(self, other):
        if type(other) is IP or _public_kind(other) == ADDRESS:
            return (self.packed == other.packed
                    and self.scope_id == getattr(other, "scope_id", None))
        return NotImplemented

    def __hash__(self) -> int:  # ipaddress's, so that both find each other in sets and dicts
        if self.version == 4:
            return hash(hex(int(self)))
        return hash((int(self), self.scope_id))


_MAPPED_PREFIX = bytes(10) + b"\xff\xff"
# ipaddress's IPv6 reserved networks, as (first 16 bits, prefix length).
_V6_RESERVED = ((0x0000, 8), (0x0100, 8), (0x0200, 7), (0x0400, 6), (0x0800, 5), (0x1000, 4),
                (0x4000, 3), (0x6000, 3), (0x8000, 3), (0xA000, 3), (0xC000, 3), (0xE000, 4),
                (0xF000, 5), (0xF800, 6), (0xFE00, 9))


def _v6_text(value: int, mapped_dotted: bool) -> str:
    """RFC 5952 text, as ipaddress writes it: lower-case hex, the longest run of two or more
    zero groups (the first of equal ones) as "::"."""
    if mapped_dotted and value >> 32 == 0xFFFF:
        return "::ffff:%d.%d.%d.%d" % tuple((value & 0xFFFFFFFF).to_bytes(4, "big"))
    groups = [value >> shift & 0xFFFF for shift in range(112, -16, -16)]
    best_start, best_length, start = -1, 0, -1
    for index, group in enumerate(groups):
        if group:
            start = -1
            continue
        if start < 0:
            start = index
        if index - start + 1 > best_length:
            best_start, best_length = start, index - start + 1
    texts = ["%x" % group for group in groups]
    if best_length < 2:
        return ":".join(texts)
    head = ":".join(texts[:best_start])
    tail = ":".join(texts[best_start + best_length:])
    return head + "::" + tail


# --- interfaces and networks ---------------------------------------------------------------

def _mask(prefixlen: int, version: int) -> int:
    bits = _BITS[version]
    return ((1 << prefixlen) - 1) << (bits - prefixlen)


def _netmask(prefixlen: int, version: int) -> IP:
    return IP.from_int(_mask(prefixlen, version), version)


def _check_prefix(prefixlen, version: int) -> int:
    if type(prefixlen) is not int or not 0 <= prefixlen <= _BITS[version]:
        raise ValueError("prefix length %r for IPv%d" % (prefixlen, version))
    return prefixlen


class Network:
    """A network: ``network_address`` (host bits zero) and ``prefixlen``."""

    __slots__ = ("network_address", "prefixlen")
    __setattr__ = _frozen

    def __init__(self, address: IP, prefixlen: int, strict: bool = True):
        """``address`` with its host bits cleared; ValueError when ``strict`` and it has any
        (as ipaddress's ``strict``)."""
        version = address.version
        _check_prefix(prefixlen, version)
        value = int(address)
        masked = value & _mask(prefixlen, version)
        if strict and masked != value:
            raise ValueError("%s/%d has host bits set" % (address, prefixlen))
        object.__setattr__(self, "network_address", IP.from_int(masked, version))
        object.__setattr__(self, "prefixlen", prefixlen)

    @property
    def version(self) -> int:
        return self.network_address.version

    @property
    def max_prefixlen(self) -> int:
        return self.network_address.max_prefixlen

    @property
    def netmask(self) -> IP:
        return _netmask(self.prefixlen, self.version)

    @property
    def broadcast_address(self) -> IP:
        host = (1 << (self.max_prefixlen - self.prefixlen)) - 1
        return IP.from_int(int(self.network_address) | host, self.version)

    @property
    def with_prefixlen(self) -> str:
        return "%s/%d" % (self.network_address, self.prefixlen)

    def __contains__(self, address) -> bool:
        if kind(address) != (ADDRESS, self.version):
            return False
        return int(address) & _mask(self.prefixlen, self.version) == int(self.network_address)

    def __str__(self) -> str:
        return self.with_prefixlen

    def __repr__(self) -> str:
        return "Network(%r)" % str(self)

    def __eq__(self, other):
        if type(other) is Network or _public_kind(other) == NETWORK:
            return (self.version == other.version and self.prefixlen == other.prefixlen
                    and int(self.network_address) == int(other.network_address))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(int(self.network_address) ^ int(self.netmask))


class Interface:
    """An address on a link with its prefix: ``ip`` and ``network`` (what ipaddress's
    IPv4Interface/IPv6Interface hold), ``prefixlen``."""

    __slots__ = ("ip", "prefixlen")
    __setattr__ = _frozen

    def __init__(self, ip: IP, prefixlen: int):
        if type(ip) is not IP:
            raise TypeError("%r is no inet.IP" % (ip,))
        object.__setattr__(self, "ip", ip)
        object.__setattr__(self, "prefixlen", _check_prefix(prefixlen, ip.version))

    @property
    def version(self) -> int:
        return self.ip.version

    @property
    def packed(self) -> bytes:
        return self.ip.packed

    @property
    def scope_id(self) -> str | None:
        return self.ip.scope_id

    @property
    def network(self) -> Network:
        return Network(self.ip, self.prefixlen, strict=False)

    @property
    def netmask(self) -> IP:
        return _netmask(self.prefixlen, self.version)

    @property
    def with_prefixlen(self) -> str:
        """ADDR/N, the address without its zone (ipaddress's with_prefixlen)."""
        ip = self.ip
        text = str(ip) if ip.version == 4 else _v6_text(int(ip), mapped_dotted=False)
        return "%s/%d" % (text, self.prefixlen)

    def __str__(self) -> str:
        return "%s/%d" % (self.ip, self.prefixlen)

    def __repr__(self) -> str:
        return "Interface(%r)" % str(self)

    def __eq__(self, other):
        if type(other) is Interface or _public_kind(other) == INTERFACE:
            return (self.packed == other.packed
                    and self.scope_id == getattr(other, "scope_id", None)
                    and self.prefixlen == other.network.prefixlen)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((int(self.ip), self.prefixlen,
                     int(self.ip) & _mask(self.prefixlen, self.version)))


_KINDS = {IP: ADDRESS, Interface: INTERFACE, Network: NETWORK}


# --- conversions ------------------------------------------------------------------------------

def unzoned(value):
    """``value`` (an address of this module or of ipaddress) without its IPv6 zone."""
    if getattr(value, "scope_id", None) is None:
        return value
    return IP(value.packed) if type(value) is IP else type(value)(int(value))


def public(value):
    """``value`` with every address, interface and network of this module in it made the
    ``ipaddress`` object of the same value: tuples, lists and dicts are rebuilt, and so are
    ukrun value classes (ukrun.valueclass), through their constructor. Anything else is
    returned as it is. Imports ipaddress: for what the library hands its users."""
    found = _KINDS.get(type(value))
    if found is not None:
        import ipaddress

        if found == ADDRESS:
            return ipaddress.ip_address(str(value))
        if found == INTERFACE:
            return ipaddress.ip_interface((public(value.ip), value.prefixlen))
        return ipaddress.ip_network(str(value))
    if type(value) in (tuple, list):
        return type(value)(public(item) for item in value)
    if type(value) is dict:
        return {key: public(item) for key, item in value.items()}
    fields = getattr(type(value), "_fields", None)
    if fields is not None and isinstance(getattr(type(value), "_defaults", None), dict):
        return type(value)(*(public(getattr(value, name)) for name in fields))
    return value
