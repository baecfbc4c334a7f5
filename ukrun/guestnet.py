"""What a guest is told about its network, as values: one ``GuestNet`` per interface and the
``DNS`` servers and search domains they share; and the words of the default format (``mirage``),
which a run with the default builds from them.

Every format, the template and what each leaves out are ukrun.ipargs', on top of this module:
a run with the default format loads none of them.
"""
from __future__ import annotations

from ukrun import inet
from ukrun.valueclass import value_class

_HEX = frozenset("0123456789abcdefABCDEF")


def _check_name(what: str, value, optional: bool = False):
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise TypeError("%s must be a str, not %s" % (what, type(value).__name__))
    # These go into words and into colon-separated fields (Unikraft, Linux).
    if not value or any(c.isspace() or c in "\0:/," or not c.isprintable() for c in value):
        raise ValueError("%s %r: not a name (empty, or white space, control, ':', '/' or ',')"
                         % (what, value))


# What each address of a GuestNet must be (ukrun.inet.kind: an inet value or the ipaddress
# object named here).
_KINDS = {"ipv4": ((inet.INTERFACE, 4), "IPv4Interface"),
          "gateway4": ((inet.ADDRESS, 4), "IPv4Address"),
          "ipv6": ((inet.INTERFACE, 6), "IPv6Interface"),
          "gateway6": ((inet.ADDRESS, 6), "IPv6Address")}


def _check_type(what: str, value):
    wanted, name = _KINDS[what]
    if value is not None and inet.kind(value) != wanted:
        raise TypeError("%s must be %s or None, not %s"
                        % (what, name, type(value).__name__))


@value_class(frozen=True)
class GuestNet:
    """One interface as the guest gets it. ``interface``: the container's name for it (eth0);
    ``tap``: the tap the guest is attached to; ``device``: the guest's own name for it (the
    Solo5 net name, ``eth0`` in a Linux guest), None when it has none. Addresses are
    ukrun.inet values or the ipaddress objects of the same kind."""

    interface: str
    tap: str
    mac: str | None = None
    mtu: int | None = None
    ipv4: inet.Interface | None = None
    gateway4: inet.IP | None = None
    gateway4_onlink: bool = False
    ipv6: inet.Interface | None = None
    gateway6: inet.IP | None = None
    device: str | None = None

    def __post_init__(self):
        _check_name("interface", self.interface)
        _check_name("tap", self.tap)
        _check_name("device", self.device, optional=True)
        if self.mac is not None:
            parts = self.mac.split(":") if isinstance(self.mac, str) else ()
            if len(parts) != 6 or any(len(p) != 2 or not set(p) <= _HEX for p in parts):
                raise ValueError("mac %r: not xx:xx:xx:xx:xx:xx" % (self.mac,))
        if self.mtu is not None and (type(self.mtu) is not int or not 0 < self.mtu < 1 << 32):
            raise ValueError("mtu %r: not a positive 32-bit integer" % (self.mtu,))
        for what in _KINDS:
            _check_type(what, getattr(self, what))
        if type(self.gateway4_onlink) is not bool:
            raise TypeError("gateway4_onlink must be a bool")


@value_class(frozen=True)
class DNS:
    """The nameservers (addresses: ukrun.inet values or ipaddress objects; usable ones, in
    order, see ``ukrun.resolv.usable_nameservers``) and search domains every interface
    shares."""

    servers: tuple = ()
    search: tuple = ()

    def __post_init__(self):
        for server in self.servers:
            found = inet.kind(server)
            if found is None or found[0] != inet.ADDRESS:
                raise TypeError("DNS server %r is not an IPv4 or IPv6 address" % (server,))
        for domain in self.search:
            _check_name("search domain", domain)


NO_DNS = DNS()


def plain(address) -> str:
    """An address as a guest gets it: without a zone, which only names a container interface."""
    return str(inet.unzoned(address))


def with_prefix(iface) -> str:
    return "%s/%d" % (plain(iface.ip), iface.network.prefixlen)


def mirage(nets, dns, template=None) -> tuple:
    """MirageOS 4's words, from the first interface (ukrun.ipargs says which)."""
    if not nets:
        return ()
    net, words = nets[0], []
    if net.ipv4 is not None:
        words.append("--ipv4=%s" % net.ipv4.with_prefixlen)
        if net.gateway4 is not None:
            words.append("--ipv4-gateway=%s" % net.gateway4)
    if net.ipv6 is not None:
        words.append("--ipv6=%s" % with_prefix(net.ipv6))
        if net.gateway6 is not None:
            words.append("--ipv6-gateway=%s" % plain(net.gateway6))
        if net.ipv4 is None:
            words.append("--ipv6-only=true")
        words.append("--accept-router-advertisements=false")
    return tuple(words)


# The formats whose words are kernel parameters: before a "--" on a kernel command line.
KERNEL_PARAMS = frozenset(("unikraft", "unikraft-lwip", "linux"))
# The formats whose words may name DNS servers or search domains (a template's may).
TAKES_DNS = frozenset(("mirage-dns", "unikraft", "linux", "template"))
