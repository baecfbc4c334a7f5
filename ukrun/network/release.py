"""Giving a handover back from its record alone: what ``ukrun cni`` DEL (a new process, maybe
long after ADD) and ``ukrun hook`` teardown undo, read from the kernel and the tap's record.

``release_steps`` is pure, like ukrun.network.wiring.plan_steps, and its steps are the same
``Step``\\ s the executor (ukrun.network.executor.Kernel) carries out. It undoes what the
wiring built: the tap (with its ingress qdisc and filter) and the record on it, the
interface's ingress qdisc (tc) or ukrun's bridge (bridge), and gives the interface back what
the record holds: its MAC, the IPv4 and IPv6 address with their default routes, the IPv6
address generation mode the namespace gives new links, and the link-local address that mode
makes from the MAC. What a record does not hold is not given back (secondary addresses,
routes other than the default ones): the handover of an interface that had them is given
back exactly only by the run that made it (ukrun.runner.Applied.undo).

The record is input: only a tun device whose alias is a valid record for the interface is
ukrun's; a foreign link named like the tap gets no step, and a record naming a bridge ukrun
did not make is refused (RecordError), as a run refuses it.
"""
from __future__ import annotations

import _socket  # not socket: see ukrun.kernel.rtnl

from ukrun.kernel import inet, inet_text
from ukrun.kernel.ffi import lib
from ukrun.kernel.rtnl_objects import Address, Route
from ukrun.network.record import Record
from ukrun.network.wiring import Step, View, check_record_against, owns_bridge


def _step(op: str, text: str, **args) -> Step:
    return Step(op, args, text)  # no undo: what is given back stays given back


def recorded(snapshot, interface: str, tap: str) -> Record | None:
    """The record on ``tap`` when it is ukrun's tap for ``interface``: a tun device carrying a
    valid record naming it. None when there is no such link, or it is someone else's (another
    kind, no record, a record for another interface). RecordError for a record that starts
    like ukrun's and does not validate."""
    link = snapshot.link(tap)
    if link is None or link.kind != "tun":
        return None
    record = Record.from_alias(link.alias, tap=tap)
    return record if record is not None and record.interface == interface else None


def link_local(mac: str) -> inet.Interface:
    """fe80::/64 with the modified EUI-64 of ``mac`` (RFC 4291 appendix A): the link-local
    address the kernel's address generation mode eui64 gives a link with that MAC."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    eui = octets[:3] + [0xFF, 0xFE] + octets[3:]
    groups = ["%x" % (eui[n] << 8 | eui[n + 1]) for n in range(0, 8, 2)]
    return inet_text.interface("fe80::%s/64" % ":".join(groups), 6)


def _addresses(record: Record, index: int, gen_mode: int | None) -> tuple:
    addresses = []
    if record.ipv4 is not None:
        network = record.ipv4.network
        broadcast = network.broadcast_address if network.prefixlen <= 30 else None
        addresses.append(Address(index, record.ipv4, lib.RT_SCOPE_UNIVERSE,
                                 broadcast=broadcast))
    if record.ipv6 is not None:
        addresses.append(Address(index, record.ipv6, lib.RT_SCOPE_UNIVERSE))
    if gen_mode == lib.IN6_ADDR_GEN_MODE_EUI64:
        addresses.append(Address(index, link_local(record.interface_mac), lib.RT_SCOPE_LINK))
    return tuple(addresses)


def _routes(record: Record, index: int) -> tuple:
    routes = []
    if record.gateway4 is not None:
        routes.append(Route(_socket.AF_INET, inet.Network(inet.IP(bytes(4)), 0),
                            record.gateway4, index, onlink=record.gateway4_onlink))
    if record.gateway6 is not None:
        routes.append(Route(_socket.AF_INET6, inet.Network(inet.IP(bytes(16)), 0),
                            record.gateway6, index))
    return tuple(routes)


def release_steps(snapshot, interface: str, tap: str, gen_mode: int | None = None) -> list:
    """The steps that give ``interface`` back from ``tap``'s record, in order; empty when
    there is nothing of ukrun's to give back (no tap, a foreign one, a record for another
    interface): so a second call does nothing. ``gen_mode``: the IPv6 address generation
    mode the interface gets back (the namespace's default for new links; None: IPv6 is off
    and the mode is left as it is)."""
    record = recorded(snapshot, interface, tap)
    if record is None:
        return []
    by_name = {link.name: link for link in snapshot.links}
    view = View(links=by_name, names={link.index: link.name for link in snapshot.links})
    check_record_against(record, view, tap)
    link = by_name.get(interface)
    steps = []
    if link is not None and record.wiring == "tc":
        if any(q.kind == "ingress" and q.index == link.index for q in snapshot.qdiscs):
            steps.append(_step("delete_ingress", "delete %s's ingress qdisc" % interface,
                               name=interface))
    if link is not None and record.wiring == "bridge" and owns_bridge(view, record.bridge, tap):
        if view.master_of(interface) == record.bridge:
            steps.append(_step("release", "release %s from %s" % (interface, record.bridge),
                               name=interface))
        ports = {n for n, port in by_name.items() if port.master == by_name[record.bridge].index}
        if not ports - {interface, tap}:
            steps.append(_step("delete_link", "delete bridge %s" % record.bridge,
                               name=record.bridge))
    steps.append(_step("delete_tap", "delete tap %s" % tap, name=tap))
    if link is None:  # gone with its namespace's other end: nothing to give it back
        return steps
    if link.mac != record.interface_mac:
        steps.append(_step("set_mac", "set %s's MAC back to %s" % (interface,
                                                                  record.interface_mac),
                           name=interface, mac=record.interface_mac))
    if gen_mode is not None and link.addr_gen_mode not in (None, gen_mode):
        steps.append(_step("set_addr_gen_mode", "set %s's IPv6 address generation mode back "
                           "to %d" % (interface, gen_mode), name=interface, mode=gen_mode))
    addresses, routes = _addresses(record, link.index, gen_mode), _routes(record, link.index)
    steps.append(_step("restore_addresses", "give %s back %s" % (interface, ", ".join(
        [str(a.interface) for a in addresses] + ["default via %s" % r.gateway for r in routes])),
        interface=interface, addresses=addresses, routes=routes))
    return steps


def handover_problem(snapshot, interface: str, tap: str) -> str | None:
    """What is missing from the handover of ``interface`` to ``tap`` in ``snapshot`` (what
    CNI CHECK reports), or None when it is all there: ukrun's record on the tap, the tap
    persistent, the interface without a global address, and the wiring (both redirects, or
    both enslaved to ukrun's bridge)."""
    record = recorded(snapshot, interface, tap)
    if record is None:
        return "%s holds no record of a handover of %s" % (tap, interface)
    link, tap_link = snapshot.link(interface), snapshot.link(tap)
    if link is None:
        return "%s is gone" % interface
    info = tap_link.tun
    if info is not None and info.persist is False:
        return "%s is not persistent" % tap
    if any(a.index == link.index and a.scope == lib.RT_SCOPE_UNIVERSE
           for a in snapshot.addresses):
        return "%s holds a global address again" % interface
    if record.wiring == "tc":
        redirects = {(index, f.redirect_to) for index, filters in snapshot.filters.items()
                     for f in filters if f.redirect_to}
        for source, target in ((link, tap_link), (tap_link, link)):
            if (source.index, target.index) not in redirects:
                return "nothing redirects %s's frames to %s" % (source.name, target.name)
        return None
    bridge = snapshot.link(record.bridge)
    if bridge is None or any(port.master != bridge.index for port in (link, tap_link)):
        return "%s and %s are not both enslaved to %s" % (interface, tap, record.bridge)
    return None
