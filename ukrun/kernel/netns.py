"""Entering a network namespace: the calling thread joins the one a path names.

The library works in the network namespace of the thread that calls it (netlink sockets, tap
devices and interface indexes are the caller's namespace's), so a CNI plugin or an OCI hook,
started in the node's namespace, enters the pod's with ``enter(path)`` before it plans, and
everything after that is the pod's. Python before 3.12 has no os.setns: the C core does it.
"""
from __future__ import annotations

import os

from ukrun.kernel.ffi import check, lib


def same_namespace(path: str) -> bool:
    """Whether ``path`` names the namespace this thread is in already (same device and inode)."""
    here, there = os.stat("/proc/thread-self/ns/net"), os.stat(path)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def enter(path: str) -> None:
    """Join the network namespace ``path`` names (/proc/PID/ns/net, /run/netns/NAME); OSError
    with the errno and what was being done (ENOENT: it is gone; EINVAL: not a network
    namespace; EPERM: no CAP_SYS_ADMIN)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        check(lib.ukrun_setns_net(fd), "entering the network namespace %s" % path)
    finally:
        os.close(fd)
