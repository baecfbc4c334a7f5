"""The cgroups a container engine made under a parent of its own, on this machine's cgroup v1
hierarchies: every process in them killed, then every directory removed, deepest first."""
import contextlib
import os
import signal
import time

TOP = "/sys/fs/cgroup"


def kill_and_remove(parent):
    """Kill what runs under cgroup PARENT ("/name", in the pids hierarchy) and remove PARENT in
    every hierarchy. Nothing happens when there is no such cgroup."""
    relative = parent.strip("/")
    assert relative and ".." not in relative.split("/"), parent
    top = os.path.join(TOP, "pids", relative)
    for _ in range(20):
        pids = []
        for dirpath, _, files in os.walk(top):
            if "cgroup.procs" in files:
                with open(os.path.join(dirpath, "cgroup.procs")) as fh:
                    pids += [int(p) for p in fh.read().split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    for hierarchy in os.listdir(TOP) if os.path.isdir(top) else ():
        path = os.path.join(TOP, hierarchy, relative)
        for dirpath, _, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
