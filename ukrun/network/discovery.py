"""Discovery: what a container's interface holds (address, gateway, MAC, MTU), and everything
needed to put it back exactly.

The kernel is read once (``read``: one request of each kind) into a ``Snapshot``; what an
interface holds is a pure function of it (``config``), and a run plans from the same
snapshot, so discovery and the plan cannot disagree. ``discover(interface)`` does both.
"""
from __future__ import annotations

import _socket  # not socket: see ukrun.kernel.rtnl

from ukrun.kernel import inet
from ukrun.kernel.ffi import lib
from ukrun.errors import DiscoveryError
from ukrun.kernel.rtnl_objects import Address, Link, Route
from ukrun.kernel.rtnl import Rtnl
from ukrun.valueclass import fresh, value_class


@value_class(frozen=True)
class NetConfig:
    """What one interface holds: all a run hands the guest, and all it must restore.
    ``ipv4``/``gateway4`` are what the guest is given (``gateway4_onlink`` for /32 setups such
    as Calico's); ``addresses`` and ``routes`` hold everything on the link, IPv4 and IPv6,
    exactly as the kernel reported it. ``mac`` is the interface's own MAC. ``source`` is
    "discovered", or "recorded" when the interface holds no address any more because an
    earlier run in this namespace moved it: the addresses, gateway and MAC are then the ones
    that run recorded (a restart). ``to_json()`` gives strings and ints.

    What ``discover`` and ``ukrun.plan`` hand out holds ipaddress objects (IPv4Interface,
    IPv4Address ...); a run itself carries ukrun.kernel.inet's equivalents (``inet.public``)."""

    interface: str
    index: int
    mac: str
    mtu: int
    ipv4: inet.Interface | None
    gateway4: inet.IP | None
    gateway4_onlink: bool
    ipv6: inet.Interface | None
    gateway6: inet.IP | None
    addresses: tuple  # every Address on the link (v4 + v6), primaries first as the kernel lists them
    routes: tuple  # every main-table Route whose oif is the link, v4 + v6
    source: str = "discovered"  # or "recorded"

    def to_json(self) -> dict:
        return {
            "interface": self.interface, "index": self.index, "mac": self.mac, "mtu": self.mtu,
            "ipv4": _str_or_none(self.ipv4), "gateway4": _str_or_none(self.gateway4),
            "gateway4_onlink": self.gateway4_onlink,
            "ipv6": _str_or_none(self.ipv6), "gateway6": _str_or_none(self.gateway6),
            "addresses": [address_json(a) for a in self.addresses],
            "routes": [route_json(r) for r in self.routes], "source": self.source,
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
    # IFA_F_SECONDARY is IFA_F_TEMPORARY for IPv6: neither is the address to hand over; and
    # fe80::/10 is link-local whatever scope a dump gives it.
    return (addr.scope == lib.RT_SCOPE_UNIVERSE and not addr.flags & lib.IFA_F_SECONDARY
            and not addr.interface.ip.is_link_local)


def _default_gateway(routes, family: int) -> Route | None:
    """The default route through a gateway with the lowest metric, as the kernel picks it."""
    defaults = [r for r in routes if r.family == family and r.is_default and r.type == lib.RTN_UNICAST
                and r.gateway is not None]
    return min(defaults, key=lambda r: r.priority or 0, default=None)


def _config(link: Link, addresses: tuple, routes: tuple, own_mac: str | None) -> NetConfig:
    interface = link.name
    if link.mac is None:
        raise DiscoveryError("interface %s has no MAC address" % interface,
                             hint="ukrun hands over Ethernet interfaces only")
    primary4 = [a for a in addresses if a.family == _socket.AF_INET and _is_global(a)]
    primary6 = [a for a in addresses if a.family == _socket.AF_INET6 and _is_global(a)]
    if not primary4 and not primary6:  # an IPv6-only pod is fine, an address-less one is not
        others = [str(a.interface) for a in addresses]
        raise DiscoveryError("interface %s has no global IPv4 or IPv6 address%s"
                             % (interface, " (only %s)" % ", ".join(others) if others else ""))
    gateway4 = _default_gateway(routes, _socket.AF_INET) if primary4 else None
    gateway6 = _default_gateway(routes, _socket.AF_INET6) if primary6 else None
    return NetConfig(
        interface=interface, index=link.index, mac=own_mac or link.mac, mtu=link.mtu,
        ipv4=primary4[0].interface if primary4 else None,
        gateway4=None if gateway4 is None else gateway4.gateway,
        gateway4_onlink=gateway4 is not None and gateway4.onlink,
        ipv6=primary6[0].interface if primary6 else None,
        gateway6=None if gateway6 is None else gateway6.gateway,
        addresses=addresses, routes=routes)


# --- one snapshot of the kernel -------------------------------------------------------------

@value_class(frozen=True)
class Snapshot:
    """What the kernel held when ``read`` asked: the one input of discovery and of a plan."""

    links: tuple  # every Link, in the kernel's order
    addresses: tuple  # every Address of the interfaces read for (others' are not decoded)
    routes: tuple  # every main-table Route, IPv4 and IPv6
    qdiscs: tuple = ()  # every Qdisc, when read for tc
    filters: dict = fresh(dict)  # ifindex -> its ingress Filters (tc links with an ingress qdisc)

    def link(self, name: str) -> Link | None:
        return next((link for link in self.links if link.name == name), None)


def _names(names):
    return (names,) if isinstance(names, str) else names  # "eth0" is no set of names


def read(rtnl: Rtnl, interfaces=("eth0",), tc_links=None, links=None) -> Snapshot:
    """The kernel's state in one request of each kind: the links (``links`` when the caller
    has just dumped them), the addresses of ``interfaces`` (one dump each), the main-table
    routes of both families (one dump); with ``tc_links`` (names) also the qdiscs, and the
    ingress filters of those of them that have an ingress qdisc (a link without one has none
    to list)."""
    interfaces, tc_links = _names(interfaces), _names(tc_links)
    links = tuple(rtnl.links() if links is None else links)
    addresses = tuple(address for link in links if link.name in interfaces
                      for address in rtnl.addresses(link.index))
    routes = tuple(rtnl.routes(_socket.AF_UNSPEC))
    if tc_links is None:
        return Snapshot(links, addresses, routes)
    qdiscs = tuple(rtnl.qdiscs())
    ingress = {q.index for q in qdiscs if q.kind == "ingress"}
    filters = {link.index: tuple(rtnl.filters(link.index)) for link in links
               if link.name in tc_links and link.index in ingress}
    return Snapshot(links, addresses, routes, qdiscs, filters)


def config(snapshot: Snapshot, interface: str, record=None) -> NetConfig:
    """What ``interface`` holds in ``snapshot``. ``record``: what an earlier run recorded when
    it took this interface (a ukrun.network.record.Record), or None: its MAC is the interface's own,
    and when the interface holds no IPv4 address any more (that run moved it), the record is
    the configuration (source "recorded").

    Raises DiscoveryError when the interface is missing, or (without a record) has no MAC
    address or no global IPv4 address.
    """
    link = snapshot.link(interface)
    if link is None:
        raise DiscoveryError("interface %s not found" % interface,
                             hint="is this the container's network namespace?")
    addresses = tuple(a for a in snapshot.addresses if a.index == link.index)
    routes = tuple(r for r in snapshot.routes if r.oif == link.index)
    own_mac = record.interface_mac if record is not None else None
    try:
        return _config(link, addresses, routes, own_mac)
    except DiscoveryError:
        if record is None:
            raise
    return NetConfig(link.name, link.index, own_mac, link.mtu, record.ipv4, record.gateway4,
                     record.gateway4_onlink, record.ipv6, record.gateway6, addresses, routes,
                     source="recorded")


def discover(interface: str = "eth0", rtnl: Rtnl | None = None) -> NetConfig:
    """Read ``interface``'s configuration in the current network namespace, with ipaddress
    objects for its addresses (``config`` of a ``read``, made public: ukrun.kernel.inet.public).

    Raises DiscoveryError when it is missing, has no MAC address or no IPv4 address.
    """
    if rtnl is None:
        with Rtnl() as own:
            return discover(interface, own)
    return inet.public(config(read(rtnl, (interface,)), interface))
