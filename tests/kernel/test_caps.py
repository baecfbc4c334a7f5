"""ukrun.kernel.caps: the name table and set maths (pure), and the drop in child processes only.

Every test that changes privileges runs in a child Python; the child prints its own
/proc/thread-self/status before and after the drop, then execs `cat /proc/self/status`
so the grandchild reports what the execve handed on.
"""
import ctypes
import os
import re
import subprocess
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sysheaders import lib as hdr
from ukrun.kernel import caps
from ukrun.kernel.ffi import lib

NET_ADMIN, NET_BIND_SERVICE, SETPCAP, SYS_ADMIN = (
    lib.CAP_NET_ADMIN, lib.CAP_NET_BIND_SERVICE, lib.CAP_SETPCAP, lib.CAP_SYS_ADMIN)

STATUS_SAMPLE = """\
Name:\tcat
Umask:\t0022
State:\tR (running)
Uid:\t0\t0\t0\t0
CapInh:\t0000000000000400
CapPrm:\t0000000000001400
CapEff:\t0000000000001000
CapBnd:\t000001ffffffffff
CapAmb:\t0000000000000000
NoNewPrivs:\t1
Seccomp:\t0
"""


# --- names -------------------------------------------------------------------------

def header_capabilities():
    """Every CAP_X n the installed linux/capability.h defines, read independently of cffi."""
    with open("/usr/include/linux/capability.h") as f:
        return {int(n): name for name, n in re.findall(r"#define (CAP_\w+)\s+(\d+)\s*$", f.read(), re.M)}


def test_name_table_is_the_headers():
    assert caps.NAMES == header_capabilities()
    assert caps.NAMES[12] == "CAP_NET_ADMIN"


@pytest.mark.parametrize("spelling", ["net_admin", "CAP_NET_ADMIN", "Net_Admin", "cap_net_admin",
                                      "NET_ADMIN"])
def test_cap_number_takes_any_spelling(spelling):
    assert caps.cap_number(spelling) == NET_ADMIN


def test_cap_number_refuses_unknown_names():
    with pytest.raises(ValueError):
        caps.cap_number("net_admins")


def test_cap_number_refuses_empty():
    with pytest.raises(ValueError):
        caps.cap_number("")


def test_cap_number_refuses_the_bare_prefix():
    with pytest.raises(ValueError):
        caps.cap_number("CAP_")


def test_cap_number_refuses_none_which_is_the_runners_word():
    with pytest.raises(ValueError):
        caps.cap_number("none")


def test_cap_number_refuses_non_strings():
    with pytest.raises(TypeError):
        caps.cap_number(12)


def test_cap_name_refuses_unknown_numbers():
    with pytest.raises(ValueError):
        caps.cap_name(max(caps.NAMES) + 1)


@given(st.sampled_from(sorted(caps.NAMES)), st.data())
def test_names_round_trip_in_any_case(number, data):
    name = caps.cap_name(number)
    short = name[len("CAP_"):] if data.draw(st.booleans()) else name
    mixed = "".join(c.upper() if data.draw(st.booleans()) else c.lower() for c in short)
    assert caps.cap_number(mixed) == number


def test_describe():
    assert caps.describe([NET_BIND_SERVICE, NET_ADMIN]) == "CAP_NET_BIND_SERVICE,CAP_NET_ADMIN"
    assert caps.describe([]) == "none"
    assert caps.describe([63]) == "63"


def test_last_cap_is_the_running_kernels():
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert caps.last_cap() == int(f.read())


# --- set maths and status parsing --------------------------------------------------

cap_sets = st.frozensets(st.integers(0, 63))


@given(cap_sets)
@example(frozenset())
@example(frozenset(range(64)))
def test_masks_round_trip(cap_set):
    mask = caps.to_mask(cap_set)
    assert caps.from_mask(mask) == cap_set
    assert mask == sum(1 << c for c in cap_set)


@given(st.sampled_from([-1, 64, 1000]))
def test_to_mask_refuses_numbers_outside_64_bits(number):
    with pytest.raises(ValueError):
        caps.to_mask([number])


def status_text(state):
    fields = [("CapInh", state.inheritable), ("CapPrm", state.permitted),
              ("CapEff", state.effective), ("CapBnd", state.bounding), ("CapAmb", state.ambient)]
    lines = ["Name:\tpython3"] + ["%s:\t%016x" % (key, caps.to_mask(s)) for key, s in fields]
    return "\n".join(lines + ["NoNewPrivs:\t%d" % state.no_new_privs, "Seccomp:\t0", ""])


@given(st.builds(caps.CapState, cap_sets, cap_sets, cap_sets, cap_sets, cap_sets, st.booleans()))
def test_parse_status_round_trips(state):
    assert caps.parse_status(status_text(state)) == state


def test_parse_status_of_a_real_sample():
    state = caps.parse_status(STATUS_SAMPLE)
    assert state == caps.CapState(effective=frozenset({NET_ADMIN}),
                                  permitted=frozenset({NET_ADMIN, NET_BIND_SERVICE}),
                                  inheritable=frozenset({NET_BIND_SERVICE}),
                                  bounding=frozenset(range(41)), ambient=frozenset(),
                                  no_new_privs=True)


def test_parse_status_refuses_a_missing_field():
    with pytest.raises(ValueError, match="ambient"):
        caps.parse_status(STATUS_SAMPLE.replace("CapAmb", "Other"))


def test_parse_status_refuses_a_bad_mask():
    with pytest.raises(ValueError, match="CapEff"):
        caps.parse_status(STATUS_SAMPLE.replace("0000000000001000", "zz"))


def prctl(option, arg=0):
    """prctl(2) through libc, for what ukrun itself never asks the kernel."""
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                        ctypes.c_ulong(0))
    assert result >= 0, ctypes.get_errno()
    return result


def test_current_agrees_with_capget_and_prctl():
    # The drop verifies itself with current(): its status parsing must be what the kernel says.
    state = caps.current()
    assert caps.capget() == (state.effective, state.permitted, state.inheritable)
    assert state.no_new_privs == bool(prctl(hdr.PR_GET_NO_NEW_PRIVS))
    assert state.bounding == {c for c in range(caps.last_cap() + 1)
                              if prctl(hdr.PR_CAPBSET_READ, c)}


# --- drop, in child processes -----------------------------------------------------

CHILD = r"""
import ctypes, os, sys
from ukrun.kernel import caps
from ukrun.kernel.ffi import lib
from ukrun.errors import PrivilegeError

def report(label):
    with open(caps.STATUS) as f:
        print("== %s" % label)
        print(f.read(), flush=True)

report("before")
try:
    BODY
except (PrivilegeError, ValueError) as e:
    report("refused")
    print("== error %s %s: %s" % (type(e).__name__, getattr(e, "exit_status", "-"), e), flush=True)
    sys.exit(3)
report("child")
print("== grandchild", flush=True)
os.execv("/bin/cat", ["cat", "/proc/self/status"])
"""


class ChildRun:
    def __init__(self, proc):
        self.returncode = proc.returncode
        self.sections = {}
        for chunk in ("\n" + proc.stdout).split("\n== ")[1:]:
            label, _, body = chunk.partition("\n")
            self.sections[label] = body
        self.error = next((label[len("error "):] for label in self.sections
                           if label.startswith("error ")), None)

    def state(self, label):
        return caps.parse_status(self.sections[label])


def run_child(body, prefix=()):
    """Run ``body`` (indented into CHILD's try block) in a child Python; grandchild is cat."""
    code = CHILD.replace("    BODY", "\n".join("    " + line for line in body.strip().splitlines()))
    proc = subprocess.run(list(prefix) + [sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode in (0, 3), proc.stderr
    return ChildRun(proc)


def assert_exactly(state, kept, bounding=None):
    assert state.effective == state.permitted == state.inheritable == kept
    assert state.bounding == (kept if bounding is None else bounding)
    assert state.ambient == frozenset()
    assert state.no_new_privs is True


@pytest.mark.parametrize("kept", [frozenset({NET_BIND_SERVICE}), frozenset(),
                                  frozenset({NET_ADMIN, NET_BIND_SERVICE})],
                         ids=["net_bind_service", "empty", "two"])
def test_drop_as_root_leaves_exactly_kept_across_execve(kept):
    run = run_child("caps.drop(%r)" % set(kept) if kept else "caps.drop(())")
    assert run.returncode == 0
    assert_exactly(run.state("child"), kept)
    assert_exactly(run.state("grandchild"), kept)


def test_drop_refuses_a_cap_not_permitted_before_changing_anything():
    # setpriv takes CAP_SYS_ADMIN out of the bounding set, so root's execve does not permit it.
    run = run_child("caps.drop({%d})" % SYS_ADMIN, prefix=["setpriv", "--bounding-set=-sys_admin"])
    assert run.returncode == 3
    assert run.error == ("PrivilegeError 77: dropping capabilities: cannot keep CAP_SYS_ADMIN: "
                         "not in the permitted set (grant it to the container with docker run "
                         "--cap-add, or do not keep it)")
    assert run.state("refused") == run.state("before")


def test_drop_refuses_numbers_the_kernel_does_not_have():
    run = run_child("caps.drop({caps.last_cap() + 1})")
    assert run.returncode == 3
    assert run.error.startswith("ValueError -: no such capability on this kernel")
    assert run.state("refused") == run.state("before")


def test_drop_without_setpcap_relies_on_no_new_privs():
    # Kubernetes' drop: [ALL] + add: [NET_ADMIN, ...]: no CAP_SETPCAP, so the bounding set stays.
    run = run_child("caps.drop({%d})" % NET_BIND_SERVICE, prefix=["setpriv", "--bounding-set=-setpcap"])
    assert run.returncode == 0
    before = run.state("before")
    assert SETPCAP not in before.permitted | before.bounding
    kept = frozenset({NET_BIND_SERVICE})
    assert_exactly(run.state("child"), kept, bounding=before.bounding)
    # root's execve would grant the whole bounding set; no_new_privs cuts it back to kept.
    assert_exactly(run.state("grandchild"), kept, bounding=before.bounding)


def test_keeping_its_own_needs_setpcap_and_is_refused_before_any_change():
    run = run_child("caps.drop({%d}, keep_own=True)" % NET_BIND_SERVICE,
                    prefix=["setpriv", "--bounding-set=-setpcap"])
    assert run.returncode == 3
    assert run.error.startswith("PrivilegeError 77: dropping capabilities: CAP_SETPCAP is needed")
    assert run.state("refused") == run.state("before")


def test_keeping_its_own_with_some_bounding_set_already_gone():
    # Only what the bounding set still holds is dropped from it: one path for every exec mode.
    run = run_child("caps.drop({%d}, keep_own=True)" % NET_BIND_SERVICE,
                    prefix=["setpriv", "--bounding-set=-sys_admin"])
    assert run.returncode == 0, run.sections
    child, before = run.state("child"), run.state("before")
    assert (child.effective, child.permitted) == (before.effective, before.permitted)
    assert child.bounding == child.inheritable == KEPT
    assert_kept_without_ambient(run.state("grandchild"), KEPT)


def test_failed_capset_aborts_with_net_admin_still_held():
    body = """
def refuse(*args):
    raise OSError(1, "Operation not permitted", "capset")
caps.capset = refuse
caps.drop({%d})
""" % NET_BIND_SERVICE
    run = run_child(body)
    assert run.returncode == 3
    assert run.error == ("PrivilegeError 77: dropping capabilities: capset: Operation not permitted"
                         " (nothing was started; a seccomp or LSM profile may forbid the change)")
    assert NET_ADMIN in run.state("refused").effective


def test_drop_fails_closed_when_the_result_is_not_as_intended():
    # An ambient capability left behind (here: clearing it is skipped) must be caught by the check.
    body = """
caps.raise_ambient({%d})
caps.clear_ambient = lambda: None
caps.drop({%d})
""" % (NET_BIND_SERVICE, NET_BIND_SERVICE)
    run = run_child(body)
    assert run.returncode == 3
    assert run.error.startswith("PrivilegeError 77: dropping capabilities: ambient not as intended")


def test_non_root_keeps_capabilities_as_ambient_across_execve():
    # keepcaps (set through libc: ukrun never changes users) carries the permitted set across
    # setresuid; the effective set must be raised again; ambient capabilities then survive a
    # non-root execve.
    body = """
assert ctypes.CDLL(None).prctl(%d, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0),
                               ctypes.c_ulong(0)) == 0
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
effective, permitted, inheritable = caps.capget()
assert not effective and %d in permitted
caps.capset(permitted, permitted, inheritable)
caps.drop({%d}, ambient=True)
""" % (hdr.PR_SET_KEEPCAPS, NET_BIND_SERVICE, NET_BIND_SERVICE)
    run = run_child(body)
    assert run.returncode == 0
    kept = frozenset({NET_BIND_SERVICE})
    for label in ("child", "grandchild"):
        state = run.state(label)
        assert state.effective == state.permitted == state.inheritable == state.ambient == kept
        assert state.bounding == kept and state.no_new_privs
    assert "Uid:\t65534\t65534\t65534\t65534" in run.sections["grandchild"]


def test_raise_ambient_then_drop_clears_it():
    body = """
caps.raise_ambient({%d})
assert caps.current().ambient == {%d}
caps.drop(())
""" % ((NET_BIND_SERVICE,) * 2)
    run = run_child(body)
    assert run.returncode == 0
    assert_exactly(run.state("child"), frozenset())
    assert_exactly(run.state("grandchild"), frozenset())


# --- securebits and the ambient set ----------------------------------------------------

NOROOT, NO_AMBIENT_RAISE = lib.SECBIT_NOROOT, lib.SECBIT_NO_CAP_AMBIENT_RAISE
KEPT = frozenset({NET_BIND_SERVICE})

# prctl(PR_SET_SECUREBITS, argv[1]) through libc (the whole mask), then exec the rest: setpriv
# (util-linux 2.38) knows no no_cap_ambient_raise.
WITH_SECUREBITS = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(%d, ctypes.c_ulong(int(sys.argv[1])), ctypes.c_ulong(0), ctypes.c_ulong(0),
              ctypes.c_ulong(0)) != 0:
    sys.exit("PR_SET_SECUREBITS: " + os.strerror(ctypes.get_errno()))
os.execv(sys.argv[2], sys.argv[2:])
""" % hdr.PR_SET_SECUREBITS

# Root under SECBIT_NOROOT: its capabilities come as ambient ones (setpcap too, so that the
# securebits wrapper may still change them).
AMBIENT_CAPS = "+net_admin,+net_bind_service,+setpcap"
AS_NOROOT = ["setpriv", "--securebits", "+noroot", "--inh-caps", AMBIENT_CAPS,
             "--ambient-caps", AMBIENT_CAPS]
# A non-root user holding capabilities (docker run --user 1000 --cap-add ...), made in the child
# itself: keepcaps carries the permitted set across setresuid (the venv's Python may sit where
# uid 1000 cannot exec it).
BECOME_1000 = """
assert ctypes.CDLL(None).prctl(%d, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0),
                               ctypes.c_ulong(0)) == 0
os.setgroups([])
os.setresgid(1000, 1000, 1000)
os.setresuid(1000, 1000, 1000)
effective, permitted, inheritable = caps.capget()
caps.capset(permitted, permitted, inheritable)
""" % hdr.PR_SET_KEEPCAPS
NEEDS_AMBIENT = {"noroot": (AS_NOROOT, "", NOROOT), "uid-1000": ((), BECOME_1000, 0)}


def with_securebits(bits, prefix=()):
    return list(prefix) + [sys.executable, "-c", WITH_SECUREBITS, str(bits)]


@pytest.mark.parametrize("bits", [0, NOROOT, NO_AMBIENT_RAISE, NOROOT | NO_AMBIENT_RAISE])
def test_securebits_are_what_the_thread_was_given(bits):
    run = run_child("print('== bits %d' % caps.securebits(), flush=True)",
                    prefix=with_securebits(bits))
    assert run.returncode == 0
    assert "bits %d" % bits in run.sections


@pytest.mark.parametrize("euid, bits, needed", [
    (0, 0, False),                   # root's rules: bounding | inheritable, made effective
    (0, NO_AMBIENT_RAISE, False),
    (0, NOROOT, True),               # root is not special: only ambient survives
    (1000, 0, True),
    (1000, NO_AMBIENT_RAISE, True),
    (0, ~NOROOT & 0xFF, False),      # every other bit, locks included
])
def test_ambient_needed(euid, bits, needed):
    assert caps.ambient_needed(euid, bits) is needed


@pytest.mark.parametrize("euid, bits, wanted", [
    (0, 0, True),                    # allowed: the program holds kept in every set, as before
    (1000, 0, True),
    (0, NO_AMBIENT_RAISE, False),    # forbidden and not needed: root goes without
    (1000, NO_AMBIENT_RAISE, True),  # forbidden and needed: ambient_problem refuses the run
    (0, NOROOT | NO_AMBIENT_RAISE, True),
])
def test_ambient_wanted(euid, bits, wanted):
    assert caps.ambient_wanted(euid, bits) is wanted


@pytest.mark.parametrize("kept, euid, bits, problem", [
    (KEPT, 0, NO_AMBIENT_RAISE, None),
    (KEPT, 1000, 0, None),
    (KEPT, 0, NOROOT, None),
    (frozenset(), 1000, NO_AMBIENT_RAISE, None),  # nothing kept, nothing to raise
    (KEPT, 1000, NO_AMBIENT_RAISE, "a program run as uid 1000 keeps CAP_NET_BIND_SERVICE only "
                                   "as ambient capabilities, and SECBIT_NO_CAP_AMBIENT_RAISE "
                                   "forbids raising them"),
    (KEPT | {NET_ADMIN}, 0, NOROOT | NO_AMBIENT_RAISE,
     "a program run as root under SECBIT_NOROOT keeps CAP_NET_BIND_SERVICE,CAP_NET_ADMIN only "
     "as ambient capabilities, and SECBIT_NO_CAP_AMBIENT_RAISE forbids raising them"),
])
def test_ambient_problem(kept, euid, bits, problem):
    assert caps.ambient_problem(kept, euid, bits) == problem


@given(st.frozensets(st.integers(0, 40)), st.sampled_from([0, 1, 1000, 65534]),
       st.integers(0, 0xFF))
def test_ambient_problem_exactly_when_wanted_but_forbidden(kept, euid, bits):
    # The preflight's refusal and the drop's choice never disagree: a run either has a
    # problem, or a drop whose ambient set (if any) the kernel allows.
    problem = caps.ambient_problem(kept, euid, bits)
    forbidden = caps.ambient_wanted(euid, bits) and not caps.ambient_allowed(bits)
    assert (problem is not None) == (bool(kept) and forbidden)


def test_the_drop_reads_this_threads_euid_and_securebits():
    assert caps.ambient_needed() is caps.ambient_needed(os.geteuid(), caps.securebits())
    assert caps.ambient_problem(KEPT) == caps.ambient_problem(KEPT, os.geteuid(),
                                                              caps.securebits())


def assert_kept_without_ambient(state, kept):
    assert state.effective == state.permitted == state.inheritable == kept
    assert state.ambient == frozenset() and state.no_new_privs


# Finding 10 of test_attacks: root under SECBIT_NO_CAP_AMBIENT_RAISE.
@pytest.mark.parametrize("keep_own", [False, True])
def test_root_without_ambient_raise_keeps_exactly_kept(keep_own):
    body = ("assert not caps.ambient_wanted()\n"
            "caps.drop({%d}, ambient=caps.ambient_wanted(), keep_own=%s)" % (NET_BIND_SERVICE, keep_own))
    run = run_child(body, prefix=with_securebits(NO_AMBIENT_RAISE))
    assert run.returncode == 0, run.sections
    if not keep_own:
        assert_exactly(run.state("child"), KEPT)
    else:  # ukrun itself still holds what it had, to give the network back
        child, before = run.state("child"), run.state("before")
        assert (child.effective, child.permitted) == (before.effective, before.permitted)
        assert (child.inheritable, child.bounding, child.ambient) == (KEPT, KEPT, frozenset())
    grandchild = run.state("grandchild")
    assert_kept_without_ambient(grandchild, KEPT)
    assert grandchild.bounding == KEPT


@pytest.mark.parametrize("drop", ["drop({%d}, ambient=True)", "drop({%d}, ambient=True, keep_own=True)"],
                         ids=["dropped", "keep_own"])
def test_an_ambient_set_the_kernel_forbids_is_refused_before_any_change(drop):
    run = run_child("caps." + drop % NET_BIND_SERVICE, prefix=with_securebits(NO_AMBIENT_RAISE))
    assert run.returncode == 3
    assert run.error == ("PrivilegeError 77: dropping capabilities: cannot raise "
                         "CAP_NET_BIND_SERVICE as ambient capabilities: SECBIT_NO_CAP_AMBIENT_RAISE"
                         " forbids it (%s)" % caps.AMBIENT_HINT)
    assert run.state("refused") == run.state("before")


@pytest.mark.parametrize("who", sorted(NEEDS_AMBIENT))
def test_who_needs_ambient_is_refused_in_preflight_and_drop(who):
    prefix, preamble, bits = NEEDS_AMBIENT[who]
    body = preamble + """
problem = caps.ambient_problem({%d})
print("== problem %%s" %% problem, flush=True)
assert caps.ambient_needed() and caps.ambient_wanted()
report("ready")
caps.drop({%d}, ambient=caps.ambient_wanted())
""" % (NET_BIND_SERVICE, NET_BIND_SERVICE)
    run = run_child(body, prefix=with_securebits(bits | NO_AMBIENT_RAISE, prefix))
    assert run.returncode == 3
    problem = next(label for label in run.sections if label.startswith("problem "))
    assert problem.endswith("CAP_NET_BIND_SERVICE only as ambient capabilities, and "
                            "SECBIT_NO_CAP_AMBIENT_RAISE forbids raising them")
    assert "SECBIT_NO_CAP_AMBIENT_RAISE forbids it" in run.error
    assert run.state("refused") == run.state("ready")
    assert NET_BIND_SERVICE in run.state("ready").permitted


@pytest.mark.parametrize("who", sorted(NEEDS_AMBIENT))
@pytest.mark.parametrize("keep_own", [False, True])
def test_who_needs_ambient_gets_kept_as_ambient(who, keep_own):
    prefix, preamble, _ = NEEDS_AMBIENT[who]
    body = preamble + """
assert caps.ambient_needed() and caps.ambient_problem({%d}) is None
caps.drop({%d}, ambient=caps.ambient_wanted(), keep_own=%s)
""" % (NET_BIND_SERVICE, NET_BIND_SERVICE, keep_own)
    run = run_child(body, prefix=prefix)
    assert run.returncode == 0, run.sections
    grandchild = run.state("grandchild")
    assert grandchild.effective == grandchild.permitted == grandchild.ambient == KEPT
    assert grandchild.inheritable == grandchild.bounding == KEPT and grandchild.no_new_privs
    uid = "1000" if who == "uid-1000" else "0"
    assert "Uid:\t%s\t%s\t%s\t%s" % ((uid,) * 4) in run.sections["grandchild"]


def test_keeping_its_own_without_ambient_as_root():
    run = run_child("caps.drop({%d}, keep_own=True)" % NET_BIND_SERVICE)
    assert run.returncode == 0
    assert run.state("child").ambient == frozenset()
    assert_kept_without_ambient(run.state("grandchild"), KEPT)


def test_keeping_its_own_with_ambient_hands_kept_in_every_set():
    run = run_child("caps.drop({%d}, ambient=True, keep_own=True)" % NET_BIND_SERVICE)
    assert run.returncode == 0
    for label in ("child", "grandchild"):
        assert run.state(label).ambient == KEPT
    grandchild = run.state("grandchild")
    assert grandchild.effective == grandchild.permitted == grandchild.inheritable == KEPT
