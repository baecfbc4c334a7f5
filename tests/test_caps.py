"""ukrun.caps: the name table and set maths (pure), and drop_to in child processes only.

Every test that changes privileges runs in a child Python; the child prints its own
/proc/thread-self/status before and after the drop, then execs `cat /proc/self/status`
so the grandchild reports what the execve handed on.
"""
import ctypes
import re
import subprocess
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sysheaders import lib as hdr
from ukrun import caps
from ukrun._ffi import lib

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


# --- drop_to, in child processes -----------------------------------------------------

CHILD = r"""
import ctypes, os, sys
from ukrun import caps
from ukrun._ffi import lib
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
def test_drop_to_as_root_leaves_exactly_kept_across_execve(kept):
    run = run_child("caps.drop_to(%r)" % set(kept) if kept else "caps.drop_to(())")
    assert run.returncode == 0
    assert_exactly(run.state("child"), kept)
    assert_exactly(run.state("grandchild"), kept)


def test_drop_to_refuses_a_cap_not_permitted_before_changing_anything():
    # setpriv takes CAP_SYS_ADMIN out of the bounding set, so root's execve does not permit it.
    run = run_child("caps.drop_to({%d})" % SYS_ADMIN, prefix=["setpriv", "--bounding-set=-sys_admin"])
    assert run.returncode == 3
    assert run.error == ("PrivilegeError 77: dropping capabilities: cannot keep CAP_SYS_ADMIN: "
                         "not in the permitted set (grant it to the container with docker run "
                         "--cap-add, or do not keep it)")
    assert run.state("refused") == run.state("before")


def test_drop_to_refuses_numbers_the_kernel_does_not_have():
    run = run_child("caps.drop_to({caps.last_cap() + 1})")
    assert run.returncode == 3
    assert run.error.startswith("ValueError -: no such capability on this kernel")
    assert run.state("refused") == run.state("before")


def test_drop_to_without_setpcap_relies_on_no_new_privs():
    # Kubernetes' drop: [ALL] + add: [NET_ADMIN, ...]: no CAP_SETPCAP, so the bounding set stays.
    run = run_child("caps.drop_to({%d})" % NET_BIND_SERVICE, prefix=["setpriv", "--bounding-set=-setpcap"])
    assert run.returncode == 0
    before = run.state("before")
    assert SETPCAP not in before.permitted | before.bounding
    kept = frozenset({NET_BIND_SERVICE})
    assert_exactly(run.state("child"), kept, bounding=before.bounding)
    # root's execve would grant the whole bounding set; no_new_privs cuts it back to kept.
    assert_exactly(run.state("grandchild"), kept, bounding=before.bounding)


def test_failed_capset_aborts_with_net_admin_still_held():
    body = """
def refuse(*args):
    raise OSError(1, "Operation not permitted", "capset")
caps.capset = refuse
caps.drop_to({%d})
""" % NET_BIND_SERVICE
    run = run_child(body)
    assert run.returncode == 3
    assert run.error == ("PrivilegeError 77: dropping capabilities: capset: Operation not permitted"
                         " (nothing was started; a seccomp or LSM profile may forbid the change)")
    assert NET_ADMIN in run.state("refused").effective


def test_drop_to_fails_closed_when_the_result_is_not_as_intended():
    # An ambient capability left behind (here: clearing it is skipped) must be caught by the check.
    body = """
caps.raise_ambient({%d})
caps.clear_ambient = lambda: None
caps.drop_to({%d})
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
caps.drop_to({%d}, ambient=True)
""" % (hdr.PR_SET_KEEPCAPS, NET_BIND_SERVICE, NET_BIND_SERVICE)
    run = run_child(body)
    assert run.returncode == 0
    kept = frozenset({NET_BIND_SERVICE})
    for label in ("child", "grandchild"):
        state = run.state(label)
        assert state.effective == state.permitted == state.inheritable == state.ambient == kept
        assert state.bounding == kept and state.no_new_privs
    assert "Uid:\t65534\t65534\t65534\t65534" in run.sections["grandchild"]


def test_raise_ambient_then_drop_to_clears_it():
    body = """
caps.raise_ambient({%d})
assert caps.current().ambient == {%d}
caps.drop_to(())
""" % ((NET_BIND_SERVICE,) * 2)
    run = run_child(body)
    assert run.returncode == 0
    assert_exactly(run.state("child"), frozenset())
    assert_exactly(run.state("grandchild"), frozenset())
