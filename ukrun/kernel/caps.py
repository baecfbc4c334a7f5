"""Capabilities: names, the sets the kernel reports, and the drop before execve.

The drop follows util-linux's setpriv and fails closed: a step that fails, or a result
that is not what was asked, raises PrivilegeError; the caller must then not exec.
Capability state is per thread: drop from the thread that will call os.execve.
"""
from __future__ import annotations

import os

# For annotations only: collections.abc loads collections, ~1 ms of a run's start
# (typing's TYPE_CHECKING, without importing typing).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

from ukrun.kernel.ffi import check, ffi, lib
from ukrun.errors import PrivilegeError
from ukrun.valueclass import value_class

# number -> "CAP_NET_ADMIN", from the CAP_* constants csrc/sys.cdef takes from the headers.
NAMES = {getattr(lib, n): n for n in dir(lib) if n.startswith("CAP_")}
_NUMBERS = {name: number for number, name in NAMES.items()}

# Where the kernel reports a thread's sets; /proc/self would be the main thread's.
STATUS = "/proc/thread-self/status"
_STATUS_FIELDS = {"CapEff": "effective", "CapPrm": "permitted", "CapInh": "inheritable",
                  "CapBnd": "bounding", "CapAmb": "ambient"}


def cap_number(name: str) -> int:
    """"net_admin", "CAP_NET_ADMIN", "Net_Admin" -> 12; ValueError for anything else."""
    if not isinstance(name, str):
        raise TypeError("capability name must be a str, not %s" % type(name).__name__)
    key = name.strip().upper()
    if not key.startswith("CAP_"):
        key = "CAP_" + key
    try:
        return _NUMBERS[key]
    except KeyError:
        raise ValueError("unknown capability %r" % name) from None


def cap_name(number: int) -> str:
    """12 -> "CAP_NET_ADMIN"; ValueError for a number the headers do not name."""
    try:
        return NAMES[number]
    except (KeyError, TypeError):
        raise ValueError("unknown capability number %r" % (number,)) from None


def describe(caps: Iterable[int]) -> str:
    """"CAP_KILL,CAP_NET_ADMIN" for messages; "none" when empty; unnamed ones as numbers."""
    return ",".join(NAMES.get(c, str(c)) for c in sorted(caps)) or "none"


def last_cap() -> int:
    """The highest capability the running kernel knows (CAP_LAST_CAP is untrustworthy)."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def to_mask(caps: Iterable[int]) -> int:
    mask = 0
    for cap in caps:
        if not 0 <= cap < 64:
            raise ValueError("capability number %d out of range" % cap)
        mask |= 1 << cap
    return mask


def from_mask(mask: int) -> frozenset:
    return frozenset(bit for bit in range(mask.bit_length()) if mask >> bit & 1)


@value_class(frozen=True)
class CapState:
    effective: frozenset
    permitted: frozenset
    inheritable: frozenset
    bounding: frozenset
    ambient: frozenset
    no_new_privs: bool


def parse_status(text: str) -> CapState:
    """The capability sets and no_new_privs from /proc/<pid>/status text."""
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        try:
            if key in _STATUS_FIELDS:
                found[_STATUS_FIELDS[key]] = from_mask(int(value.strip(), 16))
            elif key == "NoNewPrivs":
                found["no_new_privs"] = int(value.strip()) != 0
        except ValueError:
            raise ValueError("bad %s line in status: %r" % (key, line)) from None
    missing = set(_STATUS_FIELDS.values()) | {"no_new_privs"}
    missing -= set(found)
    if missing:
        raise ValueError("status lacks %s" % ", ".join(sorted(missing)))
    return CapState(**found)


def current() -> CapState:
    """The calling thread's capability state, as the kernel reports it."""
    with open(STATUS) as f:
        return parse_status(f.read())


def capget() -> tuple:
    """(effective, permitted, inheritable) of the calling thread, via capget(2)."""
    sets = ffi.new("uint64_t[3]")
    check(lib.ukrun_capget(sets + 0, sets + 1, sets + 2), "capget")
    return tuple(from_mask(mask) for mask in sets)


def capset(effective: Iterable[int], permitted: Iterable[int], inheritable: Iterable[int]) -> None:
    """capset(2) on the calling thread; OSError (EPERM) for what the kernel refuses."""
    check(lib.ukrun_capset(to_mask(effective), to_mask(permitted), to_mask(inheritable)),
          "capset")


def drop_bounding(cap: int) -> None:
    """Remove ``cap`` from the bounding set (needs CAP_SETPCAP); no execve regains it."""
    check(lib.ukrun_capbset_drop(cap), _bounding_step(cap))


def set_no_new_privs() -> None:
    """No execve after this grants privileges (setuid bits, file caps, root's full sets)."""
    check(lib.ukrun_set_no_new_privs(), "PR_SET_NO_NEW_PRIVS")


def securebits() -> int:
    """The calling thread's securebits (SECBIT_* of linux/securebits.h), PR_GET_SECUREBITS."""
    return check(lib.ukrun_securebits(), "PR_GET_SECUREBITS")


def ambient_needed(euid: int | None = None, bits: int | None = None) -> bool:
    """Whether a program exec'd with effective uid ``euid`` and securebits ``bits`` (this
    thread's when None) keeps capabilities only through the ambient set.

    As root with root's rules, execve gives the program the bounding set and the inheritable
    one, and makes them effective (capabilities(7)): the ambient set adds nothing. A non-root
    euid, or SECBIT_NOROOT, turns those rules off: then only ambient capabilities survive.
    """
    euid = os.geteuid() if euid is None else euid
    bits = securebits() if bits is None else bits
    return euid != 0 or bool(bits & lib.SECBIT_NOROOT)


def ambient_allowed(bits: int | None = None) -> bool:
    """Whether ambient capabilities can be raised: SECBIT_NO_CAP_AMBIENT_RAISE forbids it."""
    bits = securebits() if bits is None else bits
    return not bits & lib.SECBIT_NO_CAP_AMBIENT_RAISE


def ambient_wanted(euid: int | None = None, bits: int | None = None) -> bool:
    """Whether a drop should raise the kept capabilities as ambient (``drop``'s
    ``ambient``): whenever the kernel allows it, so the program holds them in
    every set; when it does not, only if they are needed there, which ``ambient_problem``
    reports before anything changes."""
    bits = securebits() if bits is None else bits
    return ambient_allowed(bits) or ambient_needed(euid, bits)


# What to do about an ambient set that is needed but forbidden (ambient_problem).
AMBIENT_HINT = ("pass --keep-cap none, or run as root without SECBIT_NOROOT (root needs no "
                "ambient set)")


def ambient_problem(kept: Iterable[int], euid: int | None = None,
                    bits: int | None = None) -> str | None:
    """Why a program exec'd by this thread (effective uid ``euid``, securebits ``bits``: this
    thread's when None) cannot keep ``kept``: it needs them ambient and SECBIT_NO_CAP_AMBIENT_RAISE
    forbids raising any. None when it can. For a preflight: nothing is changed."""
    kept = frozenset(kept)
    bits = securebits() if bits is None else bits
    if not kept or ambient_allowed(bits):
        return None
    euid = os.geteuid() if euid is None else euid
    if not ambient_needed(euid, bits):
        return None
    who = "uid %d" % euid if euid != 0 else "root under SECBIT_NOROOT"
    return ("a program run as %s keeps %s only as ambient capabilities, and "
            "SECBIT_NO_CAP_AMBIENT_RAISE forbids raising them" % (who, describe(kept)))


def clear_ambient() -> None:
    check(lib.ukrun_ambient_clear_all(), "PR_CAP_AMBIENT_CLEAR_ALL")


def raise_ambient(wanted: Iterable[int]) -> None:
    """Make ``wanted`` ambient, so a non-root user keeps them across execve.

    The kernel wants each one permitted and inheritable: they are added to the
    inheritable set first. OSError (EPERM) when one is not permitted.
    """
    wanted = frozenset(wanted)
    effective, permitted, inheritable = capget()
    if not wanted <= inheritable:
        capset(effective, permitted, inheritable | wanted)
    for cap in sorted(wanted):
        check(lib.ukrun_ambient_raise(cap), "PR_CAP_AMBIENT_RAISE %s" % describe([cap]))


NET_ADMIN = "CAP_NET_ADMIN"


def can_wire(state=None) -> bool:
    # Whether this thread holds CAP_NET_ADMIN, effective: what wiring the network takes.
    # Without it a run can only use a handover made before (ukrun cni, ukrun hook).
    return cap_number(NET_ADMIN) in (state or current()).effective


def check_capabilities(kept: frozenset, state=None, wire: bool = True) -> None:
    """CAP_NET_ADMIN to wire the network (when ``wire``), and every capability to keep after
    the drop (``state``: this thread's caps.CapState, read when None)."""
    state = state or current()
    if wire and not can_wire(state):
        raise PrivilegeError("%s is required to wire the network" % NET_ADMIN,
                             "docker run --cap-add=NET_ADMIN")
    # capset can only keep what is permitted, and inheritable only what is still bounded.
    missing = kept - (state.permitted & state.bounding)
    if missing:
        raise PrivilegeError("cannot keep %s: this process does not hold it"
                             % describe(missing),
                             "grant it to the container, or pass --keep-cap none")


def _refuse(message: str, hint: str | None = None) -> PrivilegeError:
    return PrivilegeError("dropping capabilities: " + message, hint)


def _attempt(what, call, *args) -> None:
    """Run one step of the drop; a refusal from the kernel aborts it as a PrivilegeError.
    ``what`` names the step: a str, or a callable that words it, called only then (a drop
    takes some forty steps)."""
    try:
        call(*args)
    except OSError as e:
        what = what if isinstance(what, str) else what()
        raise _refuse("%s: %s" % (what, os.strerror(e.errno)),
                      "nothing was started; a seccomp or LSM profile may forbid the change") from e


def _bounding_step(cap: int):
    """What dropping ``cap`` from the bounding set is called in a message, worded on demand."""
    return lambda: "PR_CAPBSET_DROP %s" % describe([cap])


def _checked_kept(kept: Iterable[int], before: CapState) -> frozenset:
    """``kept`` as a frozenset, refused (before any change) when the thread cannot keep it."""
    kept = frozenset(kept)
    top = last_cap()
    bad = sorted(c for c in kept if not isinstance(c, int) or not 0 <= c <= top)
    if bad:
        raise ValueError("no such capability on this kernel: %s" % ", ".join(map(str, bad)))
    missing = kept - before.permitted
    if missing:
        raise _refuse("cannot keep %s: not in the permitted set" % describe(missing),
                      "grant it to the container with docker run --cap-add, or do not keep it")
    # capset lets the inheritable set grow only within the bounding set.
    missing = kept - before.bounding - before.inheritable
    if missing:
        raise _refuse("cannot keep %s: not in the bounding set" % describe(missing),
                      "grant it to the container with docker run --cap-add, or do not keep it")
    return kept


def _check_ambient(kept: frozenset, ambient: bool) -> None:
    """Refuse, before any change, to raise ambient capabilities the kernel forbids."""
    if ambient and kept and not ambient_allowed():
        raise _refuse("cannot raise %s as ambient capabilities: SECBIT_NO_CAP_AMBIENT_RAISE "
                      "forbids it" % describe(kept),
                      AMBIENT_HINT)


def _verify(after: CapState, wanted: dict) -> CapState:
    wrong = [name for name, want in wanted.items() if getattr(after, name) != want]
    if wrong:
        raise _refuse("%s not as intended after the drop (%s)" % (", ".join(wrong), STATUS),
                      "refusing to run the program with privileges left")
    return after


def can_bound_execve(state: CapState | None = None) -> bool:
    """Whether this thread can shrink its bounding set (CAP_SETPCAP is effective in ``state``,
    its current one when None): only then can ``drop(keep_own=True)`` decide the
    program's capabilities while this thread keeps its own."""
    return lib.CAP_SETPCAP in (state or current()).effective


def drop(kept: Iterable[int], ambient: bool = False, keep_own: bool = False) -> CapState:
    """Make the next execve hand the program exactly ``kept``; verify; return the state.

    execve computes the program's sets from the bounding, inheritable and ambient sets
    (capabilities(7)): with all three equal to ``kept`` and no_new_privs, a root program gets
    ``kept``, a non-root one ``kept`` as ambient, and file capabilities nothing beyond the
    bounding set. Without CAP_SETPCAP the bounding set cannot shrink, and no_new_privs is what
    cuts the program's permitted set to ``kept``.

    ``keep_own``: this thread keeps its effective and permitted sets (CAP_NET_ADMIN, to give
    the network back if execve fails), which needs CAP_SETPCAP; else they become ``kept``.
    ``ambient``: raise ``kept`` as ambient, for a non-root user's execve (``ambient_wanted``
    decides); root with root's rules needs none.

    setpriv's order: no_new_privs -> bounding set (when CAP_SETPCAP is effective) -> capset
    (inheritable = ``kept``) -> clear ambient (-> raise) -> check the thread's status. What
    the thread cannot keep, an ambient set the kernel forbids and ``keep_own`` without
    CAP_SETPCAP are refused before anything changes; after a failed capset the thread still
    holds what it had. PrivilegeError when the result is not as intended.
    """
    before = current()
    kept = _checked_kept(kept, before)
    with_setpcap = lib.CAP_SETPCAP in before.effective
    if keep_own and not with_setpcap:
        raise _refuse("CAP_SETPCAP is needed to bound the program's capabilities",
                      "drop without keep_own instead")
    _check_ambient(kept, ambient)
    effective, permitted = (before.effective, before.permitted) if keep_own else (kept, kept)

    _attempt("PR_SET_NO_NEW_PRIVS", set_no_new_privs)
    if with_setpcap:
        for cap in range(last_cap() + 1):
            if cap not in kept and cap in before.bounding:
                _attempt(_bounding_step(cap), drop_bounding, cap)
    _attempt("capset", capset, effective, permitted, kept)
    _attempt("PR_CAP_AMBIENT_CLEAR_ALL", clear_ambient)
    if ambient:
        _attempt("PR_CAP_AMBIENT_RAISE", raise_ambient, kept)
    return _verify(current(), {
        "effective": effective, "permitted": permitted, "inheritable": kept,
        "bounding": kept if with_setpcap else before.bounding,
        "ambient": kept if ambient else frozenset(), "no_new_privs": True})
