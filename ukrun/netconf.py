"""Discovery: what a container's interface holds (address, gateway, MAC, MTU), read from
the kernel over route netlink, and everything needed to put it back exactly.
"""
from __future__ import annotations

import _socket  # not socket: see ukrun.rtnl
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

from ukrun._ffi import lib
from ukrun.errors import DiscoveryError
from ukrun.rtnl import Address, Link, Route, Rtnl
from ukrun.valueclass import value_class


@value_class(frozen=True)
class NetConfig:
    """What ``discover`` read from one interface: all a run hands the guest, and all it must
    restore. ``ipv4``/``gateway4`` are what the guest is given (``gateway4_onlink`` for /32
    setups such as Calico's); ``addresses`` and ``routes`` hold everything on the link, IPv4
    and IPv6, exactly as the kernel reported it. ``to_json()`` gives strings and ints."""

    interface: str
    index: int
    mac: str
    mtu: int
    ipv4: IPv4Interface
    gateway4: IPv4Address | None
    gateway4_onlink: bool
    ipv6: IPv6Interface | None
    gateway6: IPv6Address | None
    addresses: tuple  # every Address on the link (v4 + v6), primaries first as the kernel lists them
    routes: tuple  # every main-table Route whose oif is the link, v4 + v6

    def to_json(self) -> dict:
        return {
            "interface": self.interface, "index": self.index, "mac": self.mac, "mtu": self.mtu,
            "ipv4": str(self.ipv4), "gateway4": _str_or_none(self.gateway4),
            "gateway4_onlink": self.gateway4_onlink,
            "ipv6": _str_or_none(self.ipv6), "gateway6": _str_or_none(self.gateway6),
            "addresses": [address_json(a) for a in self.addresses],
            "routes": [route_json(r) for r in self.routes],
        }


def _str_or_none(value) -> str | None:
    return None if value is None else str(value)


def address_json(addr: Address) -> dict:
    return {"index": addr.index, "address": str(addr.interface), "scope": addr.scope,
            "flags": addr.flags, "broadcast": _str_or_none(addr.broadcast), "label": addr.label,
            "peer": _str_or_none(addr.peer)}


def route_json(route: Route) -> dict:
    return {"family": route.family, "dst": str(route.dst), "gateway": _str_or_none(route.gateway),
            "oif": route.oif, "table": route.table, "protocol": route.protocol,
            "scope": route.scope, "type": route.type, "priority": route.priority,
            "onlink": route.onlink, "prefsrc": _str_or_none(route.prefsrc)}


def _is_global(addr: Address) -> bool:
    # IFA_F_SECONDARY is IFA_F_TEMPORARY for IPv6: neither is the address to hand over.
    return addr.scope == lib.RT_SCOPE_UNIVERSE and not addr.flags & lib.IFA_F_SECONDARY


def _default_gateway(routes, family: int) -> Route | None:
    """The default route through a gateway with the lowest metric, as the kernel picks it."""
    defaults = [r for r in routes if r.family == family and r.is_default and r.type == lib.RTN_UNICAST
                and r.gateway is not None]
    return min(defaults, key=lambda r: r.priority or 0, default=None)


def _read(rtnl: Rtnl, interface: str):
    link = rtnl.find_link(interface)
    if link is None:
        raise DiscoveryError("interface %s not found" % interface,
                             hint="is this the container's network namespace?")
    addresses = rtnl.addresses(index=link.index)
    routes = [r for r in rtnl.routes(_socket.AF_UNSPEC) if r.oif == link.index]
    return link, addresses, routes


def _config(interface: str, link: Link, addresses: list, routes: list) -> NetConfig:
    if link.mac is None:
        raise DiscoveryError("interface %s has no MAC address" % interface,
                             hint="ukrun hands over Ethernet interfaces only")
    v4 = [a for a in addresses if a.family == _socket.AF_INET]
    if not v4:
        raise DiscoveryError("interface %s has no IPv4 address" % interface)
    primary4 = [a for a in v4 if _is_global(a)]
    if not primary4:
        raise DiscoveryError("interface %s has no global IPv4 address (only %s)"
                             % (interface, ", ".join(str(a.interface) for a in v4)))
    primary6 = [a for a in addresses if a.family == _socket.AF_INET6 and _is_global(a)]
    gateway4 = _default_gateway(routes, _socket.AF_INET)
    gateway6 = _default_gateway(routes, _socket.AF_INET6)
    return NetConfig(
        interface=link.name, index=link.index, mac=link.mac, mtu=link.mtu,
        ipv4=primary4[0].interface,
        gateway4=None if gateway4 is None else gateway4.gateway,
        gateway4_onlink=gateway4 is not None and gateway4.onlink,
        ipv6=primary6[0].interface if primary6 else None,
        gateway6=None if gateway6 is None else gateway6.gateway,
        addresses=tuple(addresses), routes=tuple(routes))


def discover(interface: str = "eth0", rtnl: Rtnl | None = None) -> NetConfig:
    """Read ``interface``'s configuration in the current network namespace.

    Raises DiscoveryError when it is missing, has no MAC address or no IPv4 address.
    """
    if rtnl is not None:
        return _config(interface, *_read(rtnl, interface))
    with Rtnl() as own:
        return _config(interface, *_read(own, interface))
