"""``ukrun hook``: the handover as an OCI runtime hook (runc's createRuntime hook in
config.json; podman's and CRI-O's hooks.d).

The runtime starts it in the node's namespaces with the container's state on stdin
(``{"ociVersion", "id", "status", "pid", "bundle", ...}``); the container's network namespace is
/proc/PID/ns/net. It enters it and hands the interface over as ``ukrun cni`` does
(ukrun.handover), before the container's process starts, so that the process needs no
capability. ``--give-back`` (a poststop hook) undoes it from the record, for a namespace that
outlives the container (one named by path in config.json's linux.namespaces); a namespace of
the container's own goes with it, and so does everything in it.

Who may attach to the tap: ``--owner``/``--group``, or else the uid/gid of the container's
process (config.json's process.user in the bundle).
"""
from __future__ import annotations

import os
import sys

from ukrun.errors import UkrunError, UsageError


def read_state(text: bytes) -> dict:
    """The OCI state on stdin, checked: a JSON object with a pid (int) and a bundle (str)."""
    import json

    try:
        state = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError("the container state on stdin is not JSON: %s" % e,
                         "run ukrun hook as an OCI hook: the runtime writes the state") from None
    if not isinstance(state, dict):
        raise UsageError("the container state on stdin is not a JSON object")
    pid = state.get("pid")
    if pid is not None and (type(pid) is not int or pid < 0):
        raise UsageError("the container state's pid %r is not a process id" % (pid,))
    bundle = state.get("bundle")
    if bundle is not None and not isinstance(bundle, str):
        raise UsageError("the container state's bundle %r is not a path" % (bundle,))
    return state


def _bundle_config(state: dict) -> dict:
    import json

    bundle = state.get("bundle")
    if not bundle:
        return {}
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def container_user(state: dict) -> tuple:
    """(uid, gid) of the container's process, from its bundle's config.json; (None, None)."""
    user = _bundle_config(state).get("process", {}).get("user", {})
    ids = [user.get(key) if isinstance(user, dict) else None for key in ("uid", "gid")]
    return tuple(n if type(n) is int and 0 <= n < 2 ** 32 - 1 else None for n in ids)


def namespace_path(state: dict) -> str | None:
    """The container's network namespace: /proc/PID/ns/net while it runs, else the path its
    config.json names (a kept one); None when it has none left."""
    pid = state.get("pid")
    if pid:
        return "/proc/%d/ns/net" % pid
    for ns in _bundle_config(state).get("linux", {}).get("namespaces", []):
        if isinstance(ns, dict) and ns.get("type") == "network" and ns.get("path"):
            return ns["path"]
    return None


def hook(ns, stdin: bytes) -> int:
    """What ``ukrun hook`` does, with the parsed options ``ns``; raises UkrunError."""
    from ukrun import handover

    state = read_state(stdin)
    path = namespace_path(state)
    if ns.give_back:
        if path is None or not handover.entered(path):
            return 0  # gone with the container, and what was in it with it
        handover.give_back(ns.interface, ns.tap)
        return 0
    if path is None:
        raise UsageError("the container state holds no pid",
                         "ukrun hook runs as a createRuntime (or prestart) hook")
    owner, group = container_user(state)
    owner = ns.owner if ns.owner is not None else owner
    group = ns.group if ns.group is not None else group
    try:
        if not handover.entered(path):
            raise UkrunError("the container's network namespace %s is gone" % path)
    except OSError as e:
        raise UkrunError("entering %s: %s" % (path, e.strerror),
                         "the hook needs CAP_SYS_ADMIN: run it from the runtime") from None
    handover.hand_over(ns.interface, ns.tap, ns.wiring, owner, group).close()
    return 0


def main(ns) -> int:
    return hook(ns, sys.stdin.buffer.read())
