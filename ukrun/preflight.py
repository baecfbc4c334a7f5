"""Every check that needs no change: a run that fails here has touched nothing.

Each check raises the ukrun.errors type whose exit status tells the user what kind of
thing is wrong (2 options, 127 not found, 126 not executable, 77 privilege or device).
"""
from __future__ import annotations

import os

from ukrun.errors import NotExecutableError, NotFoundError, UsageError
from ukrun.guest.targets import TARGETS
from ukrun.kernel.nslock import LOCK_NAME
from ukrun.options import field_options, per_interface

DEFAULT_KEPT = "CAP_NET_BIND_SERVICE"


def kept_capabilities(names, notes=None, state=None) -> frozenset:
    """Capability numbers from names ("NET_BIND_SERVICE", "cap_kill"; "none" alone: none).

    ``names`` None is the default: CAP_NET_BIND_SERVICE when this process holds it (``state``:
    its caps.CapState, read when None). A container started with every capability dropped but
    NET_ADMIN (Kubernetes ``drop: [ALL]``) must still run; only a capability asked for by name
    has to be held.
    """
    from ukrun.kernel import caps
    from ukrun.kernel.caps import cap_number

    if names is None:
        default = cap_number(DEFAULT_KEPT)
        state = state or caps.current()
        if default in state.permitted & state.bounding:
            return frozenset({default})
        if notes is not None:
            notes.append("%s is not held, so the unikernel keeps no capability" % DEFAULT_KEPT)
        return frozenset()
    names = list(names)
    nones = [n for n in names if isinstance(n, str) and n.strip().lower() == "none"]
    if nones and len(names) > 1:
        raise UsageError("--keep-cap: 'none' cannot be combined with other capabilities",
                         "pass --keep-cap none alone, or only the capabilities to keep")
    if nones:
        return frozenset()
    try:
        return frozenset(cap_number(n) for n in names)
    except (ValueError, TypeError) as e:
        raise UsageError("--keep-cap: %s" % e, "names as in capabilities(7), "
                         "with or without CAP_, or none") from None


def find_program(name: str, what: str) -> str:
    """The path ``name`` runs as: itself when it holds a '/', else the first match on PATH.

    NotFoundError (127) when nothing matches; NotExecutableError (126) when only files
    that cannot be executed do.
    """
    if "/" in name:
        return check_executable(name, what)
    found = None
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", name)
        if os.path.isfile(path):
            if os.access(path, os.X_OK):
                return path
            found = found or path
    if found:
        raise NotExecutableError("%s %s is not executable" % (what, found),
                                 "chmod +x it, or pass the right path")
    raise NotFoundError("%s %s not found on PATH" % (what, name),
                        "install it, or pass its path")


def check_executable(path: str, what: str) -> str:
    check_readable(path, what)
    if not os.access(path, os.X_OK):
        raise NotExecutableError("%s %s is not executable" % (what, path),
                                 "chmod +x it")
    return path


def check_readable(path: str, what: str) -> str:
    """The file a tender or QEMU loads: it must exist and be a readable file."""
    if not os.path.exists(path):
        raise NotFoundError("%s %s not found" % (what, path))
    if os.path.isdir(path):
        raise NotExecutableError("%s %s is a directory" % (what, path))
    if not os.access(path, os.R_OK):
        raise NotExecutableError("%s %s cannot be read" % (what, path))
    return path


def _check_value(option, value) -> None:
    """UsageError when ``value`` is not one ``option`` (of ukrun.options' table) takes."""
    if option.choices is not None and value not in option.choices:
        raise UsageError("%s: %r is not one of %s" % (option.flag, value,
                                                      ", ".join(option.choices)))
    if option.check is not None and value is not None:
        try:
            option.check(value)
        except (ValueError, TypeError) as e:
            raise UsageError("%s: %s" % (option.flag, e), option.hint) from None


def check_options(o):
    """The options alone (no kernel, no files): UsageError, or the Target they name.

    Every option of ukrun.options' table: one the target does not take must keep its
    default, and every value must be one the option takes; then what holds between them.
    """
    target = TARGETS.get(o.target)
    if target is None:
        raise UsageError("unknown target %r" % (o.target,),
                         "choose from %s" % ", ".join(TARGETS))
    taken = []
    for option in field_options():
        if option.takes(o.target):
            taken.append(option)
        elif option.is_set(getattr(o, option.dest)):
            raise UsageError("%s is not available for the %s target" % (option.flag, o.target))
    for option in taken:
        _check_value(option, getattr(o, option.dest))
    each = per_interface(o, target)  # the options of each interface, their names all different
    if not all(isinstance(a, str) for a in o.args):
        raise UsageError("arguments must be strings")
    if o.tap_fd and o.tap_by_name:
        raise UsageError("--tap-fd and --tap-by-name ask for opposite things", "pass one")
    if (o.ip_template is None) != (o.ip_args != "template"):
        raise UsageError("--ip-args template and --ip-template go together",
                         "pass both, or neither")
    if any(e.tap == LOCK_NAME for e in each):
        raise UsageError("--tap: %s is the name of ukrun's namespace lock" % LOCK_NAME)
    return target
