"""One run: discover, preflight, plan, apply (with undo), drop privileges, execve.

``plan(options)`` reads the kernel once (one ukrun.netconf snapshot, which discovery and the
plan both read) and checks everything but changes nothing;
``apply(plan)`` makes the changes, undoing them all on any error;
``run(...)`` does both, drops capabilities, closes stray fds and becomes the unikernel.
"""
from __future__ import annotations

import _socket  # not socket: see ukrun.rtnl
import errno
import os
import sys
from collections.abc import Sequence

from ukrun import handover, netconf, preflight
from ukrun.errors import DiscoveryError, NetworkError, PrivilegeError, UkrunError
from ukrun.errors import NotExecutableError, NotFoundError, UsageError
from ukrun.netconf import NetConfig
from ukrun.options import field_options
from ukrun.tap import tap_problem
from ukrun.targets import TAP_FD, Launch, Target
from ukrun._ffi import lib
from ukrun.valueclass import fresh, value_class
from ukrun.wiring import (Record, RecordError, View, Wanted, check_record_against, owns_bridge,
                          parse_mac, plan_steps, random_mac)

# Steps and notes go to stderr under -v (log_to_stderr), and to the "ukrun" logger when the
# program has loaded logging: importing it just in case would cost every run ~2 ms.
_verbose = False


def _heard() -> bool:
    """Whether _say reaches anyone: worth wording a costly message for."""
    return _verbose or "logging" in sys.modules


def _say(message: str) -> None:
    if _verbose and sys.stderr is not None:
        sys.stderr.write("ukrun: %s\n" % message)
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger("ukrun").info("%s", message)


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
        "NET_BIND_SERVICE when this process holds it." % ", ".join(
            "%s=%r" % (option.dest, option.default) for option in field_options()))
    return value_class(type("Options", (), namespace))


Options = _declare_options()


@value_class
class Plan:
    options: Options
    target: Target
    network: NetConfig
    guest_mac: str | None
    steps: list
    argv: list[str]
    keep_caps: frozenset
    tap_fd: int | None
    notes: list[str] = fresh(list)
    exec_mode: str = "direct"  # ukrun.handover.EXEC_MODES
    init_program: str | None = None  # the init a forked exec becomes
    dns: object = None  # ukrun.ipargs.DNS: the nameservers and search domains handed over

    def to_json(self) -> dict:
        from ukrun.caps import cap_name

        return {"target": self.target.name, "argv": list(self.argv),
                "network": self.network.to_json(), "guest_mac": self.guest_mac,
                "steps": [s.to_json() for s in self.steps], "tap_fd": self.tap_fd,
                "keep_caps": sorted(cap_name(c) for c in self.keep_caps),
                "exec_mode": self.exec_mode, "init": self.init_program,
                "dns": dns_json(self.dns), "notes": self.notes}


def dns_json(dns) -> dict | None:
    if dns is None:
        return None
    return {"servers": [str(s) for s in dns.servers], "search": list(dns.search)}


# --- plan ---------------------------------------------------------------------------------

def resolve_programs(o: Options, target: Target, keep: frozenset = frozenset(),
                     exec_mode: str = "direct") -> str | None:
    """Check the unikernel and find the tender; returns the tender's path (None for unix).

    What is exec'd must be an executable this machine runs (``preflight.check_program_image``),
    and what a tender loads must stay readable once the capabilities are dropped. Execve runs
    without CAP_DAC_OVERRIDE except in exec mode direct, where ukrun still holds it.
    """
    dropped = exec_mode != "direct"
    if target.default_tender is None:
        preflight.check_executable(o.unikernel, "unikernel")
        preflight.check_program_image(o.unikernel, "unikernel", keep=keep, dropped=dropped)
        return None
    preflight.check_readable(o.unikernel, "unikernel")
    preflight.check_usable_unprivileged(o.unikernel, "unikernel", keep=keep)
    if target.name in ("qemu", "kvm"):
        program = preflight.find_program(o.qemu or target.default_tender, "QEMU")
    else:
        program = preflight.find_program(o.tender or target.default_tender, "tender")
    return preflight.check_program_image(program, "QEMU" if target.name in ("qemu", "kvm")
                                         else "tender", keep=keep, dropped=dropped)


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


def _find_record(links, interface: str, tap: str | None = None,
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


def _check_names_free(o: Options, by_name: dict, record: Record | None) -> None:
    if o.tap in by_name and record is None:
        raise NetworkError("%s already exists and was not made by ukrun" % o.tap,
                           "pass --tap NAME")
    if o.wiring == "bridge" and o.bridge in by_name and not owns_bridge(View(links=by_name),
                                                                       o.bridge, o.tap):
        raise NetworkError("%s already exists and was not made by ukrun" % o.bridge,
                           "pass --bridge NAME")


def _interface_link(snapshot: netconf.Snapshot, interface: str):
    link = snapshot.link(interface)
    if link is None:
        raise DiscoveryError("interface %s not found" % interface, "pass --interface NAME")
    return link


def _check_container_interface(link, o: Options) -> None:
    """A real NIC is not a container's interface: ukrun started on a host by mistake (or with
    --network host) must not strip the machine's own network."""
    parent = getattr(link, "parent_dev", None)
    if parent and not o.allow_physical:
        raise UsageError("%s is a physical NIC (parent device %s), not a container's interface"
                         % (link.name, parent),
                         "run ukrun as a container's entrypoint, not on a host or with "
                         "--network host; --allow-physical takes it anyway")


TAKEOVER_WAIT = 1.0  # seconds a run waits for a just-started guest to open its tap


def _bare(snapshot: netconf.Snapshot, link) -> str | None:
    """``link``'s name when it holds no global address: an earlier run moved them."""
    own = [a for a in snapshot.addresses if a.index == link.index
           and a.scope == lib.RT_SCOPE_UNIVERSE]
    return None if own else link.name


def read_kernel(rtnl, o: Options, notes: list | None = None):
    """(View, NetConfig): what the kernel holds now, read once (ukrun.netconf.read).

    Before taking over what an earlier run recorded on a tap no guest holds, wait a moment
    for one to open it: a guest just exec'd in place needs some milliseconds to get there, and
    a run that took its wiring over meanwhile would rewire under it."""
    view, network = survey(netconf.read(rtnl, (o.interface,), tc_links=(o.interface, o.tap)),
                           o, notes)
    if view.previous is not None:
        import time

        deadline = time.monotonic() + TAKEOVER_WAIT
        while time.monotonic() < deadline:
            if rtnl.link(o.tap).flags & lib.IFF_LOWER_UP:
                raise _live_guest(o)
            time.sleep(0.005)
    return view, network


def _live_guest(o: Options) -> NetworkError:
    return NetworkError("%s is already handed to a running guest (%s has a reader)"
                        % (o.interface, o.tap),
                        "one guest per interface: stop the other container first")


def survey(snapshot: netconf.Snapshot, o: Options, notes: list | None = None):
    """(View, NetConfig): what a run of ``o`` starts from in ``snapshot``, the interface's
    configuration discovered from the same snapshot. Pure; refuses an interface that is no
    container's, a record that does not validate, and names taken by something else."""
    by_name = {link.name: link for link in snapshot.links}
    names = {link.index: link.name for link in snapshot.links}
    link = _interface_link(snapshot, o.interface)
    _check_container_interface(link, o)
    record = _find_record(snapshot.links, o.interface, o.tap, _bare(snapshot, link))
    try:
        check_record_against(record, View(links=by_name), o.tap)
    except RecordError as e:
        raise _bad_record(o.tap, e) from None
    _check_names_free(o, by_name, record)
    if record is not None:
        problem = tap_problem(by_name[o.tap], os.geteuid(), {os.getegid(), *os.getgroups()})
        if problem:
            raise NetworkError("%s carries a record but cannot be the guest's tap: %s"
                               % (o.tap, problem),
                               "ukrun takes over only a tap it made: pass --tap NAME")
        # A tap has carrier exactly while some process holds it open: the guest.
        if by_name[o.tap].flags & lib.IFF_LOWER_UP:
            raise _live_guest(o)
        if notes is not None:
            notes.append("%s holds what an earlier run moved and no guest has it open: this "
                         "run takes it over" % o.tap)
    network = netconf.config(snapshot, o.interface, record)
    ingress = frozenset(names[q.index] for q in snapshot.qdiscs
                        if q.kind == "ingress" and q.index in names)
    redirects = frozenset((names[index], names.get(f.redirect_to))
                          for index, filters in snapshot.filters.items()
                          for f in filters if f.redirect_to)
    view = View(links=by_name, addresses=network.addresses, routes=network.routes,
                ingress=ingress, redirects=redirects, previous=record, names=names)
    return view, network


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


def read_dns(network: NetConfig, path: str = "/etc/resolv.conf"):
    """(ipargs.DNS, notes): the nameservers a guest can reach and the search domains, from the
    container's resolv.conf (Docker's embedded 127.0.0.11 is replaced by the upstream servers
    Docker notes in it; ukrun.resolv)."""
    from ukrun.ipargs import DNS
    from ukrun.resolv import parse_resolv_conf, usable_nameservers

    try:
        with open(path, "rb") as f:
            text = f.read(1 << 16)
    except OSError as e:
        return DNS(), ["no nameserver is handed over: %s: %s" % (path, e.strerror)]
    resolv = parse_resolv_conf(text)
    servers, notes = usable_nameservers(resolv, ipv4=network.ipv4 is not None,
                                        ipv6=network.ipv6 is not None)
    return DNS(tuple(servers), tuple(resolv.search)), list(notes)


def guest_nets(o: Options, target: Target, network: NetConfig, guest_mac) -> tuple:
    """What the guest's network words describe (ukrun.ipargs.GuestNet), one per interface."""
    from ukrun.ipargs import GuestNet

    device = o.net_name if target.name in ("hvt", "spt") else (
        "eth0" if target.name in ("qemu", "kvm") else None)
    return (GuestNet(network.interface, o.tap, guest_mac, network.mtu, network.ipv4,
                     network.gateway4, network.gateway4_onlink, network.ipv6, network.gateway6,
                     device),)


def choose_guest_mac(o: Options, target: Target, network: NetConfig, previous, notes):
    if not target.sets_mac:
        notes.append("the %s target cannot set the guest's MAC: --mac %s is ignored"
                     % (o.target, o.mac))
        return None
    if o.mac == "inherit":
        return previous.guest_mac if previous and previous.guest_mac else network.mac
    if o.mac == "random":
        # A restart keeps the random MAC the first run chose: neighbours already cached it.
        if previous and previous.guest_mac and previous.guest_mac != previous.interface_mac:
            return previous.guest_mac
        return random_mac()
    return parse_mac(o.mac)


def _wanted(o: Options, view: View, network: NetConfig, guest_mac, hold_tap: bool) -> Wanted:
    record = Record(o.interface, o.wiring, o.bridge if o.wiring == "bridge" else None,
                    network.ipv4, network.gateway4, network.gateway4_onlink, guest_mac,
                    network.mac, network.ipv6, network.gateway6)
    try:
        record.check(o.tap)  # what a restart must read back
    except RecordError as e:
        raise UkrunError("cannot hand %s over: %s" % (o.interface, e.problem),
                         "ukrun hands over a unicast host address with its gateway") from None
    current_mac = view.links[o.interface].mac
    # A bridge keeps frames for a port's own MAC: the interface must not share the guest's.
    new_mac = random_mac() if o.wiring == "bridge" and guest_mac == current_mac else None
    return Wanted(o.wiring, o.interface, o.tap, o.bridge, network.mtu, record, new_mac, hold_tap)


def plan(options: Options) -> Plan:
    """Discover and check everything; return the steps and the command line. Changes nothing."""
    from ukrun import caps
    from ukrun.rtnl import Rtnl

    o = options
    target = preflight.check_options(o)
    notes = []
    keep = preflight.kept_capabilities(o.keep_caps, notes)
    exec_mode = handover.choose_exec_mode(o.init, os.getpid() == 1, caps.can_bound_execve())
    tender = resolve_programs(o, target, keep, exec_mode)
    preflight.check_tun()
    if target.needs_kvm:
        preflight.check_kvm(o.target)
    preflight.check_capabilities(keep)
    problem = caps.ambient_problem(keep)
    if problem:
        raise PrivilegeError(problem, caps.AMBIENT_HINT)
    init_program = None
    if exec_mode == "forked":
        from ukrun.pid1 import init_program as find_init

        init_program = find_init()
    elif exec_mode == "dropped":
        notes.append("without CAP_SETPCAP and with --init never, capabilities are dropped "
                     "before execve: an execve that fails cannot give %s back" % o.interface)
    with Rtnl() as rtnl:
        view, network = read_kernel(rtnl, o, notes)
    notes += handover_notes(network)
    if not view.links[o.interface].up:
        notes.append("%s is administratively down: this run sets it up (and down again if it "
                     "fails)" % o.interface)
    guest_mac = choose_guest_mac(o, target, network, view.previous, notes)
    tap_fd = TAP_FD if target.tap_fd == "always" or o.tap_fd else None
    steps = plan_steps(_wanted(o, view, network, guest_mac, tap_fd is not None), view)
    from ukrun import ipargs

    dns, dns_notes = read_dns(network)
    nets = guest_nets(o, target, network, guest_mac)
    notes += dns_notes + list(ipargs.notes(o.ip_args, nets, dns))
    ip_args = ipargs.build(o.ip_args, nets, dns, o.ip_template)
    launch = Launch(unikernel=o.unikernel, args=tuple(o.args), ip_args=ip_args,
                    ip_args_first=o.ip_args in ipargs.KERNEL_PARAMS, tap=o.tap,
                    tap_fd=tap_fd, mac=guest_mac, tender=tender,
                    tender_args=tuple(o.tender_args), net_name=o.net_name, mem=o.mem, cpu=o.cpu)
    argv = target.build(launch)
    preflight.check_exec_size(argv, os.environ)
    return Plan(o, target, network, guest_mac, steps, argv, keep, tap_fd, notes, exec_mode,
                init_program, dns)


def inspect(interface: str = "eth0") -> dict:
    """The network a run would hand over (discovered, or recorded by an earlier run), with
    notes on what it would not hand over."""
    from ukrun.rtnl import Rtnl

    with Rtnl() as rtnl:
        snapshot = netconf.read(rtnl, (interface,))
    link = _interface_link(snapshot, interface)
    record = _find_record(snapshot.links, interface, only_copy=_bare(snapshot, link))
    network = netconf.config(snapshot, interface, record)
    dns, dns_notes = read_dns(network)
    return dict(network.to_json(), dns=dns_json(dns), notes=handover_notes(network) + dns_notes)


# --- apply ----------------------------------------------------------------------------------

class Applied:
    """What ``apply`` changed: ``undo()`` reverts it; ``tap_fd`` is the tap to hand over."""

    def __init__(self, plan: Plan, kernel, done: list):
        self.plan = plan
        self.kernel = kernel
        self.done = done

    @property
    def tap_fd(self) -> int | None:
        if self.plan.tap_fd is None:
            return None
        return self.kernel.held_tap(self.plan.options.tap).fd

    def undo(self) -> None:
        """Revert every change, newest first; NetworkError lists what could not be reverted."""
        failures, self.done = _undo(self.kernel, self.done), []
        self.close()
        if failures:
            raise NetworkError("undoing the wiring failed: %s" % "; ".join(failures))

    def close(self) -> None:
        """Close the netlink socket and any tap fd held (a persistent tap stays)."""
        self.kernel.close_taps()
        self.kernel.rtnl.close()


def _undo(kernel, done: list) -> list:
    failures = []
    for step in reversed(done):
        for undo in step.undo:
            _say("undo: %s" % undo.text)
            try:
                kernel.do(undo)
            except OSError as e:
                failures.append("%s: %s" % (undo.text, e.strerror or e))
    return failures


def _reason(e: OSError) -> str:
    reason = e.strerror or str(e)
    ext_ack = getattr(e, "ext_ack", None)
    return "%s (%s)" % (reason, ext_ack) if ext_ack else reason


def _step_failed(step, e: OSError, failures: list) -> UkrunError:
    hint = ("undoing failed too, the namespace is half-wired: %s" % "; ".join(failures)
            if failures else "everything done before was undone")
    kind = PrivilegeError if e.errno in (errno.EPERM, errno.EACCES) else NetworkError
    return kind("%s: %s" % (step.text, _reason(e)), hint)


def apply(plan: Plan) -> Applied:
    """Carry out ``plan.steps``; on any error undo what was done, newest first, and raise."""
    from ukrun.rtnl import Rtnl
    from ukrun.steps import Kernel

    kernel = Kernel(Rtnl())
    done = []
    step = None
    try:
        for step in plan.steps:
            _say(step.text)
            kernel.do(step)
            done.append(step)
        # A guest attaching by name finds the tap busy while we hold it.
        kernel.close_taps(keep=(plan.options.tap,) if plan.tap_fd is not None else ())
    except BaseException as e:
        failures = _undo(kernel, done)
        kernel.close_taps()
        kernel.rtnl.close()
        if isinstance(e, OSError) and step is not None:
            raise _step_failed(step, e, failures) from e
        raise
    return Applied(plan, kernel, done)


# --- run ------------------------------------------------------------------------------------

def log_to_stderr() -> None:
    """Show each step on stderr as it happens (the CLI's -v; ``verbose=True`` for run())."""
    global _verbose
    _verbose = True


def _exec_failed(plan: Plan, e: OSError, given_back: bool) -> UkrunError:
    message = "executing %s: %s" % (plan.argv[0], e.strerror or e)
    hint = None if given_back else "%s stays handed over to %s; the next run reuses it" % (
        plan.network.interface, plan.options.tap)
    if e.errno == errno.ENOENT:
        return NotFoundError(message, hint)
    if e.errno in (errno.EACCES, errno.ENOEXEC, errno.EPERM, errno.ETXTBSY):
        return NotExecutableError(message, hint)
    return UkrunError(message, hint)


def _child_failed(plan: Plan, report: bytes) -> UkrunError:
    """The error a forked child reported instead of exec'ing (ukrun.handover.encode_failure)."""
    errno_, status, message = handover.decode_failure(report)
    if errno_ is not None:
        return _exec_failed(plan, OSError(errno_, os.strerror(errno_)), given_back=True)
    kinds = {cls.exit_status: cls for cls in (UsageError, PrivilegeError, NotExecutableError,
                                              NotFoundError)}
    error = kinds.get(status, UkrunError)(message)
    error.exit_status = status
    return error


def _give_back(applied: Applied, error: UkrunError) -> UkrunError:
    """Undo the wiring after ``error``; say so in the error when that fails too."""
    interface = applied.plan.network.interface
    try:
        applied.undo()
        outcome = "%s was given back" % interface
    except UkrunError as undo_error:
        outcome = "giving %s back failed: %s" % (interface, undo_error)
    if not error.hint or interface + " was given back" not in error.hint:
        error.hint = "%s; %s" % (error.hint, outcome) if error.hint else outcome
    return error


def _say_exec(argv) -> None:
    if _heard():
        import shlex

        _say("exec %s" % shlex.join(argv))


def _exec_here(applied: Applied):
    """Become the program (exec modes direct and dropped). Returns only by raising."""
    from ukrun import caps

    p = applied.plan
    direct = p.exec_mode == "direct"
    try:
        _check_not_stopped(p)
        if direct:
            caps.prepare_execve(p.keep_caps, ambient=caps.ambient_wanted())
        else:
            caps.drop_to(p.keep_caps, ambient=caps.ambient_wanted())
    except BaseException as e:
        # A failed drop leaves CAP_NET_ADMIN held, so the network can still be given back.
        if isinstance(e, UkrunError):
            raise _give_back(applied, e)
        try:
            applied.undo()
        except UkrunError as undo_error:
            _say(str(undo_error))
        raise
    tap_fd = applied.tap_fd
    handover.hand_fds(tap_fd, TAP_FD)
    _say_exec(p.argv)
    handover.flush_stdio()
    try:
        if direct:
            _check_not_stopped(p)  # a stop request that came in meanwhile
        handover.reset_signals()
        os.execve(p.argv[0], p.argv, os.environ)
    except OSError as e:
        error = _exec_failed(p, e, given_back=direct)
    except UkrunError as e:
        error = e
    if tap_fd is not None:
        os.close(TAP_FD)  # the program's copy of the tap: the undo deletes the tap
    if not direct:
        raise error
    raise _give_back(applied, error)


def _check_not_stopped(p: Plan) -> None:
    """UkrunError (exit 128 + the signal, as a shell reports it) when a signal that ends a
    process came in during the run: in place, the program would not get it, ukrun would."""
    signum = handover.pending_stop()
    if signum is not None:
        error = UkrunError("signal %d came in before %s started: not starting it"
                           % (signum, p.argv[0]))
        error.exit_status = 128 + signum
        raise error


def _await_reader(applied: Applied, timeout: float = 1.0) -> None:
    """Wait (bounded) until the guest holds its tap, so that a run waiting for the namespace
    lock finds the tap busy rather than a record it would take over."""
    import time

    rtnl = applied.kernel.rtnl
    tap = applied.plan.options.tap
    deadline = time.monotonic() + timeout
    while not rtnl.link(tap).flags & lib.IFF_LOWER_UP and time.monotonic() < deadline:
        time.sleep(0.002)


def _exec_forked(applied: Applied):
    """Fork the program; give the network back if its execve fails, else become its init."""
    from ukrun import caps

    p = applied.plan
    tap_fd = applied.tap_fd

    def prepare():  # in the child, right before its execve
        caps.drop_to(p.keep_caps, ambient=caps.ambient_wanted())
        handover.hand_fds(tap_fd, TAP_FD)
        handover.reset_signals()

    _say_exec(p.argv)
    pid, report = handover.fork_exec(p.argv, os.environ, prepare)
    if report:
        handover.reap(pid)
        raise _give_back(applied, _child_failed(p, report))
    try:
        applied.kernel.close_taps()  # the child has its own copy
        _await_reader(applied)
        applied.kernel.rtnl.close()
        caps.drop_to(frozenset())  # the init holds nothing
    except BaseException as e:
        os.kill(pid, 9)
        handover.reap(pid)
        if isinstance(e, UkrunError):
            e.hint = "the guest was stopped; %s" % (e.hint or "")
        raise
    handover.hand_fds(None, TAP_FD)
    _say("%s runs as pid %d under %s" % (p.argv[0], pid, p.init_program))
    handover.flush_stdio()
    try:
        os.execve(p.init_program, [p.init_program, str(pid)], os.environ)
    except OSError as e:
        os.kill(pid, 9)
        handover.reap(pid)
        raise UkrunError("executing %s: %s" % (p.init_program, e.strerror),
                         "the guest was stopped and %s stays handed over to %s; reinstall ukrun"
                         % (p.network.interface, p.options.tap)) from e


def exec_applied(applied: Applied):
    """Hand the process over to the plan's command line (ukrun.handover). Never returns:
    raises UkrunError when the program cannot be started, after giving the network back
    (but in exec mode dropped)."""
    if applied.plan.exec_mode == "forked":
        _exec_forked(applied)
    else:
        _exec_here(applied)


def run(target: str, unikernel: str, args: Sequence[str] = (), **options):
    """Hand the container's network to ``unikernel`` and exec it; returns only by raising.

    Runs in one network namespace are serialized (handover.NamespaceLock); signals that
    arrive meanwhile stay pending until the program (or ukrun's init) can take them.
    """
    o = Options(target=target, unikernel=unikernel, args=tuple(args), **options)
    if o.verbose:
        log_to_stderr()
    mask = handover.block_signals()
    reserved = handover.reserve_fd(TAP_FD)
    try:
        with handover.NamespaceLock():
            p = plan(o)
            for note in p.notes:
                _say(note)
            exec_applied(apply(p))
    finally:
        if reserved:
            try:
                os.close(TAP_FD)
            except OSError:
                pass
        handover.restore_signals(mask)
