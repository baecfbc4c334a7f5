"""The namespace lock: one ukrun run at a time in a network namespace, from before it reads
the kernel until its exec (or its end). A run that finds it taken waits, bounded.
"""
from __future__ import annotations

import errno
import time

from ukrun.errors import NetworkError

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
    from ukrun.kernel.ffi import lib
    from ukrun.kernel.netlink import Attr, pack_attr
    from ukrun.kernel.netlink_bodies import NFGENMSG, NFQNL_MSG_CONFIG_CMD
    from ukrun.kernel.rtnl import Netlink

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
    from ukrun.kernel import caps
    from ukrun.kernel.ffi import lib

    return lib.CAP_NET_ADMIN in caps.current().effective


def _take_tap():
    """The lock as a tap: the Tap, or None while another run holds it."""
    from ukrun.kernel.tap import open_tap

    try:
        return open_tap(LOCK_NAME, exclusive=True)
    except OSError as e:
        if e.errno != errno.EBUSY:
            _lock_refused(e)
    return None


def _lock_refused(error: OSError):
    """The preflight's own words for why the lock cannot be taken here (no tun device, no
    CAP_NET_ADMIN), else the error as it is."""
    from ukrun.kernel import caps, devices

    devices.check_tun()
    caps.check_capabilities(frozenset())
    raise NetworkError("taking the namespace lock (netfilter queue %d or tap %s): %s"
                       % (LOCK_QUEUE, LOCK_NAME, error.strerror))
