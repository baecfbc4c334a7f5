"""Carrying out a plan (ukrun.planning): apply it (with undo), drop privileges, execve.

``apply(plan)`` makes the changes, undoing them all on any error; ``run(...)`` plans, applies,
drops capabilities, closes stray fds and becomes the program. When it fails after it started
changing things, the network is given back (``give_back``) and the error says so.

Three ways to exec (``Plan.exec_mode``, chosen in the plan):

- ``direct``: this process becomes the program. The bounding, inheritable and ambient sets are
  set to the kept ones first (ukrun.kernel.caps), so execve hands the program exactly those
  while this process keeps CAP_NET_ADMIN until execve has replaced it: an execve that returns
  gives the network back. Needs CAP_SETPCAP.
- ``forked``: the program becomes a child that drops its capabilities and execs; a
  close-on-exec pipe tells this process whether that execve worked (EOF: it did; bytes: why
  not; ukrun.kernel.process). On failure the network is given back; on success this process
  drops every capability and execs ukrun-init, which still owns the child, forwards signals to
  it, reaps zombies and exits with its status. Used when ukrun is PID 1 (the kernel drops a
  signal to a namespace's init that has no handler for it, so a tender that installs none
  would ignore ``docker stop``) and when CAP_SETPCAP is missing.
- ``dropped``: capabilities are dropped, then execve (``--init never`` without CAP_SETPCAP):
  the program replaces ukrun, but a failed execve can no longer give the network back.

Runs in one network namespace are serialized by ukrun.kernel.nslock.
"""
from __future__ import annotations

import errno
import os
import sys

# For annotations only: collections.abc loads collections, ~1 ms of a run's start
# (typing's TYPE_CHECKING, without importing typing).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

from ukrun.errors import (NetworkError, NotExecutableError, NotFoundError, PrivilegeError,
                          UkrunError, UsageError)
from ukrun.guest.targets import TAP_FD
from ukrun.kernel import caps, process, signals
from ukrun.kernel.tap import await_carrier
from ukrun.options import items
from ukrun.kernel.nslock import NamespaceLock
from ukrun.planning import Options, Plan, plan_for_run

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


# --- apply ----------------------------------------------------------------------------------

class Applied:
    """What ``apply`` changed: ``undo()`` reverts it; ``tap_fds``, the taps to hand over."""

    def __init__(self, plan: Plan, kernel, done: list):
        self.plan = plan
        self.kernel = kernel
        self.done = done  # for each interface, the steps done

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
    from ukrun.kernel.rtnl import Rtnl
    from ukrun.network.executor import Kernel

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
    p = applied.plan
    direct = p.exec_mode == "direct"
    try:
        _check_not_stopped(p)
        caps.drop(p.keep_caps, ambient=caps.ambient_wanted(), keep_own=direct)
    except BaseException as e:
        # A failed drop leaves CAP_NET_ADMIN held, so the network can still be given back.
        if isinstance(e, UkrunError):
            raise give_back(applied, e)
        try:
            applied.undo()
        except UkrunError as undo_error:
            _say(str(undo_error))
        raise
    tap_fds = applied.tap_fds
    process.hand_fds(tap_fds)
    _say_exec(p.argv)
    process.flush_stdio()
    try:
        if direct:
            _check_not_stopped(p)  # a stop request that came in meanwhile
        signals.reset_signals()
        os.execve(p.argv[0], p.argv, os.environ)
    except OSError as e:
        error = exec_failed(p, e, given_back=direct)
    except UkrunError as e:
        error = e
    for fd in tap_fds:
        os.close(fd)  # the program's copies of the taps: the undo deletes the taps
    if not direct:
        raise error
    raise give_back(applied, error)


def _check_not_stopped(p: Plan) -> None:
    """UkrunError (exit 128 + the signal, as a shell reports it) when a signal that ends a
    process came in during the run: in place, the program would not get it, ukrun would."""
    signum = signals.pending_stop()
    if signum is not None:
        error = UkrunError("signal %d came in before %s started: not starting it"
                           % (signum, p.argv[0]))
        error.exit_status = 128 + signum
        raise error


def _await_reader(applied: Applied, timeout: float = 1.0) -> None:
    """Wait (bounded) until the guest holds its taps, so that a run waiting for the namespace
    lock finds them busy rather than records it would take over; not once a stop request is
    pending (``docker stop``), which the init must forward without delay."""
    await_carrier(applied.kernel.rtnl, [h.tap for h in applied.plan.handovers], timeout,
                  give_up=lambda: signals.pending_stop() is not None)


def _exec_forked(applied: Applied):
    """Fork the program; give the network back if its execve fails, else become its init."""

    p = applied.plan
    tap_fds = applied.tap_fds

    def prepare():  # in the child, right before its execve
        caps.drop(p.keep_caps, ambient=caps.ambient_wanted())
        process.hand_fds(tap_fds)
        signals.reset_signals()

    _say_exec(p.argv)
    pid, report = process.fork_exec(p.argv, os.environ, prepare)
    if report:
        process.reap(pid)
        raise give_back(applied, child_failed(p, report))
    try:
        applied.kernel.close_taps()  # the child has its own copy
        _await_reader(applied)
        applied.kernel.rtnl.close()
        caps.drop(frozenset())  # the init holds nothing
    except BaseException as e:
        os.kill(pid, 9)
        process.reap(pid)
        if isinstance(e, UkrunError):
            e.hint = "the guest was stopped; %s" % (e.hint or "")
        raise
    process.hand_fds({})
    _say("%s runs as pid %d under %s" % (p.argv[0], pid, p.init_program))
    process.flush_stdio()
    try:
        os.execve(p.init_program, [p.init_program, str(pid)], os.environ)
    except OSError as e:
        os.kill(pid, 9)  # first: whatever else fails, no guest is left without its init
        process.reap(pid)

        raise UkrunError("executing %s: %s" % (p.init_program, e.strerror),
                         "the guest was stopped and %s; reinstall ukrun"
                         % handed_text(p.handovers)) from e


def exec_applied(applied: Applied):
    """Hand the process over to the plan's command line (ukrun.kernel.process). Never returns:
    raises UkrunError when the program cannot be started, after giving the network back
    (but in exec mode dropped)."""
    if applied.plan.exec_mode == "forked":
        _exec_forked(applied)
    else:
        _exec_here(applied)


def run(target: str, unikernel: str, args: Sequence[str] = (), **options):
    """Hand the container's network to ``unikernel`` and exec it; returns only by raising.

    Runs in one network namespace are serialized (ukrun.kernel.nslock); signals that
    arrive meanwhile stay pending until the program (or ukrun's init) can take them.
    """
    o = Options(target=target, unikernel=unikernel, args=tuple(args), **options)
    if o.verbose:
        log_to_stderr()
    mask = signals.block_signals()
    # Where the taps may go (TAP_FD + N for interface N), so that no socket or tap a run opens
    # lands there before the taps are dup2()'d onto them.
    reserved = [fd for fd in range(TAP_FD, TAP_FD + len(items(o.interface)))
                if process.reserve_fd(fd)]
    # Without CAP_NET_ADMIN a run changes nothing and cannot take the lock: it uses what
    # ukrun cni or ukrun hook handed over, and a second guest's attach to the tap is EBUSY.
    lock = None
    try:
        lock = NamespaceLock() if caps.can_wire() else None
        p = plan_for_run(o, with_notes=_heard())
        for note in p.notes:
            _say(note)
        exec_applied(apply(p))
    finally:
        if lock is not None:
            lock.release()
        for fd in reserved:
            try:
                os.close(fd)
            except OSError:
                pass
        signals.restore_signals(mask)


# --- what a run says when it fails after changing things ------------------------------------

def listed(names) -> str:
    return ", ".join(names)


def given_back_text(handovers) -> str:
    """"eth0 was given back", or "eth0, net1 were given back"."""
    return "%s %s given back" % (listed(h.each.interface for h in handovers),
                                 "was" if len(handovers) == 1 else "were")


def handed_text(handovers) -> str:
    """"eth0 stays handed over to tap0", or "eth0, net1 stay handed over to tap0, tap1"."""
    return "%s %s handed over to %s" % (listed(h.each.interface for h in handovers),
                                        "stays" if len(handovers) == 1 else "stay",
                                        listed(h.tap for h in handovers))


def _reason(e: OSError) -> str:
    reason = e.strerror or str(e)
    ext_ack = getattr(e, "ext_ack", None)
    return "%s (%s)" % (reason, ext_ack) if ext_ack else reason


def step_failed(step, e: OSError, failures: list) -> UkrunError:
    """A wiring step failed with ``e``; ``failures``: what its undo could not revert."""
    hint = ("undoing failed too, the namespace is half-wired: %s" % "; ".join(failures)
            if failures else "everything done before was undone")
    kind = PrivilegeError if e.errno in (errno.EPERM, errno.EACCES) else NetworkError
    return kind("%s: %s" % (step.text, _reason(e)), hint)


def exec_failed(plan, e: OSError, given_back: bool) -> UkrunError:
    """The plan's execve failed with ``e``; ``given_back``: the network will be."""
    message = "executing %s: %s" % (plan.argv[0], e.strerror or e)
    hint = None if given_back else "%s; the next run reuses it" % handed_text(plan.handovers)
    if e.errno == errno.ENOENT:
        return NotFoundError(message, hint)
    if e.errno in (errno.EACCES, errno.ENOEXEC, errno.EPERM, errno.ETXTBSY):
        return NotExecutableError(message, hint)
    return UkrunError(message, hint)


def child_failed(plan, report: bytes) -> UkrunError:
    """The error a forked child reported instead of exec'ing (ukrun.kernel.process.encode_failure)."""
    errno_, status, message = process.decode_failure(report)
    if errno_ is not None:
        return exec_failed(plan, OSError(errno_, os.strerror(errno_)), given_back=True)
    kinds = {cls.exit_status: cls for cls in (UsageError, PrivilegeError, NotExecutableError,
                                              NotFoundError)}
    error = kinds.get(status, UkrunError)(message)
    error.exit_status = status
    return error


def give_back(applied, error: UkrunError) -> UkrunError:
    """Undo the wiring after ``error``; say so in the error when that fails too."""
    handovers = applied.plan.handovers
    given_back = given_back_text(handovers)
    try:
        applied.undo()
        outcome = given_back
    except UkrunError as undo_error:
        outcome = "giving %s back failed: %s" % (listed(h.each.interface for h in handovers),
                                                 undo_error)
    if not error.hint or given_back not in error.hint:
        error.hint = "%s; %s" % (error.hint, outcome) if error.hint else outcome
    return error
