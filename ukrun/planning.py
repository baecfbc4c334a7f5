"""Planning a run: ``Options`` (what it is asked), ``plan(options) -> Plan`` (what it will do).

``plan`` reads the kernel once (one ukrun.network.discovery snapshot, which the survey of each
interface reads: ukrun.network.survey), checks everything a run needs (ukrun.preflight) and
lists, for each interface it hands over, the wiring's steps (ukrun.network.wiring), then builds
the program's command line (ukrun.guest.targets, with the network words of ukrun.guest.formats).
It changes nothing: ``--dry-run`` prints the plan (``Plan.to_json``), ukrun.runner carries it out.

A run hands over one interface or several (--interface, repeatable): each gets its own tap,
wiring, restart record and guest device (a ``Handover``).
"""
from __future__ import annotations

import os

from ukrun import preflight
from ukrun.errors import DiscoveryError, PrivilegeError, UkrunError
from ukrun.guest import formats
from ukrun.guest.formats import KERNEL_PARAMS, NO_DNS, TAKES_DNS, GuestNet
from ukrun.guest.targets import TAP_FD, Launch, Nic, Target
from ukrun.guest import programs
from ukrun.kernel import caps, devices
from ukrun.kernel.ffi import lib
from ukrun.kernel.nslock import LOCK_NAME
from ukrun.kernel.mac import parse_mac, random_mac
from ukrun.network.discovery import NetConfig
from ukrun.network.record import Record, RecordError
from ukrun.network.survey import TAKEOVER_WAIT, handover_notes, read_kernel, ukrun_links
from ukrun.network.wiring import View, Wanted, hold_steps, plan_steps
from ukrun.options import default_taps, field_options, items, per_interface
from ukrun.valueclass import fields, fresh, value_class

# How the plan's program is exec'd (ukrun.runner has the details of each).
EXEC_MODES = ("direct", "forked", "dropped")


def _declare_options():
    """``Options``: ``target``, ``unikernel``, ``args``, then one field for each option of
    ukrun.options' table that a run reads, with the table's default."""
    annotations = {"target": "str", "unikernel": "str", "args": "Sequence[str]"}
    namespace = {"__module__": __name__, "__qualname__": "Options", "args": ()}
    for option in field_options():
        annotations[option.dest] = "object"
        namespace[option.dest] = option.default
    namespace["__annotations__"] = annotations
    namespace["__doc__"] = (
        "What a run is asked to do: ``Options(target, unikernel, args=(), %s)``. Each keyword "
        "is the option of ``ukrun TARGET`` of that name (``keep_caps`` is --keep-cap, "
        "``tender_args`` --tender-arg), with the same default; ``keep_caps`` None keeps "
        "NET_BIND_SERVICE when this process holds it. ``interface``, ``tap``, ``bridge``, "
        "``mac`` and ``net_name`` take one value per interface, as a tuple (or one value "
        "alone): the Nth pairs with the Nth interface, and one not given is its default for "
        "that position (tap1, br1, inherit, service1 for the second)." % ", ".join(
            "%s=%r" % (option.dest, option.default) for option in field_options()))
    return value_class(type("Options", (), namespace))


Options = _declare_options()


@value_class(frozen=True)
class Handover:
    """One interface a run hands over: ``each``, its options (``interface``, ``tap``,
    ``bridge``, ``mac``, ``net_name``, ``position``: ukrun.options.per_interface); ``network``,
    what it holds; ``guest_mac``, the MAC the guest's device gets (None: the guest picks one);
    ``tap_fd``, the fd its tap is handed over as (None: by name); ``device``, the guest's own
    name for it (the Solo5 net name, eth0, eth1... in a Linux guest; None: unknown);
    ``steps``, the wiring's (ukrun.network.wiring.plan_steps), which touch its own links alone."""

    each: object
    network: NetConfig
    guest_mac: str | None
    tap_fd: int | None
    device: str | None
    steps: tuple = ()

    @property
    def tap(self) -> str:
        return self.each.tap

    def to_json(self) -> dict:
        n = self.network
        return dict(n.to_json(), tap=self.tap, guest_mac=self.guest_mac, tap_fd=self.tap_fd,
                    device=self.device)


@value_class
class Plan:
    options: Options
    target: Target
    handovers: tuple  # one Handover per interface, in --interface order
    argv: list[str]
    keep_caps: frozenset
    notes: list[str] = fresh(list)
    exec_mode: str = "direct"  # EXEC_MODES
    init_program: str | None = None  # the init a forked exec becomes
    dns: object = None  # ukrun.guest.formats.DNS: the nameservers and search domains handed over

    @property
    def steps(self) -> list:
        """Every interface's steps, in order."""
        return [step for h in self.handovers for step in h.steps]

    def to_json(self) -> dict:
        """What --dry-run prints: text and numbers only (addresses as text, capabilities by
        name). Its first interface's network, guest_mac and tap_fd are also its own keys, as
        a plan of one interface has always said."""
        first = self.handovers[0]
        return {"target": self.target.name, "argv": list(self.argv),
                "network": first.network.to_json(), "guest_mac": first.guest_mac,
                "steps": [s.to_json() for s in self.steps], "tap_fd": first.tap_fd,
                "keep_caps": sorted(caps.cap_name(c) for c in self.keep_caps),
                "exec_mode": self.exec_mode, "init": self.init_program,
                "dns": dns_json(self.dns), "notes": self.notes,
                "networks": [h.to_json() for h in self.handovers]}


# --- plan ---------------------------------------------------------------------------------

def choose_exec_mode(init: str, pid1: bool, can_bound: bool) -> str:
    """``init``: auto | always | never; ``can_bound``: CAP_SETPCAP is effective."""
    if init == "always" or (init == "auto" and (pid1 or not can_bound)):
        return "forked"
    return "direct" if can_bound else "dropped"


def resolve_programs(o: Options, target: Target, keep: frozenset = frozenset(),
                     exec_mode: str = "direct") -> str | None:
    """Check the unikernel and find the tender; returns the tender's path (None for unix).

    What is exec'd must be an executable this machine runs (``programs.check_program_image``),
    and what a tender loads must stay readable once the capabilities are dropped. Execve runs
    without CAP_DAC_OVERRIDE except in exec mode direct, where ukrun still holds it.
    """
    dropped = exec_mode != "direct"
    if target.default_tender is None:
        preflight.check_executable(o.unikernel, "unikernel")
        programs.check_program_image(o.unikernel, "unikernel", keep=keep, dropped=dropped)
        return None
    preflight.check_readable(o.unikernel, "unikernel")
    programs.check_usable_unprivileged(o.unikernel, "unikernel", keep=keep)
    if target.name in ("qemu", "kvm"):
        program = preflight.find_program(o.qemu or target.default_tender, "QEMU")
    else:
        program = preflight.find_program(o.tender or target.default_tender, "tender")
    return programs.check_program_image(program, "QEMU" if target.name in ("qemu", "kvm")
                                         else "tender", keep=keep, dropped=dropped)


def guest_device(target: Target, each) -> str | None:
    """The guest's own name for interface ``each``: the Solo5 net name, ethN in a Linux
    guest under QEMU (virtio devices come up in command-line order); None when unknown."""
    if target.name in ("hvt", "spt"):
        return each.net_name
    return "eth%d" % each.position if target.name in ("qemu", "kvm") else None


def guest_nets(handovers) -> tuple:
    """What the guest's network words describe (ukrun.guest.formats.GuestNet), one per interface."""
    return tuple(GuestNet(h.network.interface, h.tap, h.guest_mac, h.network.mtu,
                          h.network.ipv4, h.network.gateway4, h.network.gateway4_onlink,
                          h.network.ipv6, h.network.gateway6, h.device) for h in handovers)


def guest_words(o: Options, nets, dns) -> tuple:
    """The guest's network words for ``o.ip_args`` (ukrun.guest.formats.build, which loads that
    format's family module alone)."""
    return formats.build(o.ip_args, nets, dns, o.ip_template)


def read_dns(networks, path: str = "/etc/resolv.conf"):
    """(DNS, notes): the nameservers a guest can reach through one of ``networks``
    (NetConfigs) and the search domains, from the container's resolv.conf (Docker's embedded
    127.0.0.11 is replaced by the upstream servers Docker notes in it; ukrun.network.resolv)."""
    from ukrun.guest.formats import DNS
    from ukrun.network.resolv import parse_resolv_conf, usable_nameservers

    networks = items(networks)
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 16)
    except OSError as e:
        return DNS(), ["no nameserver is handed over: %s: %s" % (path, e.strerror)]
    resolv = parse_resolv_conf(text)
    servers, notes = usable_nameservers(resolv,
                                        ipv4=any(n.ipv4 is not None for n in networks),
                                        ipv6=any(n.ipv6 is not None for n in networks))
    return DNS(tuple(servers), tuple(resolv.search)), list(notes)


def dns_json(dns) -> dict | None:
    if dns is None:
        return None
    return {"servers": [str(s) for s in dns.servers], "search": list(dns.search)}


def choose_guest_mac(o: Options, each, target: Target, network: NetConfig, previous, notes):
    if not target.sets_mac:
        notes.append("the %s target cannot set the guest's MAC: --mac %s is ignored"
                     % (o.target, each.mac))
        return None
    if each.mac == "inherit":
        return previous.guest_mac if previous and previous.guest_mac else network.mac
    if each.mac == "random":
        # A restart keeps the random MAC the first run chose: neighbours already cached it.
        if previous and previous.guest_mac and previous.guest_mac != previous.interface_mac:
            return previous.guest_mac
        return random_mac()
    return parse_mac(each.mac)


def _wanted(o: Options, each, view: View, network: NetConfig, guest_mac,
            hold_tap: bool, owner: tuple) -> Wanted:
    bridge = each.bridge if o.wiring == "bridge" else None
    record = Record(each.interface, o.wiring, bridge, network.ipv4, network.gateway4,
                    network.gateway4_onlink, guest_mac, network.mac, network.ipv6,
                    network.gateway6, "fd" if hold_tap else "name")
    try:
        record.check(each.tap)  # what a restart must read back
    except RecordError as e:
        raise UkrunError("cannot hand %s over: %s" % (each.interface, e.problem),
                         "ukrun hands over a unicast host address with its gateway") from None
    current_mac = view.links[each.interface].mac
    # A bridge keeps frames for a port's own MAC: the interface must not share the guest's.
    new_mac = random_mac() if o.wiring == "bridge" and guest_mac == current_mac else None
    return Wanted(o.wiring, each.interface, each.tap, each.bridge, network.mtu, record,
                  new_mac, hold_tap, *owner)


def handover_for(o: Options, target: Target, each, view: View, network: NetConfig,
              notes: list, owner: tuple = (None, None), wire: bool = True) -> Handover:
    """What one interface's handover is made of; its notes go to ``notes``. ``owner``: the
    (uid, gid) a new tap is given (None: none). ``wire`` False: the interface was handed over
    already (view.previous) and nothing is changed; the one step is opening the tap to hand
    it over as an fd, which its owner may do without CAP_NET_ADMIN."""
    notes += handover_notes(network)
    if wire and not view.links[each.interface].up:
        notes.append("%s is administratively down: this run sets it up (and down again if it "
                     "fails)" % each.interface)
    guest_mac = choose_guest_mac(o, each, target, network, view.previous, notes)
    by_fd = target.hands_fd(o.tap_fd, o.tap_by_name)
    tap_fd = TAP_FD + each.position if by_fd else None
    if wire and not by_fd:
        notes.append("%s goes to the guest by name: a later run that finds it without a "
                     "reader waits up to %g s for a guest still opening it"
                     % (each.tap, TAKEOVER_WAIT))
    if wire:
        steps = plan_steps(_wanted(o, each, view, network, guest_mac, by_fd, owner), view)
    else:
        steps = hold_steps(each.tap) if by_fd else []
    return Handover(each, network, guest_mac, tap_fd, guest_device(target, each), tuple(steps))


def _check_handed_over(each, found) -> None:
    """A run without CAP_NET_ADMIN: every interface must have been handed over before."""
    missing = [e.tap for e, (view, _) in zip(each, found) if view.previous is None]
    if missing:
        raise PrivilegeError(
            "CAP_NET_ADMIN is required to wire the network, and no handover to %s was found"
            % ", ".join(missing), "grant NET_ADMIN (docker run --cap-add=NET_ADMIN), or "
            "install ukrun's CNI plugin (ukrun-cni) or OCI hook (ukrun hook) on the node")


# What a container runtime gives a container as its interface: a veth (Docker, CNI bridge and
# ptp), macvlan, ipvlan, netkit, or a tap (slirp4netns). A bridge, a bond, a dummy or a NIC
# is a host's; run with --network host, ukrun would otherwise take the host's one interface.
CONTAINER_KINDS = ("veth", "macvlan", "ipvlan", "netkit", "tun")


def default_interface(links, made: dict) -> tuple:
    """The interface a run hands over when none is named, from the container's ``links``
    (ukrun.kernel.rtnl Links): eth0 when there is one, else the only link that is not
    loopback, ukrun's lock or what an earlier run made (``made``: ukrun.network.survey's
    ukrun_links), if it is of a kind a runtime gives a container (CONTAINER_KINDS, no parent
    device, no master); with the note saying so (None for eth0). Pure; DiscoveryError with
    no such link, several, or one that is no container's, naming them."""
    if any(link.name == "eth0" for link in links):
        return "eth0", None
    others = [link for link in links if not link.flags & lib.IFF_LOOPBACK
              and link.name not in made and link.name != LOCK_NAME]
    if not others:
        raise DiscoveryError("interface eth0 not found, and the container has no other "
                             "interface besides lo", "pass --interface NAME")
    if len(others) > 1:
        raise DiscoveryError("no eth0, and the container has %d interfaces: %s"
                             % (len(others), ", ".join(link.name for link in others)),
                             "pass --interface NAME (repeatable for several) to say which")
    only = others[0]
    if only.kind not in CONTAINER_KINDS or only.parent_dev or only.master:
        raise DiscoveryError("interface eth0 not found, and %s (%s) is no container's "
                             "interface: is this the host's network (--network host)?"
                             % (only.name, only.kind or "a NIC"),
                             "run in a container's own network, or pass --interface %s"
                             % only.name)
    return only.name, ("no eth0: handing over %s, the container's only interface besides "
                       "lo" % only.name)


def choose_names(o, links, notes: list):
    """``o`` with its interface and taps named: the default interface (``default_interface``)
    when --interface is not given, and for each interface without a --tap the tap an earlier
    run recorded it on, else tapN or the next name no link holds (options.default_taps)."""
    made = ukrun_links(links)
    interfaces = items(o.interface) if o.interface is not None else ()
    if not interfaces:
        name, note = default_interface(links, made)
        interfaces = (name,)
        if note:
            notes.append(note)
    given = items(o.tap) if o.tap is not None else ()
    recorded = {interface: tap for tap, interface in made.items()
                if any(link.name == tap and link.kind == "tun" for link in links)}
    taps = list(given)
    for interface in interfaces[len(given):]:
        tap = recorded.get(interface)
        if tap is None or tap in taps:
            break
        taps.append(tap)
    # A tap whose record does not validate stays a candidate: the survey refuses it there.
    taken = [link.name for link in links if link.name not in taps
             and not (link.name in made and made[link.name] is None)]
    taps = default_taps(interfaces, tuple(taps), taken)
    values = {name: getattr(o, name) for name in fields(o)}
    return type(o)(**dict(values, interface=tuple(interfaces), tap=taps))


def plan(options: Options) -> Plan:
    """Discover and check everything; return the steps and the command line. Changes nothing.
    The plan's networks and DNS servers hold ipaddress objects (``plan_for_run`` is the same
    plan as a run carries it, with ukrun.kernel.inet's)."""
    from ukrun.kernel import inet

    p = plan_for_run(options)
    p.handovers, p.dns = inet.public(p.handovers), inet.public(p.dns)
    return p


def plan_for_run(options: Options, with_notes: bool = True) -> Plan:
    """``plan`` without the conversion to ipaddress objects, which a run does not need.
    ``with_notes`` False (a run no one hears): what only the notes would use is not read, so
    DNS comes from resolv.conf only when the guest's words can name it (guestnet.TAKES_DNS)."""
    from ukrun.kernel.rtnl import Rtnl

    o = options
    target = preflight.check_options(o)
    notes = []
    state = caps.current()  # the capabilities every check below reads: one look at /proc
    keep = preflight.kept_capabilities(o.keep_caps, notes, state)
    exec_mode = choose_exec_mode(o.init, os.getpid() == 1, caps.can_bound_execve(state))
    tender = resolve_programs(o, target, keep, exec_mode)
    devices.check_tun()
    if target.needs_kvm:
        devices.check_kvm(o.target)
    wire = caps.can_wire(state)  # else: use what ukrun cni or ukrun hook handed over
    caps.check_capabilities(keep, state, wire=wire)
    problem = caps.ambient_problem(keep)
    if problem:
        raise PrivilegeError(problem, caps.AMBIENT_HINT)
    init_program = None
    if exec_mode == "forked":
        from ukrun.kernel.process import init_program as find_init

        init_program = find_init()
    with Rtnl() as rtnl:
        links = tuple(rtnl.links())  # one dump: the names are chosen from the survey's links
        o = choose_names(o, links, notes)
        each = per_interface(o, target)
        found = read_kernel(rtnl, o, each, notes, wait=wire, links=links,
                            holds_tap=target.hands_fd(o.tap_fd, o.tap_by_name))
    if exec_mode == "dropped":
        notes.append("without CAP_SETPCAP and with --init never, capabilities are dropped "
                     "before execve: an execve that fails cannot give %s back"
                     % ", ".join(e.interface for e in each))
    if not wire:
        _check_handed_over(each, found)
    handovers = [handover_for(o, target, e, view, network, notes, (os.geteuid(), None), wire)
                 for e, (view, network) in zip(each, found)]
    nets = guest_nets(handovers)
    if with_notes or o.ip_args in TAKES_DNS:
        dns, dns_notes = read_dns([h.network for h in handovers])
    else:
        dns, dns_notes = NO_DNS, []
    if with_notes:
        notes += dns_notes + list(formats.notes(o.ip_args, nets, dns))
    ip_args = guest_words(o, nets, dns)
    first = handovers[0]
    launch = Launch(unikernel=o.unikernel, args=tuple(o.args), ip_args=ip_args,
                    ip_args_first=o.ip_args in KERNEL_PARAMS, tap=first.tap,
                    tap_fd=first.tap_fd, mac=first.guest_mac, tender=tender,
                    tender_args=tuple(o.tender_args), net_name=first.each.net_name, mem=o.mem,
                    cpu=o.cpu, more_nics=tuple(Nic(h.tap, h.tap_fd, h.guest_mac, h.each.net_name)
                                               for h in handovers[1:]))
    argv = target.build(launch)
    programs.check_exec_size(argv, os.environ)
    return Plan(o, target, tuple(handovers), argv, keep, notes, exec_mode, init_program, dns)




