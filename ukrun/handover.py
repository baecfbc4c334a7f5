"""The last step of a run: give the process to the program, and the network back if it fails.

Three ways to exec (``exec_mode``), chosen in the plan:

- ``direct``: this process becomes the program. The bounding, inheritable and ambient sets are
  set to the kept ones first (caps.prepare_execve), so execve hands the program exactly those
  while this process keeps CAP_NET_ADMIN until execve has replaced it: an execve that returns
  gives the network back. Needs CAP_SETPCAP.
- ``forked``: the program becomes a child that drops its capabilities and execs; a
  close-on-exec pipe tells this process whether that execve worked (EOF: it did; bytes: why
  not). On failure the network is given back; on success this process drops every capability
  and execs ukrun's small init (ukrun.pid1), which still owns the child, forwards signals to
  it, reaps zombies and exits with its status. Used when ukrun is PID 1 (the kernel drops a
  signal to a namespace's init that has no handler for it, so a tender that installs none
  would ignore ``docker stop``) and when CAP_SETPCAP is missing.
- ``dropped``: capabilities are dropped, then execve (``--init never`` without CAP_SETPCAP):
  the program replaces ukrun, but a failed execve can no longer give the network back.

Runs in one network namespace are serialized by ``NamespaceLock``.
"""
from __future__ import annotations

import _signal
import errno
import os
import sys
import time

from ukrun.errors import NetworkError

EXEC_MODES = ("direct", "forked", "dropped")

# The lock is netfilter queue LOCK_QUEUE, bound over a netfilter netlink socket (an NFQUEUE
# "instance", which no rule sends a packet to): only a holder of CAP_NET_ADMIN can bind it
# (nfnetlink refuses every message without it; an abstract unix socket name could be taken by
# any process in the namespace), queues are per network namespace, and the kernel unbinds it
# when the socket's last fd is closed: its holder exits or execs (close-on-exec), so no crash
# leaves it behind. Where the kernel has no NFQUEUE, the lock is a tap named LOCK_NAME,
# created exclusively and never made persistent, with the same four properties; but removing
# a network device waits for an RCU grace period (tens of ms here), inside the execve that
# closes its fd, where unbinding a queue takes microseconds. A run that binds the queue waits
# for such a tap too, so the two kinds of run exclude each other.
LOCK_QUEUE = 0x756B  # "uk"
LOCK_NAME = "ukrun-lock"
LOCK_WAIT = 10.0  # seconds; a run holds the lock for tens of milliseconds

_NFQUEUE_LIST = "/proc/net/netfilter/nfnetlink_queue"  # the namespace's bound queues


def choose_exec_mode(init: str, pid1: bool, can_bound: bool) -> str:
    """``init``: auto | always | never; ``can_bound``: CAP_SETPCAP is effective."""
    if init == "always" or (init == "auto" and (pid1 or not can_bound)):
        return "forked"
    return "direct" if can_bound else "dropped"


class NamespaceLock:
    """Held from before a run reads the kernel until its exec: one run per network namespace.
    ``kind``: "queue" (NFQUEUE LOCK_QUEUE) or "tap" (the tap LOCK_NAME, without NFQUEUE)."""

    def __init__(self, wait: float = LOCK_WAIT):
        deadline = time.monotonic() + wait
        delay = 0.001
        while True:
            self._holder, self.kind = _take_lock()
            if self._holder is not None:
                return
            if time.monotonic() >= deadline:
                raise NetworkError(
                    "another ukrun run in this network namespace has not finished in %g s "
                    "(it holds the netfilter queue %d or the tap %s)"
                    % (wait, LOCK_QUEUE, LOCK_NAME),
                    "wait for it, or stop the container it runs in")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def release(self) -> None:
        self._holder.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _take_lock():
    """(holder, kind) once the lock is taken (holder: what to close to release it), or
    (None, kind) while another run holds it."""
    try:
        queue = _bind_queue()
    except OSError as e:
        if e.errno == errno.EPERM and not _may_administer():
            _lock_refused(e)  # nfnetlink's answer to a process without CAP_NET_ADMIN
        if e.errno == errno.EEXIST or (e.errno == errno.EPERM and _queue_bound()):
            return None, "queue"  # another socket's: another run holds the lock
        # No netfilter netlink here, no queue subsystem in it (EINVAL), or a refusal for
        # another reason: the tap.
        return _take_tap(), "tap"
    if _lock_tap_exists():  # a run where the kernel had no NFQUEUE
        queue.close()
        return None, "queue"
    return queue, "queue"


def _bind_queue():
    """A netfilter netlink socket with queue LOCK_QUEUE bound to it; OSError when there is no
    such socket here, or from the kernel's answer (EPERM: bound to another socket, or no
    CAP_NET_ADMIN; EINVAL: nfnetlink has no queue subsystem)."""
    from ukrun._ffi import lib
    from ukrun.netlink import NFGENMSG, NFQNL_MSG_CONFIG_CMD, Attr, pack_attr
    from ukrun.rtnl import Netlink

    sock = Netlink(lib.NETLINK_NETFILTER)
    # nfgenmsg.res_id and the command's pf are big-endian (__be16).
    body = NFGENMSG.struct.pack(0, lib.NFNETLINK_V0, LOCK_QUEUE.to_bytes(2, "big"))
    command = NFQNL_MSG_CONFIG_CMD.struct.pack(lib.NFQNL_CFG_CMD_BIND, b"\0\0")
    body += pack_attr(Attr(lib.NFQA_CFG_CMD, command))
    try:
        sock._request(lib.NFNL_SUBSYS_QUEUE << 8 | lib.NFQNL_MSG_CONFIG, body,
                      "binding netfilter queue %d" % LOCK_QUEUE)
    except BaseException:
        sock.close()
        raise
    return sock


def _queue_bound() -> bool:
    """Whether this namespace lists queue LOCK_QUEUE as bound (a socket holds it); True when
    the list cannot be read (a refusal is then taken for another run's lock, and waited on)."""
    try:
        with open(_NFQUEUE_LIST) as f:
            return any(line.split()[:1] == [str(LOCK_QUEUE)] for line in f)
    except OSError:
        return True


def _lock_tap_exists() -> bool:
    import _socket

    try:
        _socket.if_nametoindex(LOCK_NAME)
    except OSError:
        return False
    return True


def _may_administer() -> bool:
    """Whether this thread holds CAP_NET_ADMIN (the one capability nfnetlink asks for)."""
    from ukrun import caps
    from ukrun._ffi import lib

    return lib.CAP_NET_ADMIN in caps.current().effective


def _take_tap():
    """The lock as a tap: the Tap, or None while another run holds it."""
    from ukrun.tap import open_tap

    try:
        return open_tap(LOCK_NAME, exclusive=True)
    except OSError as e:
        if e.errno != errno.EBUSY:
            _lock_refused(e)
    return None


def _lock_refused(error: OSError):
    """The preflight's own words for why the lock cannot be taken here (no tun device, no
    CAP_NET_ADMIN), else the error as it is."""
    from ukrun import preflight

    preflight.check_tun()
    preflight.check_capabilities(frozenset())
    raise NetworkError("taking the namespace lock (netfilter queue %d or tap %s): %s"
                       % (LOCK_QUEUE, LOCK_NAME, error.strerror))


# --- signals ------------------------------------------------------------------------------

def block_signals():
    """Block every signal; returns the mask to restore. A blocked signal is kept pending, even
    for a namespace's init, so a ``docker stop`` during the run reaches the program later."""
    return _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())


def restore_signals(mask) -> None:
    _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)


# Signals whose default action is not to end the process: ignore (SIGCHLD, SIGCONT, SIGURG,
# SIGWINCH) or stop (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU).
_HARMLESS = frozenset(getattr(_signal, name) for name in (
    "SIGCHLD", "SIGCONT", "SIGURG", "SIGWINCH", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU"))


def pending_stop() -> int | None:
    """A pending (blocked) signal whose default action ends the process, or None: delivered
    once the mask is emptied for an in-place exec, it would end ukrun instead of the program."""
    pending = sorted(set(_signal.sigpending()) - _HARMLESS)
    return int(pending[0]) if pending else None


def reset_signals() -> None:
    """Default dispositions and an empty mask, as a program started directly has: execve
    keeps ignored signals (CPython ignores SIGPIPE and SIGXFSZ) and the mask."""
    for signum in _signal.valid_signals():
        if signum in (_signal.SIGKILL, _signal.SIGSTOP):
            continue
        try:
            _signal.signal(signum, _signal.SIG_DFL)
        except (OSError, ValueError):  # numbers libc keeps for itself
            pass
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())


# --- file descriptors -----------------------------------------------------------------------

def reserve_fd(fd: int):
    """Put /dev/null on ``fd`` (close-on-exec) when it is free, so no socket a run opens lands
    there before the tap is dup2()'d onto it; returns whether it did."""
    try:
        os.fstat(fd)
        return False
    except OSError:
        pass
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    if null != fd:
        os.dup2(null, fd, inheritable=False)
        os.close(null)
    return True


def hand_fds(taps: dict) -> None:
    """Leave only 0, 1, 2 and the taps inheritable, all else close-on-exec. ``taps`` maps the
    fd each tap goes to (``reserve_fd`` kept them free) to the fd that holds it now."""
    keep = {0, 1, 2}
    for as_fd, tap_fd in taps.items():
        if tap_fd != as_fd:
            os.dup2(tap_fd, as_fd, inheritable=True)  # the original stays close-on-exec
        else:
            os.set_inheritable(as_fd, True)
        keep.add(as_fd)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:  # the fd listdir itself used, closed by now
                pass


# --- the forked exec's report ------------------------------------------------------------------

def encode_failure(exc: BaseException) -> bytes:
    """What the child tells its parent when it cannot exec: b"errno:N" or b"error:S:MESSAGE"."""
    if isinstance(exc, OSError) and exc.errno:
        return b"errno:%d" % exc.errno
    status = getattr(exc, "exit_status", 1)
    return ("error:%d:%s" % (status, exc)).encode(errors="replace")


def decode_failure(data: bytes):
    """(errno or None, exit status or None, message or None) from ``encode_failure``'s bytes."""
    kind, _, rest = data.partition(b":")
    if kind == b"errno" and rest.isdigit():
        return int(rest), None, None
    status, _, message = rest.partition(b":")
    if kind == b"error" and status.isdigit():
        return None, int(status), message.decode(errors="replace")
    return None, 1, "the child reported %r" % data[:200]


def read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def fork_exec(argv: list, env, prepare) -> tuple:
    """Fork a child that runs ``prepare()`` then execs ``argv``: (pid, b"") when its execve
    worked, (pid, report) when it did not (the child has exited; reap it)."""
    flush_stdio()
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child never returns into the caller's code
        try:
            os.close(read_end)
            prepare()
            os.execve(argv[0], argv, env)
        except BaseException as e:
            try:
                os.write(write_end, encode_failure(e))
            finally:
                os._exit(127)
        os._exit(127)
    os.close(write_end)
    try:
        return pid, read_all(read_end)
    finally:
        os.close(read_end)


def flush_stdio() -> None:
    """Flush Python's buffers before an exec or a fork; a stream closed when ukrun started is
    None, and one whose fd is gone fails: neither may stop a run that has wired the network."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
