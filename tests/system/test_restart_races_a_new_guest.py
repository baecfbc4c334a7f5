"""A run that starts while an earlier run's guest has just been exec'd, in docker-like
containers (real namespaces, the installed command): a guest given its tap as an fd is found
at once and nothing changes; one that opens its tap by name is waited for (bounded, said in
-v); and a record forged to claim the fd form buys a neighbour nothing: a run whose guest
opens the tap by name still waits, and one that hands it over as an fd takes the tap before
changing anything, so the late guest finds it busy instead of a wiring rebuilt under it.
"""
import os
import sys
import textwrap
import time

import pytest

from clirun import ukrun
from snapshots import snapshot
from ukrun.network.survey import TAKEOVER_WAIT

# A guest that holds whatever it inherited (qemu's fd 3) and stays until killed.
HOLDER = "#!/bin/sh\nexec sleep 60\n"

# A MirageOS-unix-like guest that opens its tap by name LATE seconds after its start, as a
# real one does some milliseconds after the run's execve; it says how the attach went.
LATE_OPENER = textwrap.dedent("""\
    #!{python}
    import errno, sys, time
    from ukrun.kernel.tap import open_tap
    time.sleep({late})
    tap = sys.argv[1].partition("=")[2]
    try:
        held = open_tap(tap)
    except OSError as e:
        print("attach failed:", errno.errorcode.get(e.errno), flush=True)
        sys.exit(1)
    print("attached", flush=True)
    time.sleep(60)
""")

LIVE = "is already handed to a running guest (tap0 has a reader"
WAITED = "(tap0 has a reader: a guest opened it while this run waited up to 1 s for one)"


def _program(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def _start(container, ukrun_exe, *argv):
    """An earlier run, left running: returns once its guest has been exec'd (the process,
    the same pid since `ip netns exec`, now runs the guest's program)."""
    proc = container.popen(ukrun_exe, *argv, env=dict(os.environ))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/cmdline" % proc.pid, "rb") as f:
                words = f.read().split(b"\0")
        except OSError:
            break
        # sh running the holder (or the sleep it became), or python running the opener.
        if words[0] == b"sleep" or (len(words) > 1 and words[1].endswith((b"holder",
                                                                           b"opener"))):
            return proc
        time.sleep(0.001)
    proc.kill()
    out, err = proc.communicate()
    pytest.fail("the first run did not exec its guest: %s" % err.decode())


def _stop(proc):
    proc.kill()
    return proc.communicate()


def _timed(container, ukrun_exe, *argv):
    start = time.monotonic()
    proc = ukrun(container, ukrun_exe, *argv)
    return proc, time.monotonic() - start


def _forge_fd_form(container):
    """What a neighbour holding CAP_NET_ADMIN can do: rewrite tap0's record (a by-name one,
    version 1) to claim that the tap went to its guest as an fd (version 3, t=fd)."""
    alias = container.ip_json("-d", "link", "show", "tap0")[0]["ifalias"]
    assert alias.startswith("ukrun:1 ") and " t=" not in alias
    forged = alias.replace("ukrun:1 ", "ukrun:3 ").replace(" o=0 ", " o=0 6= h= t=fd ")
    container.ip("link", "set", "tap0", "alias", forged)
    return forged


def test_a_run_racing_a_guest_just_execd_with_its_tap_as_an_fd_refuses_at_once(
        container, ukrun_exe, tmp_path, kernel_file):
    holder = _program(tmp_path, "holder", HOLDER)
    first = _start(container, ukrun_exe, "qemu", "--qemu", holder, kernel_file)
    try:
        before = snapshot(container)
        second, took = _timed(container, ukrun_exe, "qemu", "-v", "--qemu", holder,
                              kernel_file)
        assert second.returncode == 1 and LIVE in second.stderr, second.stderr
        assert second.stderr.strip().splitlines()[-1].startswith("ukrun: error: eth0 is")
        # No wait: the tap had its reader before the first run let go of the lock.
        assert took < TAKEOVER_WAIT / 2, took
        assert "waits up to" not in second.stderr and WAITED not in second.stderr
        assert snapshot(container) == before
        record = container.ip_json("-d", "link", "show", "tap0")[0]["ifalias"]
        assert record.startswith("ukrun:3 ") and " t=fd " in record
    finally:
        _stop(first)


def test_a_restart_after_a_guest_that_had_its_tap_as_an_fd_takes_over_at_once(
        container, ukrun_exe, tmp_path, standin, kernel_file):
    holder = _program(tmp_path, "holder", HOLDER)
    _stop(_start(container, ukrun_exe, "qemu", "--qemu", holder, kernel_file))
    again, took = _timed(container, ukrun_exe, "qemu", "-v", "--qemu", standin, kernel_file)
    assert again.returncode == 0, again.stderr
    assert "no guest has it open: this run takes it over" in again.stderr
    assert "waits up to" not in again.stderr and took < TAKEOVER_WAIT / 2, took


def test_a_guest_that_opens_its_tap_by_name_is_waited_for(container, ukrun_exe, tmp_path):
    opener = _program(tmp_path, "opener", LATE_OPENER.format(python=sys.executable, late=0.3))
    first = _start(container, ukrun_exe, "unix", "-v", opener)
    try:
        before = snapshot(container)
        second, took = _timed(container, ukrun_exe, "unix", "-v", opener)
        assert second.returncode == 1 and LIVE in second.stderr, second.stderr
        # It waited (bounded) for the guest to open the tap, and says so.
        assert WAITED in second.stderr
        assert 0.1 < took < TAKEOVER_WAIT + 0.5, took
        assert snapshot(container) == before
    finally:
        out, err = _stop(first)
    assert b"attached" in out, err
    assert b"tap0 goes to the guest by name: a later run that finds it without a reader " \
           b"waits up to 1 s" in err


def test_a_forged_fd_form_does_not_spare_a_by_name_run_its_wait(container, ukrun_exe,
                                                                 tmp_path):
    opener = _program(tmp_path, "opener", LATE_OPENER.format(python=sys.executable, late=0.4))
    first = _start(container, ukrun_exe, "unix", opener)
    try:
        _forge_fd_form(container)
        before = snapshot(container)
        second, took = _timed(container, ukrun_exe, "unix", "-v", opener)
        # The record's t=fd is not believed: the run waits, finds the guest, changes nothing.
        assert second.returncode == 1 and LIVE in second.stderr, second.stderr
        assert WAITED in second.stderr and took > 0.2, took
        assert snapshot(container) == before
    finally:
        out, err = _stop(first)
    assert b"attached" in out, err


def test_a_forged_fd_form_lets_an_fd_run_win_only_before_the_late_guest_attaches(
        container, ukrun_exe, tmp_path, kernel_file):
    # The fd run opens the tap as its first step: the by-name guest, still asleep, then finds
    # it busy and gives up; no wiring is rebuilt under a guest that holds the tap.
    opener = _program(tmp_path, "opener", LATE_OPENER.format(python=sys.executable, late=0.5))
    holder = _program(tmp_path, "holder", HOLDER)
    first = _start(container, ukrun_exe, "unix", opener)
    try:
        _forge_fd_form(container)
        second = _start(container, ukrun_exe, "qemu", "--qemu", holder, kernel_file)
        try:
            out, err = first.communicate(timeout=10)
            assert first.returncode == 1 and b"attach failed: EBUSY" in out, (out, err)
            # The fd run's guest holds the tap, and its record says so.
            record = container.ip_json("-d", "link", "show", "tap0")[0]
            assert "LOWER_UP" in record["flags"] and " t=fd " in record["ifalias"]
        finally:
            _stop(second)
    finally:
        if first.returncode is None:
            _stop(first)


def test_a_guest_that_attached_first_makes_an_fd_run_change_nothing(container, ukrun_exe,
                                                                     tmp_path, kernel_file):
    opener = _program(tmp_path, "opener", LATE_OPENER.format(python=sys.executable, late=0))
    holder = _program(tmp_path, "holder", HOLDER)
    first = _start(container, ukrun_exe, "unix", opener)
    try:
        deadline = time.monotonic() + 5
        while "LOWER_UP" not in container.ip_json("link", "show", "tap0")[0]["flags"]:
            assert time.monotonic() < deadline, "the guest never opened tap0"
            time.sleep(0.01)
        _forge_fd_form(container)
        before = snapshot(container)
        second, took = _timed(container, ukrun_exe, "qemu", "--qemu", holder, kernel_file)
        assert second.returncode == 1 and LIVE in second.stderr, second.stderr
        assert took < TAKEOVER_WAIT / 2, took
        assert snapshot(container) == before
    finally:
        _stop(first)


def test_a_restart_of_a_by_name_guest_waits_its_bound_and_says_so(container, ukrun_exe,
                                                                   standin):
    # The unix target's guest opens its tap by name: the one case left with a wait. Its
    # earlier guest is gone, so the wait runs out and the run takes the tap over.
    assert ukrun(container, ukrun_exe, "unix", standin).returncode == 0
    again, took = _timed(container, ukrun_exe, "unix", "-v", standin)
    assert again.returncode == 0, again.stderr
    assert "tap0: this run's guest opens it by name, so it waits up to 1 s" in again.stderr
    assert took >= TAKEOVER_WAIT, took
