"""One run: discover, preflight, plan, apply (with undo), drop privileges, execve.

``plan(options)`` reads the kernel once (one ukrun.netconf snapshot, which discovery and the
plan both read; ukrun.survey) and checks everything but changes nothing;
``apply(plan)`` makes the changes, undoing them all on any error;
``run(...)`` does both, drops capabilities, closes stray fds and becomes the unikernel.

A run hands over one interface or several (--interface, repeatable): each gets its own tap,
wiring, restart record and guest device, and one undo log covers them all.
"""
from __future__ import annotations

import os
import sys

# For annotations only: collections.abc loads collections, ~1 ms of a run's start
# (typing's TYPE_CHECKING, without importing typing).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

from ukrun import handover, preflight
from ukrun.errors import NetworkError, PrivilegeError, UkrunError
from ukrun.guestnet import KERNEL_PARAMS, NO_DNS, TAKES_DNS, GuestNet, mirage
from ukrun.netconf import NetConfig
from ukrun.options import field_options, items, per_interface
from ukrun.survey import handover_notes, read_kernel
from ukrun.targets import TAP_FD, Launch, Nic, Target
from ukrun._ffi import lib
from ukrun.valueclass import fresh, value_class
from ukrun.wiring import (Record, RecordError, View, Wanted, parse_mac, plan_steps,
                          random_mac)

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
    ``steps``, the wiring's (ukrun.wiring.plan_steps), which touch its own links alone."""

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
        from ukrun.report import handover_json

        return handover_json(self)


@value_class
class Plan:
    options: Options
    target: Target
    handovers: tuple  # one Handover per interface, in --interface order
    argv: list[str]
    keep_caps: frozenset
    notes: list[str] = fresh(list)
    exec_mode: str = "direct"  # ukrun.handover.EXEC_MODES
    init_program: str | None = None  # the init a forked exec becomes
    dns: object = None  # ukrun.guestnet.DNS: the nameservers and search domains handed over

    @property
    def steps(self) -> list:
        """Every interface's steps, in order."""
        return [step for h in self.handovers for step in h.steps]

    # The first interface's, as a plan of one interface has always said.
    @property
    def network(self) -> NetConfig:
        return self.handovers[0].network

    @property
    def guest_mac(self) -> str | None:
        return self.handovers[0].guest_mac

    @property
    def tap_fd(self) -> int | None:
        return self.handovers[0].tap_fd

    def to_json(self) -> dict:
        """What --dry-run prints (ukrun.report.plan_json)."""
        from ukrun.report import plan_json

        return plan_json(self)


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


def guest_device(target: Target, each) -> str | None:
    """The guest's own name for interface ``each``: the Solo5 net name, ethN in a Linux
    guest under QEMU (virtio devices come up in command-line order); None when unknown."""
    if target.name in ("hvt", "spt"):
        return each.net_name
    return "eth%d" % each.position if target.name in ("qemu", "kvm") else None


def guest_nets(handovers) -> tuple:
    """What the guest's network words describe (ukrun.guestnet.GuestNet), one per interface."""
    return tuple(GuestNet(h.network.interface, h.tap, h.guest_mac, h.network.mtu,
                          h.network.ipv4, h.network.gateway4, h.network.gateway4_onlink,
                          h.network.ipv6, h.network.gateway6, h.device) for h in handovers)


def guest_words(o: Options, nets, dns) -> tuple:
    """The guest's network words for ``o.ip_args`` (ukrun.ipargs.build); the default
    format's straight from ukrun.guestnet, without loading every other format."""
    if o.ip_args == "mirage":
        return mirage(nets, dns)
    from ukrun import ipargs

    return ipargs.build(o.ip_args, nets, dns, o.ip_template)


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
            hold_tap: bool) -> Wanted:
    bridge = each.bridge if o.wiring == "bridge" else None
    record = Record(each.interface, o.wiring, bridge, network.ipv4, network.gateway4,
                    network.gateway4_onlink, guest_mac, network.mac, network.ipv6,
                    network.gateway6)
    try:
        record.check(each.tap)  # what a restart must read back
    except RecordError as e:
        raise UkrunError("cannot hand %s over: %s" % (each.interface, e.problem),
                         "ukrun hands over a unicast host address with its gateway") from None
    current_mac = view.links[each.interface].mac
    # A bridge keeps frames for a port's own MAC: the interface must not share the guest's.
    new_mac = random_mac() if o.wiring == "bridge" and guest_mac == current_mac else None
    return Wanted(o.wiring, each.interface, each.tap, each.bridge, network.mtu, record,
                  new_mac, hold_tap)


def _handover(o: Options, target: Target, each, view: View, network: NetConfig,
              notes: list) -> Handover:
    """What one interface's handover is made of; its notes go to ``notes``."""
    notes += handover_notes(network)
    if not view.links[each.interface].up:
        notes.append("%s is administratively down: this run sets it up (and down again if it "
                     "fails)" % each.interface)
    guest_mac = choose_guest_mac(o, each, target, network, view.previous, notes)
    by_fd = target.tap_fd == "always" or o.tap_fd
    tap_fd = TAP_FD + each.position if by_fd else None
    steps = plan_steps(_wanted(o, each, view, network, guest_mac, by_fd), view)
    return Handover(each, network, guest_mac, tap_fd, guest_device(target, each), tuple(steps))


def plan(options: Options) -> Plan:
    """Discover and check everything; return the steps and the command line. Changes nothing.
    The plan's networks and DNS servers hold ipaddress objects (``plan_for_run`` is the same
    plan as a run carries it, with ukrun.inet's)."""
    from ukrun import inet

    p = plan_for_run(options)
    p.handovers, p.dns = inet.public(p.handovers), inet.public(p.dns)
    return p


def plan_for_run(options: Options, with_notes: bool = True) -> Plan:
    """``plan`` without the conversion to ipaddress objects, which a run does not need.
    ``with_notes`` False (a run no one hears): what only the notes would use is not read, so
    DNS comes from resolv.conf only when the guest's words can name it (guestnet.TAKES_DNS)."""
    from ukrun import caps
    from ukrun.rtnl import Rtnl

    o = options
    target = preflight.check_options(o)
    each = per_interface(o, target)
    notes = []
    state = caps.current()  # the capabilities every check below reads: one look at /proc
    keep = preflight.kept_capabilities(o.keep_caps, notes, state)
    exec_mode = handover.choose_exec_mode(o.init, os.getpid() == 1, caps.can_bound_execve(state))
    tender = resolve_programs(o, target, keep, exec_mode)
    preflight.check_tun()
    if target.needs_kvm:
        preflight.check_kvm(o.target)
    preflight.check_capabilities(keep, state)
    problem = caps.ambient_problem(keep)
    if problem:
        raise PrivilegeError(problem, caps.AMBIENT_HINT)
    init_program = None
    if exec_mode == "forked":
        from ukrun.pid1 import init_program as find_init

        init_program = find_init()
    elif exec_mode == "dropped":
        notes.append("without CAP_SETPCAP and with --init never, capabilities are dropped "
                     "before execve: an execve that fails cannot give %s back"
                     % ", ".join(e.interface for e in each))
    with Rtnl() as rtnl:
        found = read_kernel(rtnl, o, each, notes)
    handovers = [_handover(o, target, e, view, network, notes)
                 for e, (view, network) in zip(each, found)]
    nets = guest_nets(handovers)
    if with_notes or o.ip_args in TAKES_DNS:
        from ukrun.report import read_dns

        dns, dns_notes = read_dns([h.network for h in handovers])
    else:
        dns, dns_notes = NO_DNS, []
    if with_notes:
        from ukrun import ipargs

        notes += dns_notes + list(ipargs.notes(o.ip_args, nets, dns))
    ip_args = guest_words(o, nets, dns)
    first = handovers[0]
    launch = Launch(unikernel=o.unikernel, args=tuple(o.args), ip_args=ip_args,
                    ip_args_first=o.ip_args in KERNEL_PARAMS, tap=first.tap,
                    tap_fd=first.tap_fd, mac=first.guest_mac, tender=tender,
                    tender_args=tuple(o.tender_args), net_name=first.each.net_name, mem=o.mem,
                    cpu=o.cpu, more_nics=tuple(Nic(h.tap, h.tap_fd, h.guest_mac, h.each.net_name)
                                               for h in handovers[1:]))
    argv = target.build(launch)
    preflight.check_exec_size(argv, os.environ)
    return Plan(o, target, tuple(handovers), argv, keep, notes, exec_mode, init_program, dns)


def inspect(interface="eth0") -> dict:
    """What ``ukrun inspect`` prints (ukrun.report.inspect)."""
    from ukrun.report import inspect

    return inspect(interface)


# --- apply ----------------------------------------------------------------------------------

class Applied:
    """What ``apply`` changed: ``undo()`` reverts it; ``tap_fd`` is the tap to hand over."""

    def __init__(self, plan: Plan, kernel, done: list):
        self.plan = plan
        self.kernel = kernel
        self.done = done  # for each interface, the steps done

    @property
    def tap_fd(self) -> int | None:
        """The first interface's tap, held open (None: it goes by name)."""
        return next(iter(self.tap_fds.values()), None)

    @property
    def tap_fds(self) -> dict:
        """The fd each tap goes to in the program (its ``Handover.tap_fd``) -> the fd this
        process holds it at; empty when the taps go by name."""
        return {h.tap_fd: self.kernel.held_tap(h.tap).fd for h in self.plan.handovers
                if h.tap_fd is not None}

    def undo(self) -> None:
        """Revert every change (``_undo``); NetworkError lists what could not be reverted."""
        failures, self.done = _undo(self.kernel, self.done), []
        self.close()
        if failures:
            raise NetworkError("undoing the wiring failed: %s" % "; ".join(failures))

    def close(self) -> None:
        """Close the netlink socket and any tap fd held (a persistent tap stays)."""
        self.kernel.close_taps()
        self.kernel.rtnl.close()


def _undo(kernel, done: list) -> list:
    """Undo each interface's steps done (``done``: a list per interface), newest first, and
    the interfaces in order: their steps touch their own links alone, and in this order what
    two interfaces hold alike comes back as the kernel had it. The kernel lists routes to one
    prefix on several links (fe80::/64, an IPv6 default route through each) in the order they
    were added, and for equal metrics uses the first."""
    failures = []
    for step in (step for steps in done for step in reversed(steps)):
        for undo in step.undo:
            _say("undo: %s" % undo.text)
            try:
                kernel.do(undo)
            except OSError as e:
                failures.append("%s: %s" % (undo.text, e.strerror or e))
    return failures


def apply(plan: Plan) -> Applied:
    """Carry out ``plan.steps``; on any error undo what was done (``_undo``) and raise."""
    from ukrun.rtnl import Rtnl
    from ukrun.steps import Kernel

    kernel = Kernel(Rtnl())
    done = [[] for _ in plan.handovers]
    step = None
    try:
        for steps, h in zip(done, plan.handovers):
            for step in h.steps:
                _say(step.text)
                kernel.do(step)
                steps.append(step)
        # A guest attaching by name finds the tap busy while we hold it.
        kernel.close_taps(keep=[h.tap for h in plan.handovers if h.tap_fd is not None])
    except BaseException as e:
        failures = _undo(kernel, done)
        kernel.close_taps()
        kernel.rtnl.close()
        if isinstance(e, OSError) and step is not None:
            from ukrun.failures import step_failed

            raise step_failed(step, e, failures) from e
        raise
    return Applied(plan, kernel, done)


# --- run ------------------------------------------------------------------------------------

def log_to_stderr() -> None:
    """Show each step on stderr as it happens (the CLI's -v; ``verbose=True`` for run())."""
    global _verbose
    _verbose = True


def _say_exec(argv) -> None:
    if _heard():
        import shlex

        _say("exec %s" % shlex.join(argv))


def _exec_here(applied: Applied):
    """Become the program (exec modes direct and dropped). Returns only by raising."""
    from ukrun import caps

    p = applied.plan
    direct = p.exec_mode == "direct"
    if not direct:
        # Dropped: a failed execve is worded by a process that may no longer be able to read
        # ukrun's package (a venv only root's capabilities open), so the words load first.
        from ukrun import failures  # noqa: F401
    try:
        _check_not_stopped(p)
        if direct:
            caps.prepare_execve(p.keep_caps, ambient=caps.ambient_wanted())
        else:
            caps.drop_to(p.keep_caps, ambient=caps.ambient_wanted())
    except BaseException as e:
        # A failed drop leaves CAP_NET_ADMIN held, so the network can still be given back.
        if isinstance(e, UkrunError):
            from ukrun.failures import give_back

            raise give_back(applied, e)
        try:
            applied.undo()
        except UkrunError as undo_error:
            _say(str(undo_error))
        raise
    tap_fds = applied.tap_fds
    handover.hand_fds(tap_fds)
    _say_exec(p.argv)
    handover.flush_stdio()
    try:
        if direct:
            _check_not_stopped(p)  # a stop request that came in meanwhile
        handover.reset_signals()
        os.execve(p.argv[0], p.argv, os.environ)
    except OSError as e:
        from ukrun.failures import exec_failed

        error = exec_failed(p, e, given_back=direct)
    except UkrunError as e:
        error = e
    for fd in tap_fds:
        os.close(fd)  # the program's copies of the taps: the undo deletes the taps
    if not direct:
        raise error
    from ukrun.failures import give_back

    raise give_back(applied, error)


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
    """Wait (bounded) until the guest holds its taps, so that a run waiting for the namespace
    lock finds them busy rather than records it would take over; not once a stop request is
    pending (``docker stop``), which the init must forward without delay."""
    import time

    rtnl = applied.kernel.rtnl
    waiting = [h.tap for h in applied.plan.handovers]
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline and handover.pending_stop() is None:
        waiting = [tap for tap in waiting if not rtnl.link(tap).flags & lib.IFF_LOWER_UP]
        if waiting:
            time.sleep(0.002)


def _exec_forked(applied: Applied):
    """Fork the program; give the network back if its execve fails, else become its init."""
    from ukrun import caps

    p = applied.plan
    tap_fds = applied.tap_fds

    def prepare():  # in the child, right before its execve
        caps.drop_to(p.keep_caps, ambient=caps.ambient_wanted())
        handover.hand_fds(tap_fds)
        handover.reset_signals()

    _say_exec(p.argv)
    pid, report = handover.fork_exec(p.argv, os.environ, prepare)
    if report:
        from ukrun.failures import child_failed, give_back

        handover.reap(pid)
        raise give_back(applied, child_failed(p, report))
    try:
        applied.kernel.close_taps()  # the child has its own copy
        _await_reader(applied)
        applied.kernel.rtnl.close()
        # As in exec mode dropped: once the init's execve fails there may be no reading the
        # package any more.
        from ukrun import failures  # noqa: F401
        caps.drop_to(frozenset())  # the init holds nothing
    except BaseException as e:
        os.kill(pid, 9)
        handover.reap(pid)
        if isinstance(e, UkrunError):
            e.hint = "the guest was stopped; %s" % (e.hint or "")
        raise
    handover.hand_fds({})
    _say("%s runs as pid %d under %s" % (p.argv[0], pid, p.init_program))
    handover.flush_stdio()
    try:
        os.execve(p.init_program, [p.init_program, str(pid)], os.environ)
    except OSError as e:
        os.kill(pid, 9)  # first: whatever else fails, no guest is left without its init
        handover.reap(pid)
        from ukrun.failures import handed_text

        raise UkrunError("executing %s: %s" % (p.init_program, e.strerror),
                         "the guest was stopped and %s; reinstall ukrun"
                         % handed_text(p.handovers)) from e


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
    # Where the taps may go (TAP_FD + N for interface N), so that no socket or tap a run opens
    # lands there before the taps are dup2()'d onto them.
    reserved = [fd for fd in range(TAP_FD, TAP_FD + len(items(o.interface)))
                if handover.reserve_fd(fd)]
    try:
        with handover.NamespaceLock():
            p = plan_for_run(o, with_notes=_heard())
            for note in p.notes:
                _say(note)
            exec_applied(apply(p))
    finally:
        for fd in reserved:
            try:
                os.close(fd)
            except OSError:
                pass
        handover.restore_signals(mask)
