"""Wiring the container's interface to the guest's tap, as plans: lists of steps with undos.

Two wirings (DESIGN.md):
- ``tc``: an ingress qdisc on the interface and on the tap, each with a u32 match-all filter
  whose mirred action redirects every frame to the other; the interface keeps its MAC.
- ``bridge``: the old runner's topology: bridge br0 with the interface and the tap enslaved.

``plan_steps`` is pure: it compares what is wanted with a ``View`` of the kernel and returns
only the steps still missing, so a second run in the same namespace (a container restart)
reuses what the first built. ``Kernel`` (in ukrun.network.executor) carries the steps out.

The record of what a run moved (ukrun.network.record) is input: anything holding CAP_NET_ADMIN in the
pod can write it. So a plan names only the interface, the tap, and a bridge ukrun made for that
tap, which carries ``bridge_mark(tap)`` as its alias; a record naming any other is refused.
"""
from __future__ import annotations

import _socket  # not socket: see ukrun.kernel.rtnl

import os

from ukrun.kernel.ffi import lib
from ukrun.kernel.rtnl_objects import Address, Route
from ukrun.network.discovery import address_json, route_json
from ukrun.network.record import WIRINGS, Record, RecordError
from ukrun.valueclass import fields, fresh, is_value, value_class


@value_class(frozen=True)
class Step:
    """One change: ``op`` names a ``Kernel`` method, ``args`` its keywords; ``undo`` reverts it."""

    op: str
    args: dict[str, object]
    text: str
    undo: tuple["Step", ...] = ()

    def to_json(self) -> dict:
        return {"do": self.text, "op": self.op, "args": jsonable(self.args),
                "undo": [u.text for u in self.undo]}


def jsonable(value):
    """Addresses, routes and links as JSON-able values (str for ip objects, dicts for records)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Address):  # the keys inspect writes ("address", not "interface")
        return address_json(value)
    if isinstance(value, Route):
        return route_json(value)
    if is_value(value):
        return {k: jsonable(getattr(value, k)) for k in fields(value)}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


# --- MAC addresses -------------------------------------------------------------------------

# --- the plan ---------------------------------------------------------------------------------

@value_class(frozen=True)
class Wanted:
    """The wiring the runner decided on."""

    wiring: str  # "tc" | "bridge"
    interface: str
    tap: str
    bridge: str
    mtu: int
    record: Record
    interface_mac: str | None = None  # a new MAC for the interface; None keeps it
    hold_tap: bool = False  # keep the tap open to hand it over as an fd
    # Who may attach to a new tap without CAP_NET_ADMIN (TUNSETOWNER, TUNSETGROUP); None sets
    # none: then any process in the namespace that can open /dev/net/tun may attach.
    owner: int | None = None
    group: int | None = None


@value_class(frozen=True)
class View:
    """What the kernel holds now (read by the runner; nothing here asks the kernel)."""

    links: dict[str, object]  # name -> rtnl.Link
    addresses: tuple[object, ...] = ()  # rtnl.Address of the interface
    routes: tuple[object, ...] = ()  # main-table rtnl.Route through the interface
    ingress: frozenset[str] = frozenset()  # links with an ingress qdisc
    redirects: frozenset[tuple[str, str]] = frozenset()  # (from, to) mirred redirects
    previous: Record | None = None  # what an earlier run recorded on the tap
    names: dict[int, str] = fresh(dict)  # index -> name

    def master_of(self, name: str) -> str | None:
        link = self.links.get(name)
        return self.names.get(link.master) if link is not None and link.master else None


# --- what is ukrun's -----------------------------------------------------------------------

def bridge_mark(tap: str) -> str:
    """The alias a bridge ukrun creates for ``tap`` carries: what lets a later run delete it.

    Not a record (no "ukrun:" prefix), and naming the tap, so that the bridge of another
    tap's wiring is not this one's to take down.
    """
    return "ukrun bridge of %s" % tap


def owns_bridge(view: View, name: str | None, tap: str) -> bool:
    """Whether ``name`` is a bridge ukrun made for ``tap``: kind bridge and carrying the mark."""
    link = view.links.get(name) if name is not None else None
    return link is not None and link.kind == "bridge" and link.alias == bridge_mark(tap)


def check_record_against(record: Record | None, view: View, tap: str) -> None:
    """RecordError when ``record`` (read from ``tap``) is invalid, or names a bridge that is
    there but is not one ukrun made: a forged ``b=eth1`` must not get eth1 released, enslaved
    or deleted. A recorded bridge that is gone is fine: there is nothing left to take down.
    """
    if record is None:
        return
    record.check(tap)  # again: a View may hold a Record that never went through from_alias
    if record.bridge is None or record.bridge not in view.links:
        return
    if not owns_bridge(view, record.bridge, tap):
        link = view.links[record.bridge]
        raise RecordError("b=%r names %s, which ukrun did not make (kind %s, alias %r)"
                          % (record.bridge, record.bridge, link.kind, link.alias), tap)


def _ports(view: View, bridge: str) -> set:
    index = view.links[bridge].index
    return {name for name, link in view.links.items() if link.master == index}


def _step(op, text, undo=(), **args) -> Step:
    return Step(op, args, text, tuple(undo))


def tap_steps(want: Wanted, view: View) -> list:
    tap, old = want.tap, view.links.get(want.tap)
    steps = []
    if old is None:
        steps.append(_step("create_tap", "create persistent tap %s%s" % (tap, _owned(want)),
                           [_step("delete_tap", "delete tap %s" % tap, name=tap)], name=tap,
                           owner=want.owner, group=want.group))
    alias = want.record.to_alias()
    if old is None or old.alias != alias:
        undo = [_step("set_alias", "clear the record on %s" % tap, name=tap,
                      alias=old.alias if old is not None and old.alias else "")]
        steps.append(_step("set_alias", "record what %s hands over on %s" % (want.interface, tap),
                           undo, name=tap, alias=alias))
    if old is None:  # made persistent only once it carries the record (Kernel.op_create_tap)
        steps.append(_step("persist_tap", "make %s persistent" % tap, name=tap))
    if old is None or old.mtu != want.mtu:
        undo = [_step("set_mtu", "set %s MTU back to %d" % (tap, old.mtu), name=tap,
                      mtu=old.mtu)] if old is not None else []
        steps.append(_step("set_mtu", "set %s MTU to %d (%s's)" % (tap, want.mtu, want.interface),
                           undo, name=tap, mtu=want.mtu))
    # Solo5 >= 0.11 turns these off itself but needs CAP_NET_ADMIN, gone by the time it runs.
    steps.append(_step("disable_offloads", "turn off GRO/GSO/TSO on %s" % tap, name=tap))
    return steps + (hold_steps(tap) if want.hold_tap else [])


def hold_steps(tap: str) -> list:
    # Open the tap to hand it over as an fd; its owner (and group) need no CAP_NET_ADMIN:
    # the one step a run without it takes (ukrun.planning.handover_for).
    return [_step("hold_tap", "keep %s open to hand it over as an fd" % tap,
                  [_step("close_tap", "close %s" % tap, name=tap)], name=tap)]


def _owned(want: Wanted) -> str:
    # " for uid 1000 and gid 1000": who alone may attach to the new tap.
    who = [what % n for what, n in (("uid %d", want.owner), ("gid %d", want.group))
           if n is not None]
    return " for %s" % " and ".join(who) if who else " that any process here may attach to"


def _up_step(name: str, view: View) -> list:
    old = view.links.get(name)
    if old is not None and old.up:
        return []
    undo = [_step("set_down", "set %s down" % name, name=name)] if old is not None else []
    return [_step("set_up", "set %s up" % name, undo, name=name)]


def _redirect_steps(source: str, target: str, view: View) -> list:
    steps = []
    if source not in view.ingress:
        steps.append(_step("add_ingress", "add an ingress qdisc to %s" % source,
                           [_step("delete_ingress", "delete %s's ingress qdisc" % source,
                                  name=source)], name=source))
    if (source, target) not in view.redirects:
        # No undo of its own: the filter goes with the ingress qdisc it hangs on.
        steps.append(_step("add_redirect", "redirect every frame arriving on %s to %s"
                           % (source, target), source=source, target=target))
    return steps


def _enslave_step(name: str, bridge: str, view: View) -> list:
    if view.master_of(name) == bridge:
        return []
    return [_step("enslave", "enslave %s to %s" % (name, bridge),
                  [_step("release", "release %s from %s" % (name, bridge), name=name)],
                  name=name, master=bridge)]


def _mac_step(name: str, view: View, mac: str | None) -> list:
    old = view.links[name].mac
    if mac is None or old == mac:
        return []
    return [_step("set_mac", "set %s's MAC to %s" % (name, mac),
                  [_step("set_mac", "set %s's MAC back to %s" % (name, old), name=name, mac=old)],
                  name=name, mac=mac)]


def quiet_ipv6_steps(name: str, view: View) -> list:
    """Keep the namespace's own IPv6 stack off the wire on ``name``: address generation mode
    NONE, so the kernel gives it no link-local address (its link-local address is the last
    source of duplicate address detection, router solicitations and MLD reports). A new link
    (``name`` not in the view) gets it before it goes up; it goes with the link on undo."""
    old = view.links.get(name)
    mode = lib.IN6_ADDR_GEN_MODE_NONE
    if old is not None and old.addr_gen_mode in (None, mode):  # no IPv6 there, or quiet already
        return []
    undo = ([_step("set_addr_gen_mode", "set %s's IPv6 address generation mode back to %d"
                   % (name, old.addr_gen_mode), name=name, mode=old.addr_gen_mode)]
            if old is not None else [])
    return [_step("set_addr_gen_mode", "give %s no IPv6 link-local address" % name, undo,
                  name=name, mode=mode)]


def ipv6_route_steps(want: Wanted, view: View) -> list:
    """Delete the IPv6 routes through a gateway on the interface (the default route): unlike
    IPv4's, they stay when the addresses go, and the guest is the one that routes now."""
    steps = []
    for route in view.routes:
        if route.family == _socket.AF_INET6 and route.gateway is not None:
            undo = _step("restore_addresses", "give %s back its route %s via %s"
                         % (want.interface, route.dst, route.gateway),
                         interface=want.interface, addresses=(), routes=(route,))
            steps.append(_step("delete_route", "remove the IPv6 route %s via %s from %s"
                               % (route.dst, route.gateway, want.interface), [undo],
                               route=route))
    return steps


def flush_steps(want: Wanted, view: View) -> list:
    """Take the interface's IPv4 and IPv6 addresses away (link-local included, with
    ``quiet_ipv6_steps`` first so none comes back): the guest answers for them now.

    One step per address, so a failure half-way undoes exactly what went. IPv4 secondaries go
    before their primary (deleting a primary first takes its secondaries along); IPv6 in dump
    order (newest first), so the undo re-adds the oldest first and the kernel's order returns.
    The kernel drops the routes that went with the addresses: the undo of the first deletion,
    which runs last, puts them back.
    """
    v4 = [a for a in view.addresses if a.interface.version == 4]
    v6 = [a for a in view.addresses if a.interface.version == 6]
    steps = []
    for address in v6 + v4[::-1]:
        routes = tuple(view.routes) if not steps else ()
        back = "give %s back %s%s" % (want.interface, address.interface,
                                      " and its routes" if routes else "")
        undo = _step("restore_addresses", back, interface=want.interface, addresses=(address,),
                     routes=routes)
        steps.append(_step("delete_address", "remove %s from %s" % (address.interface,
                                                                    want.interface),
                           [undo], address=address))
    return steps


def teardown_steps(want: Wanted, view: View) -> list:
    """Undo what an earlier run built when this run wants another wiring (or another bridge)."""
    prev = view.previous
    if prev is None or (prev.wiring == want.wiring
                        and (want.wiring == "tc" or prev.bridge == want.bridge)):
        return []
    steps = []
    if prev.wiring == "tc":
        for source, target in ((want.interface, want.tap), (want.tap, want.interface)):
            if source in view.ingress:
                undo = [_step("add_ingress", "add an ingress qdisc to %s" % source, name=source),
                        _step("add_redirect", "redirect %s to %s" % (source, target),
                              source=source, target=target)]
                steps.append(_step("delete_ingress", "delete %s's ingress qdisc (left by an "
                                   "earlier run)" % source, undo, name=source))
        return steps
    bridge = prev.bridge
    if owns_bridge(view, bridge, want.tap):  # else gone, or foreign (plan_steps refused that)
        for name in (want.interface, want.tap):
            if view.master_of(name) == bridge:
                steps.append(_step("release", "release %s from %s (left by an earlier run)"
                                   % (name, bridge),
                                   [_step("enslave", "enslave %s to %s" % (name, bridge),
                                          name=name, master=bridge)], name=name))
        # Deleting a bridge releases every port: one that someone else added stays enslaved.
        if not _ports(view, bridge) - {want.interface, want.tap}:
            steps.append(_step("delete_link", "delete bridge %s (left by an earlier run)"
                               % bridge, _bridge_undo(view, bridge, want.tap), name=bridge))
    if want.wiring == "tc":
        # Its own MAC back: under tc the interface and the guest share it again. (Moving to
        # another bridge keeps the fresh one: a bridge port must not hold the guest's MAC.)
        steps += _mac_step(want.interface, view, prev.interface_mac)
    return steps


def tc_steps(want: Wanted, view: View) -> list:
    return (tap_steps(want, view) + quiet_ipv6_steps(want.tap, view) + _up_step(want.tap, view)
            + _redirect_steps(want.interface, want.tap, view)
            + _redirect_steps(want.tap, want.interface, view)
            + ipv6_route_steps(want, view) + quiet_ipv6_steps(want.interface, view)
            + flush_steps(want, view) + _up_step(want.interface, view))


def _mark_step(bridge: str, tap: str) -> Step:
    return _step("set_alias", "mark %s as ukrun's" % bridge,
                 [_step("set_alias", "clear the mark on %s" % bridge, name=bridge, alias="")],
                 name=bridge, alias=bridge_mark(tap))


def _bridge_undo(view: View, bridge: str, tap: str) -> list:
    """What puts a deleted bridge back: created, marked, and up if it was."""
    undo = [_step("create_bridge", "create bridge %s" % bridge, name=bridge),
            _mark_step(bridge, tap)]
    if view.links[bridge].up:
        undo.append(_step("set_up", "set %s up" % bridge, name=bridge))
    return undo


PASSING_PREFIX = "ukbr"  # + 8 hex digits: a new bridge's name until it is marked


def new_bridge_steps(bridge: str, tap: str) -> list:
    """Create ``bridge`` under a passing name, mark it, then give it its name: the kernel sets
    no alias on a link it creates, and a run killed between creating and marking must not leave
    an unmarked ``bridge`` that no later run could call its own."""
    passing = "%s%08x" % (PASSING_PREFIX, int.from_bytes(os.urandom(4), "big"))
    return [_step("create_bridge", "create bridge %s (as %s until marked)" % (bridge, passing),
                  [_step("delete_link", "delete bridge %s" % passing, name=passing)],
                  name=passing),
            _mark_step(passing, tap),
            _step("rename", "rename %s to %s" % (passing, bridge),
                  [_step("rename", "rename %s back to %s" % (bridge, passing), name=bridge,
                         to=passing)], name=passing, to=bridge)]


def bridge_steps(want: Wanted, view: View) -> list:
    """The old runner's order: bridge, tap, enslave both, flush the address, tap up, bridge up
    (and the interface up, should it be down: a guest behind a down link hears nothing)."""
    steps = []
    if want.bridge not in view.links:
        steps += new_bridge_steps(want.bridge, want.tap)
    elif not owns_bridge(view, want.bridge, want.tap):
        # The runner refuses a taken name before planning; this keeps the plan honest alone.
        raise ValueError("%s exists and was not made by ukrun" % want.bridge)
    steps += tap_steps(want, view)
    # Before enslaving: a bridge keeps frames for a port's own MAC for itself.
    steps += _mac_step(want.interface, view, want.interface_mac)
    steps += _enslave_step(want.interface, want.bridge, view)
    steps += _enslave_step(want.tap, want.bridge, view)
    steps += ipv6_route_steps(want, view) + quiet_ipv6_steps(want.interface, view)
    steps += flush_steps(want, view)
    steps += quiet_ipv6_steps(want.tap, view) + quiet_ipv6_steps(want.bridge, view)
    return (steps + _up_step(want.tap, view) + _up_step(want.bridge, view)
            + _up_step(want.interface, view))


def plan_steps(want: Wanted, view: View) -> list:
    """The steps that turn ``view`` into ``want``, in order; empty when it is there already.

    Every step names the interface, the tap, or a bridge ukrun made (marked) or makes now:
    RecordError when the earlier record names a bridge that is not ukrun's, ValueError when
    the wanted bridge is taken by someone else's link.
    """
    if want.wiring not in WIRINGS:
        raise ValueError("unknown wiring %r (choose from %s)" % (want.wiring, ", ".join(WIRINGS)))
    check_record_against(view.previous, view, want.tap)
    build = tc_steps if want.wiring == "tc" else bridge_steps
    return leftover_steps(want, view) + teardown_steps(want, view) + build(want, view)


def leftover_steps(want: Wanted, view: View) -> list:
    """Delete what a run killed half-way through making a bridge left: one under its passing
    name (new_bridge_steps), marked as this tap's, with no ports."""
    steps = []
    for name, link in sorted(view.links.items()):
        if (name.startswith(PASSING_PREFIX) and name != want.bridge
                and owns_bridge(view, name, want.tap) and not _ports(view, name)):
            steps.append(_step("delete_link", "delete bridge %s (left half-made by an earlier "
                               "run)" % name, _bridge_undo(view, name, want.tap), name=name))
    return steps
