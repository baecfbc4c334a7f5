"""What a run starts from: for each interface it hands over, what the kernel holds and what an
earlier run recorded on its tap, from one snapshot (ukrun.network.discovery.read), checked before
anything changes.

``read_kernel`` reads the snapshot and waits a moment before a takeover; ``survey`` is the pure
rest: for each interface (``ukrun.options.per_interface``), the wiring's ``View`` and its
``NetConfig``. Refused here: an interface that is no container's, a record that does not
validate, names taken by something else, and an interface a running guest holds.
"""
from __future__ import annotations

import os

from ukrun.network import discovery
from ukrun.kernel.ffi import lib
from ukrun.errors import DiscoveryError, NetworkError, UsageError
from ukrun.network.discovery import NetConfig
from ukrun.kernel.tap import await_carrier, tap_problem
from ukrun.network.record import Record, RecordError
from ukrun.network.wiring import View, check_record_against, owns_bridge

TAKEOVER_WAIT = 1.0  # seconds a run waits for a just-started guest to open its tap


def _bad_record(tap: str, error: ValueError, only_copy: str | None = None) -> NetworkError:
    """The one-line error for a record that does not validate (RecordError names the tap).
    ``only_copy``: the interface whose addresses exist nowhere but in that record, which must
    then not be deleted."""
    if only_copy is not None:
        hint = ("%s holds no address of its own: this record is the only copy of what an "
                "earlier run moved; do not delete %s: give %s its address back by hand, or "
                "recreate the pod's network" % (only_copy, tap, only_copy))
    else:
        hint = (getattr(error, "hint", None)
                or "if no guest uses %s, delete it (ip link delete %s) and run again, or pass "
                   "--tap NAME" % (tap, tap))
    return NetworkError("%s: not a record ukrun can trust" % error, hint)


def find_record(links, interface: str, tap: str | None = None,
                only_copy: str | None = None) -> Record | None:
    """What an earlier run recorded on the tap it gave ``interface`` to (any tap if None).

    A record on another tap than ``tap`` is refused: two taps would fight over the interface.
    The record is input (anything with CAP_NET_ADMIN in the pod can write an alias): one
    that does not validate is refused on ``tap`` itself, and ignored on other taps unless
    nothing else is found.
    """
    invalid = None
    for link in links:
        if link.kind != "tun":
            continue
        try:
            record = Record.from_alias(link.alias, tap=link.name)
        except ValueError as e:
            if link.name == tap:
                raise _bad_record(link.name, e, only_copy) from None
            invalid = invalid or _bad_record(link.name, e, only_copy)
            continue
        if record is not None and record.interface == interface:
            if tap is not None and link.name != tap:
                raise NetworkError("%s was handed to tap %s by an earlier run"
                                   % (interface, link.name), "pass --tap %s" % link.name)
            return record
    if invalid is not None and tap is None:
        raise invalid
    return None


def ukrun_links(links) -> dict:
    """What earlier runs left in ``links``: {name of a tap or bridge an earlier run made:
    the interface its record names, or None when the record does not validate}. A tap counts
    when its alias is a record; its record's bridge (--wiring bridge) counts too. Neither is a
    container's interface."""
    made = {}
    for link in links:
        if link.kind != "tun":
            continue
        try:
            record = Record.from_alias(link.alias, tap=link.name)
        except ValueError:
            made[link.name] = None  # the survey refuses it on the tap a run names
            continue
        if record is not None:
            made[link.name] = record.interface
            if record.bridge:
                made.setdefault(record.bridge, record.interface)
    return made


def _check_names_free(each, wiring: str, by_name: dict, record: Record | None) -> None:
    if each.tap in by_name and record is None:
        raise NetworkError("%s already exists and was not made by ukrun" % each.tap,
                           "pass --tap NAME")
    if wiring == "bridge" and each.bridge in by_name and not owns_bridge(
            View(links=by_name), each.bridge, each.tap):
        raise NetworkError("%s already exists and was not made by ukrun" % each.bridge,
                           "pass --bridge NAME")


def interface_link(snapshot: discovery.Snapshot, interface: str):
    link = snapshot.link(interface)
    if link is None:
        raise DiscoveryError("interface %s not found" % interface, "pass --interface NAME")
    return link


def _check_container_interface(link, allow_physical: bool) -> None:
    """A real NIC is not a container's interface: ukrun started on a host by mistake (or with
    --network host) must not strip the machine's own network."""
    parent = getattr(link, "parent_dev", None)
    if parent and not allow_physical:
        raise UsageError("%s is a physical NIC (parent device %s), not a container's interface"
                         % (link.name, parent),
                         "run ukrun as a container's entrypoint, not on a host or with "
                         "--network host; --allow-physical takes it anyway")


def bare(snapshot: discovery.Snapshot, link) -> str | None:
    """``link``'s name when it holds no global address: an earlier run moved them."""
    own = [a for a in snapshot.addresses if a.index == link.index
           and a.scope == lib.RT_SCOPE_UNIVERSE]
    return None if own else link.name


def read_kernel(rtnl, o, each: tuple, notes: list | None = None, wait: bool = True,
                attacher: tuple | None = None, links=None) -> tuple:
    """``survey`` of what the kernel holds now, read once (ukrun.network.discovery.read): a (View,
    NetConfig) for each interface of ``each``.

    A tap recorded as handed over by fd had a reader from before the earlier run ended (that
    run held it open across its execve): no carrier means no guest, at once. A tap handed over
    by name is opened by the guest itself some milliseconds after the earlier run's execve
    (which released the namespace lock): before taking its wiring over, this run waits up to
    TAKEOVER_WAIT for such a guest to open it, and refuses if one does; not with ``wait``
    False (a run that changes nothing: a second guest's attach fails, EBUSY). ``links``: the links
    the caller has just dumped (None: dump them here)."""
    interfaces = tuple(e.interface for e in each)
    snapshot = discovery.read(rtnl, interfaces, tc_links=interfaces + tuple(e.tap for e in each),
                              links=links)
    found = survey(snapshot, o, each, notes, attacher)
    taken = [e for e, (view, _) in zip(each, found)
             if view.previous is not None and view.previous.handed_as == "name"]
    if taken and wait:
        if notes is not None:
            notes.append("%s went to the guest by name: waiting up to %g s for a guest that "
                         "may still be opening it" % (", ".join(e.tap for e in taken),
                                                      TAKEOVER_WAIT))
        held = await_carrier(rtnl, [e.tap for e in taken], TAKEOVER_WAIT, every=False)
        for e in taken:
            if e.tap in held:
                raise _live_guest(e)
    return found


def _live_guest(each) -> NetworkError:
    return NetworkError("%s is already handed to a running guest (%s has a reader)"
                        % (each.interface, each.tap),
                        "one guest per interface: stop the other container first")


def survey(snapshot: discovery.Snapshot, o, each: tuple, notes: list | None = None,
           attacher: tuple | None = None) -> tuple:
    """For each interface of ``each`` (ukrun.options.per_interface of the run ``o``), a
    (View, NetConfig): what the run starts from in ``snapshot``, the interface's configuration
    discovered from the same snapshot. Pure; refuses an interface that is no container's, a
    record that does not validate, names taken by something else, and a tap a guest holds.
    ``attacher``: the (euid, groups) the guest attaches to a tap with; None: this process's
    (a handover for a later guest names that guest's: ukrun.handover.plan_handover)."""
    if attacher is None:
        attacher = (os.geteuid(), {os.getegid(), *os.getgroups()})
    by_name = {link.name: link for link in snapshot.links}
    names = {link.index: link.name for link in snapshot.links}
    ingress = frozenset(names[q.index] for q in snapshot.qdiscs
                        if q.kind == "ingress" and q.index in names)
    redirects = frozenset((names[index], names.get(f.redirect_to))
                          for index, filters in snapshot.filters.items()
                          for f in filters if f.redirect_to)
    found = []
    for e in each:
        record = _surveyed_record(snapshot, o, e, by_name, notes, attacher)
        network = discovery.config(snapshot, e.interface, record)
        found.append((View(links=by_name, addresses=network.addresses, routes=network.routes,
                           ingress=ingress, redirects=redirects, previous=record, names=names),
                      network))
    return tuple(found)


def _surveyed_record(snapshot, o, e, by_name: dict, notes, attacher) -> Record | None:
    """What an earlier run recorded for interface ``e``, checked: a record ukrun can trust, on
    a tap it can take over, that no guest holds."""
    link = interface_link(snapshot, e.interface)
    _check_container_interface(link, o.allow_physical)
    record = find_record(snapshot.links, e.interface, e.tap, bare(snapshot, link))
    try:
        check_record_against(record, View(links=by_name), e.tap)
    except RecordError as error:
        raise _bad_record(e.tap, error) from None
    _check_names_free(e, o.wiring, by_name, record)
    if record is None:
        return None
    problem = tap_problem(by_name[e.tap], *attacher)
    if problem:
        raise NetworkError("%s carries a record but cannot be the guest's tap: %s"
                           % (e.tap, problem),
                           "ukrun takes over only a tap it made: pass --tap NAME")
    # A tap has carrier exactly while some process holds it open: the guest.
    if by_name[e.tap].flags & lib.IFF_LOWER_UP:
        raise _live_guest(e)
    if notes is not None:
        notes.append("%s holds what an earlier run moved and no guest has it open: this "
                     "run takes it over" % e.tap)
    return record


def handover_notes(network: NetConfig) -> list:
    """What the guest is not given: the addresses besides the first global one of each family
    (removed with the rest)."""
    interface, notes = network.interface, []
    for version, given in ((4, network.ipv4), (6, network.ipv6)):
        extra = [a for a in network.addresses if a.interface.version == version
                 and a.scope == lib.RT_SCOPE_UNIVERSE and a.interface != given]
        if extra:
            notes.append("only %s is handed over: %s also holds %s, which %s removed and not "
                         "handed over" % (given, interface,
                                          ", ".join(str(a.interface) for a in extra),
                                          "is" if len(extra) == 1 else "are"))
    return notes
