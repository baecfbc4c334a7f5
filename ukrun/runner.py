"""One run: discover, preflight, plan, apply (with undo), drop privileges, execve.

``plan(options)`` reads the kernel and checks everything but changes nothing;
``apply(plan)`` makes the changes, undoing them all on any error;
``run(...)`` does both, drops capabilities, closes stray fds and becomes the unikernel.
"""
from __future__ import annotations

import _socket  # not socket: see ukrun.rtnl
import errno
import os
import sys
from collections.abc import Sequence

from ukrun import preflight
from ukrun.errors import DiscoveryError, NetworkError, PrivilegeError, UkrunError
from ukrun.errors import NotExecutableError, NotFoundError
from ukrun.targets import IP_ARGS, TAP_FD, Launch, Target
from ukrun.valueclass import fields, fresh, value_class
from ukrun.wiring import Record, View, Wanted, jsonable, parse_mac, plan_steps, random_mac

# Steps and notes go to stderr under -v (log_to_stderr), and to the "ukrun" logger when the
# program has loaded logging: importing it just in case would cost every run ~2 ms.
_verbose = False


def _heard() -> bool:
    """Whether _say reaches anyone: worth wording a costly message for."""
    return _verbose or "logging" in sys.modules


def _say(message: str) -> None:
    if _verbose:
        sys.stderr.write("ukrun: %s\n" % message)
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger("ukrun").info("%s", message)


@value_class
class Options:
    target: str
    unikernel: str
    args: Sequence[str] = ()
    interface: str = "eth0"
    tap: str = "tap0"
    wiring: str = "tc"
    bridge: str = "br0"
    mac: str = "inherit"  # inherit | random | XX:XX:XX:XX:XX:XX
    ip_args: str = "mirage"  # mirage | none
    # None: NET_BIND_SERVICE when this process holds it; ("none",) or () keeps nothing.
    keep_caps: Sequence[str] | None = None
    tender: str | None = None
    net_name: str = "service"
    mem: int | None = None
    tap_fd: bool = False
    tender_args: Sequence[str] = ()
    qemu: str | None = None
    cpu: str | None = None
    verbose: bool = False


@value_class(frozen=True)
class Network:
    """What the interface held, as discovered now or as an earlier run recorded it."""

    interface: str
    index: int
    mac: str  # the interface's own MAC before ukrun touched it
    mtu: int
    ipv4: object
    gateway4: object = None
    gateway4_onlink: bool = False
    ipv6: object = None
    gateway6: object = None
    source: str = "discovered"  # or "recorded" (a restart in a kept namespace)

    def to_json(self) -> dict:
        return jsonable({k: getattr(self, k) for k in fields(self)})


@value_class
class Plan:
    options: Options
    target: Target
    network: Network
    guest_mac: str | None
    steps: list
    argv: list[str]
    keep_caps: frozenset
    tap_fd: int | None
    notes: list[str] = fresh(list)

    def to_json(self) -> dict:
        from ukrun.caps import cap_name

        return {"target": self.target.name, "argv": list(self.argv),
                "network": self.network.to_json(), "guest_mac": self.guest_mac,
                "steps": [s.to_json() for s in self.steps], "tap_fd": self.tap_fd,
                "keep_caps": sorted(cap_name(c) for c in self.keep_caps), "notes": self.notes}


# --- plan ---------------------------------------------------------------------------------

def resolve_programs(o: Options, target: Target) -> str | None:
    """Check the unikernel and find the tender; returns the tender's path (None for unix)."""
    if target.default_tender is None:
        preflight.check_executable(o.unikernel, "unikernel")
        return None
    preflight.check_readable(o.unikernel, "unikernel")
    if target.name in ("qemu", "kvm"):
        return preflight.find_program(o.qemu or target.default_tender, "QEMU")
    return preflight.find_program(o.tender or target.default_tender, "tender")


def _find_record(links, interface: str, tap: str | None = None) -> Record | None:
    """What an earlier run recorded on the tap it gave ``interface`` to (any tap if None).

    A record on another tap than ``tap`` is refused: two taps would fight over the interface.
    """
    for link in links:
        record = Record.from_alias(link.alias) if link.kind == "tun" else None
        if record is not None and record.interface == interface:
            if tap is not None and link.name != tap:
                raise NetworkError("%s was handed to tap %s by an earlier run"
                                   % (interface, link.name), "pass --tap %s" % link.name)
            return record
    return None


def _check_names_free(o: Options, by_name: dict, record: Record | None) -> None:
    if o.tap in by_name and record is None:
        raise NetworkError("%s already exists and was not made by ukrun" % o.tap,
                           "pass --tap NAME")
    ours = record is not None and record.wiring == "bridge" and record.bridge == o.bridge
    if o.wiring == "bridge" and o.bridge in by_name and not ours:
        raise NetworkError("%s already exists and was not made by ukrun" % o.bridge,
                           "pass --bridge NAME")


def _network(rtnl, link, record: Record | None) -> Network:
    from ukrun.netconf import discover

    try:
        found = discover(link.name, rtnl=rtnl)
    except DiscoveryError:
        if record is None:
            raise
        return Network(link.name, link.index, record.interface_mac, link.mtu, record.ipv4,
                       record.gateway4, record.gateway4_onlink, source="recorded")
    own_mac = record.interface_mac if record is not None else found.mac
    return Network(found.interface, found.index, own_mac, found.mtu, found.ipv4,
                   found.gateway4, found.gateway4_onlink, found.ipv6, found.gateway6)


def read_kernel(rtnl, o: Options):
    """(View, Network): what the kernel holds now; refuses names taken by something else."""
    links = rtnl.links()
    by_name = {link.name: link for link in links}
    names = {link.index: link.name for link in links}
    link = by_name.get(o.interface)
    if link is None:
        raise DiscoveryError("interface %s not found" % o.interface, "pass --interface NAME")
    record = _find_record(links, o.interface, o.tap)
    _check_names_free(o, by_name, record)
    network = _network(rtnl, link, record)
    routes = tuple(r for r in rtnl.routes(family=_socket.AF_UNSPEC) if r.oif == link.index)
    ingress = frozenset(names[q.index] for q in rtnl.qdiscs()
                        if q.kind == "ingress" and q.index in names)
    redirects = set()
    for name in (o.interface, o.tap):
        if name in by_name:
            redirects |= {(name, names.get(f.redirect_to))
                          for f in rtnl.filters(by_name[name].index) if f.redirect_to}
    view = View(links=by_name, addresses=tuple(rtnl.addresses(link.index)), routes=routes,
                ingress=ingress, redirects=frozenset(redirects), previous=record, names=names)
    return view, network


def choose_guest_mac(o: Options, target: Target, network: Network, previous, notes):
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


def _wanted(o: Options, view: View, network: Network, guest_mac, hold_tap: bool) -> Wanted:
    record = Record(o.interface, o.wiring, o.bridge if o.wiring == "bridge" else None,
                    network.ipv4, network.gateway4, network.gateway4_onlink, guest_mac,
                    network.mac)
    current_mac = view.links[o.interface].mac
    # A bridge keeps frames for a port's own MAC: the interface must not share the guest's.
    new_mac = random_mac() if o.wiring == "bridge" and guest_mac == current_mac else None
    return Wanted(o.wiring, o.interface, o.tap, o.bridge, network.mtu, record, new_mac, hold_tap)


def plan(options: Options) -> Plan:
    """Discover and check everything; return the steps and the command line. Changes nothing."""
    from ukrun.rtnl import Rtnl

    o = options
    target = preflight.check_options(o)
    notes = []
    keep = preflight.kept_capabilities(o.keep_caps, notes)
    tender = resolve_programs(o, target)
    preflight.check_tun()
    if target.needs_kvm:
        preflight.check_kvm(o.target)
    preflight.check_capabilities(keep)
    with Rtnl() as rtnl:
        view, network = read_kernel(rtnl, o)
    guest_mac = choose_guest_mac(o, target, network, view.previous, notes)
    tap_fd = TAP_FD if target.tap_fd == "always" or o.tap_fd else None
    steps = plan_steps(_wanted(o, view, network, guest_mac, tap_fd is not None), view)
    ip_args = IP_ARGS[o.ip_args](network.ipv4, network.gateway4)
    launch = Launch(unikernel=o.unikernel, args=tuple(o.args), ip_args=ip_args, tap=o.tap,
                    tap_fd=tap_fd, mac=guest_mac, tender=tender,
                    tender_args=tuple(o.tender_args), net_name=o.net_name, mem=o.mem, cpu=o.cpu)
    return Plan(o, target, network, guest_mac, steps, target.build(launch), keep, tap_fd, notes)


def inspect(interface: str = "eth0") -> dict:
    """The network a run would hand over (discovered, or recorded by an earlier run)."""
    from ukrun.rtnl import Rtnl

    with Rtnl() as rtnl:
        links = rtnl.links()
        link = next((l for l in links if l.name == interface), None)
        if link is None:
            raise DiscoveryError("interface %s not found" % interface, "pass --interface NAME")
        return _network(rtnl, link, _find_record(links, interface)).to_json()



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


def close_stray_fds(tap_fd: int | None) -> None:
    """Leave only 0, 1, 2 and the tap (as TAP_FD) inheritable; everything else close-on-exec."""
    keep = {0, 1, 2}
    if tap_fd is not None:
        if tap_fd != TAP_FD:
            os.dup2(tap_fd, TAP_FD, inheritable=True)  # the original stays close-on-exec
        else:
            os.set_inheritable(TAP_FD, True)
        keep.add(TAP_FD)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:  # the fd listdir itself used, closed by now
                pass


def _exec_failed(plan: Plan, e: OSError) -> UkrunError:
    message = "executing %s: %s" % (plan.argv[0], e.strerror or e)
    hint = "%s stays handed over to %s; the next run reuses it" % (plan.network.interface,
                                                                  plan.options.tap)
    if e.errno == errno.ENOENT:
        return NotFoundError(message, hint)
    if e.errno in (errno.EACCES, errno.ENOEXEC, errno.EPERM):
        return NotExecutableError(message, hint)
    return UkrunError(message, hint)


def exec_applied(applied: Applied):
    """Drop capabilities, tidy fds and become the plan's command line. Never returns."""
    from ukrun.caps import drop_to

    p = applied.plan
    try:
        drop_to(p.keep_caps)
    except BaseException:
        # A failed drop leaves CAP_NET_ADMIN held, so the network can still be given back.
        try:
            applied.undo()
        except UkrunError as undo_error:
            _say(str(undo_error))
        raise
    tap_fd = applied.tap_fd
    applied.kernel.rtnl.close()
    close_stray_fds(tap_fd)
    if _heard():
        import shlex

        _say("exec %s" % shlex.join(p.argv))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(p.argv[0], p.argv, os.environ)
    except OSError as e:
        raise _exec_failed(p, e) from e


def run(target: str, unikernel: str, args: Sequence[str] = (), **options):
    """Hand the container's network to ``unikernel`` and exec it; returns only by raising."""
    o = Options(target=target, unikernel=unikernel, args=tuple(args), **options)
    if o.verbose:
        log_to_stderr()
    p = plan(o)
    for note in p.notes:
        _say(note)
    exec_applied(apply(p))
