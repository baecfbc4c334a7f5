"""Entering a network namespace: the calling thread joins the one a path names.

The library works in the network namespace of the thread that calls it (netlink sockets, tap
devices and interface indexes are the caller's namespace's), so a CNI plugin or an OCI hook,
started in the node's namespace, enters the pod's with ``enter(path)`` before it plans, and
everything after that is the pod's. Python before 3.12 has no os.setns: the C core does it.
"""
from __future__ import annotations

import os

from ukrun.errors import NetworkError
from ukrun.kernel.ffi import check, lib

# The namespaces a plugin or hook must never hand over: its own (the node's, where the runtime
# starts it) and the machine's first process's (a host-network container's namespace is that).
_NODE_NAMESPACES = ("/proc/thread-self/ns/net", "/proc/1/ns/net")


def _identity(st) -> tuple:
    return st.st_dev, st.st_ino


def node_namespaces() -> set:
    """(device, inode) of each namespace of _NODE_NAMESPACES that can be read."""
    found = set()
    for path in _NODE_NAMESPACES:
        try:
            found.add(_identity(os.stat(path)))
        except OSError:
            pass  # /proc/1 hidden (hidepid): this thread's own is still known
    return found


def enter_other(path: str) -> None:
    """Join the network namespace ``path`` names (/proc/PID/ns/net, /run/netns/NAME), which must
    not be the node's (``node_namespaces``): NetworkError if it is. OSError with the errno and
    what was being done otherwise (ENOENT: it is gone; EINVAL: not a network namespace; EPERM:
    no CAP_SYS_ADMIN). Opened without blocking, so a FIFO put in its place cannot hang us."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if _identity(os.fstat(fd)) in node_namespaces():
            raise NetworkError("%s is the node's own network namespace, not a pod's" % path,
                               "a CNI plugin or hook hands over a pod's interface only; a "
                               "host-network pod cannot run a unikernel this way")
        check(lib.ukrun_setns_net(fd), "entering the network namespace %s" % path)
    finally:
        os.close(fd)
