"""The exec step, run for real through the CLI in docker-like containers:
a program that cannot be exec'd leaves the namespace exactly as it was, in every exec mode;
the program gets exactly the kept capabilities and a default signal state; as PID 1 ukrun
stays as a small init that forwards `docker stop`'s signal; runs in one namespace are
serialized. Every process is bounded in time and killed with its namespace.
"""
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from clirun import raw_ukrun
from files import write
from guests import install_uguest, udp_echo
from snapshots import redirects, snapshot

NET_BIND_SERVICE = 1 << 10
CAP_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
MODES = ("never", "always")  # --init: direct exec, or forked under ukrun's init

# The real CLI in a child Python, with the preflight's program checks taken out, so that the
# faults below reach execve itself: the last line of defence must hold on its own.
def status_of(text):
    """The 'Key:\\tvalue' lines of /proc/PID/status as a dict."""
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


@pytest.fixture
def status_program(shared_dir):
    """Prints its own /proc/self/status (cat's, exec'd by sh: no Python ignoring signals)."""
    return write(shared_dir, "status", "#!/bin/sh\nexec cat /proc/self/status\n")


def foreign_elf(directory):
    """/bin/true with e_machine set to another architecture's."""
    with open("/bin/true", "rb") as f:
        data = bytearray(f.read())
    data[18:20] = (183 if os.uname().machine != "aarch64" else 62).to_bytes(2, "little")
    return write(directory, "foreign", bytes(data))


# name -> (make the program in a directory, the exit status execve's error gives)
BROKEN = {
    "text file with x bit": (lambda d: write(d, "text", "just words\n"), 126),
    "empty file": (lambda d: write(d, "empty", b""), 126),
    "truncated ELF": (lambda d: write(d, "truncated", b"\x7fELF\x02\x01\x01"), 126),
    "ELF for another architecture": (foreign_elf, 126),
    "missing #! interpreter": (lambda d: write(d, "noshell", "#!/no/such/shell\n"), 127),
    "CRLF shebang": (lambda d: write(d, "crlf", "#!/bin/sh\r\necho hi\r\n"), 127),
    "directory": (lambda d: os.path.join(d, "subdir") if os.mkdir(os.path.join(d, "subdir"))
                  is None else None, 126),
}


def assert_one_line_error(proc, status):
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ukrun: error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("init", MODES)
@pytest.mark.parametrize("wiring", ["tc", "bridge"])
@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_program_execve_refuses_gives_the_network_back(broken, wiring, init, container,
                                                         shared_dir):
    make, status = BROKEN[broken]
    program = make(shared_dir)
    before = snapshot(container)
    proc = raw_ukrun(container, "unix", "--wiring", wiring, "--init", init, program)
    line = assert_one_line_error(proc, status)
    assert "eth0 was given back" in line, line
    assert snapshot(container) == before


@pytest.mark.parametrize("init", MODES)
def test_a_tender_execve_refuses_gives_the_network_back(init, container, shared_dir):
    tender = write(shared_dir, "tender", "#!/no/such/shell\n")
    kernel = write(shared_dir, "kernel.hvt", b"\x7fELF", mode=0o644)
    before = snapshot(container)
    proc = raw_ukrun(container, "spt", "--init", init, "--tender", tender, kernel)
    assert_one_line_error(proc, 127)
    assert snapshot(container) == before


@pytest.mark.parametrize("init", MODES)
def test_arguments_past_the_kernels_limit_give_the_network_back(init, container,
                                                               status_program):
    before = snapshot(container)
    proc = raw_ukrun(container, "unix", "--init", init, status_program, "BIG:%d" % (256 * 1024))
    line = assert_one_line_error(proc, 1)
    assert "Argument list too long" in line
    assert snapshot(container) == before


def test_a_program_only_root_could_read_fails_before_the_guest_runs(container, shared_dir):
    # 0700 and owned by someone else: root reads it only through CAP_DAC_OVERRIDE, which the
    # program does not keep. Forked, the child drops first, so its execve says EACCES.
    program = write(shared_dir, "private", "#!/bin/sh\nexit 0\n", mode=0o700)
    os.chown(program, 12345, 12345)
    before = snapshot(container)
    proc = raw_ukrun(container, "unix", "--init", "always", program)
    assert_one_line_error(proc, 126)
    assert snapshot(container) == before


# --- what the program inherits ---------------------------------------------------------------

def hostile_parent():
    """What a careless parent leaves: SIGTERM blocked, SIGHUP ignored (and Python's own)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR1})
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


@pytest.mark.parametrize("init", MODES)
def test_the_program_gets_default_signals_and_exactly_the_kept_caps(init, container,
                                                                   ukrun_exe, status_program):
    direct = container.exec("/bin/sh", "-c", "exec cat /proc/self/status")
    baseline = status_of(direct.stdout)
    # Every signal a program can set is at its default, none blocked. (Signals 32 and 33 are
    # glibc's own, which no glibc program, ukrun included, can change: what the caller left
    # there passes through, as it does to a program started directly; GNU make ignores them.)
    settable = sum(1 << (n - 1) for n in signal.valid_signals())
    assert int(baseline["SigIgn"], 16) & settable == 0 and int(baseline["SigBlk"], 16) == 0
    proc = subprocess.run(["ip", "netns", "exec", container.name, ukrun_exe, "unix", "--init",
                           init, status_program], capture_output=True, text=True, timeout=30,
                          preexec_fn=hostile_parent)
    assert proc.returncode == 0, proc.stderr
    got = status_of(proc.stdout)
    for key in ("SigIgn", "SigBlk", "SigCgt"):
        assert int(got[key], 16) == int(baseline[key], 16), (key, got[key])
    assert int(got["SigIgn"], 16) & settable == 0
    for key in CAP_SETS:
        assert int(got[key], 16) == NET_BIND_SERVICE, (key, got)
    assert got["NoNewPrivs"] == "1"
    if init == "never":  # the program replaced ukrun: same process
        assert int(got["Pid"]) == proc_pid_of(got, direct=True)
    else:  # a child of ukrun's init
        assert int(got["PPid"]) != 0


def proc_pid_of(status, direct):
    # ip netns exec execs ukrun, which execs sh, which execs cat: one pid all along; cat's
    # PPid is then this test's process.
    assert int(status["PPid"]) == os.getpid()
    return int(status["Pid"])


def test_without_setpcap_the_program_still_gets_exactly_the_kept_caps(container, ukrun_exe,
                                                                      status_program):
    # Kubernetes drop: [ALL] + NET_ADMIN: no CAP_SETPCAP, so ukrun forks under its init.
    proc = container.exec("setpriv", "--bounding-set=-setpcap", ukrun_exe, "unix", "-v",
                          status_program, check=False)
    assert proc.returncode == 0, proc.stderr
    got = status_of(proc.stdout)
    for key in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(got[key], 16) == NET_BIND_SERVICE, (key, got)
    assert "under" in proc.stderr and "ukrun-init" in proc.stderr


def test_a_non_root_user_keeps_the_kept_caps(container, ukrun_exe, status_program):
    # docker run --user 1000 --cap-add NET_ADMIN --cap-add NET_BIND_SERVICE: the caps are
    # ambient, with Docker's defaults (DAC_OVERRIDE opens the host's 0600 /dev/net/tun).
    caps = "+net_admin,+net_bind_service,+dac_override"
    proc = container.exec("setpriv", "--reuid=1000", "--regid=1000", "--clear-groups",
                          "--inh-caps=" + caps, "--ambient-caps=" + caps, ukrun_exe, "unix",
                          status_program, check=False)
    assert proc.returncode == 0, proc.stderr
    got = status_of(proc.stdout)
    assert got["Uid"].split()[0] == "1000"
    for key in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(got[key], 16) == NET_BIND_SERVICE, (key, got)


# --- PID 1 ----------------------------------------------------------------------------------

def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read()


class Pid1Run:
    """ukrun as PID 1 of a new PID namespace (as in a container), inside ``container``."""

    def __init__(self, container, ukrun_exe, *argv):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", container.name, "unshare", "--pid", "--fork",
             "--mount-proc", "--kill-child", ukrun_exe, *argv],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def pid1(self, timeout=10):
        """The outer pid of the namespace's PID 1 (unshare's only child)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                    children = f.read().split()
            except FileNotFoundError:
                children = []
            if children:
                return int(children[0])
            time.sleep(0.01)
        raise AssertionError("no PID 1 appeared")

    def wait_line(self, text, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if text in line:
                return
            if not line and self.proc.poll() is not None:
                break
        self.proc.kill()
        raise AssertionError("no %r; stderr: %s" % (text, self.proc.stderr.read()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


@pytest.fixture
def pid1_runs():
    runs = []
    yield lambda *a: runs.append(Pid1Run(*a)) or runs[-1]
    for run in runs:
        run.stop()


NO_HANDLER = "#!/bin/sh\necho ready\nexec sleep 60\n"
HANDLER = "#!/bin/sh\ntrap 'exit 7' TERM\necho ready\nwhile :; do sleep 0.05; done\n"


@pytest.mark.parametrize("script, status", [(NO_HANDLER, 128 + signal.SIGTERM), (HANDLER, 7)],
                         ids=["no-handler", "handler"])
def test_as_pid1_sigterm_ends_the_program_within_a_second(script, status, container, ukrun_exe,
                                                          shared_dir, pid1_runs):
    program = write(shared_dir, "program", script)
    run = pid1_runs(container, ukrun_exe, "unix", program)
    run.wait_line("ready")
    pid1 = run.pid1()
    # ukrun stays as its small init, not as Python (it waits a moment for the guest to
    # open its tap first: this program never does).
    deadline = time.monotonic() + 5
    while b"ukrun-init" not in cmdline(pid1):
        assert time.monotonic() < deadline, cmdline(pid1)
        time.sleep(0.02)
    with open("/proc/%d/status" % pid1) as f:
        init = status_of(f.read())
    assert all(int(init[key], 16) == 0 for key in CAP_SETS[:3]), init
    assert int(init["VmRSS"].split()[0]) < 2048, init["VmRSS"]
    started = time.monotonic()
    os.kill(pid1, signal.SIGTERM)
    assert run.proc.wait(5) == status, run.proc.stderr.read()
    assert time.monotonic() - started < 1.0


def test_as_pid1_with_init_never_the_program_is_pid1(container, ukrun_exe, status_program,
                                                     pid1_runs):
    run = pid1_runs(container, ukrun_exe, "unix", "--init", "never", status_program)
    out, err = run.proc.communicate(timeout=30)
    assert run.proc.returncode == 0, err
    assert status_of(out)["Pid"].split()[0] == "1"


# --- two runs at once -------------------------------------------------------------------------

@pytest.mark.parametrize("init", MODES)
def test_concurrent_runs_in_one_namespace_leave_one_guest(init, container, ukrun_exe,
                                                          shared_dir):
    uguest = install_uguest(shared_dir)
    for _ in range(3):
        procs = [container.popen(ukrun_exe, "unix", "--init", init, uguest, stdout=None)
                 for _ in range(4)]
        try:
            deadline = time.monotonic() + 15
            while (time.monotonic() < deadline
                   and sum(p.poll() is None for p in procs) > 1):
                time.sleep(0.05)
            time.sleep(0.3)
            alive = [p for p in procs if p.poll() is None]
            losers = [p.stderr.read().decode() for p in procs if p.poll() is not None]
            assert len(alive) == 1, losers
            # ukrun refuses (the tap has a reader), or a loser that found a record whose guest
            # had not opened the tap yet execs a guest the kernel refuses the busy tap.
            assert all(re.search(r"already handed to a running guest|Device or resource busy",
                                 err) for err in losers), losers
            taps = [l["ifname"] for l in container.ip_json("-d", "link", "show")
                    if l.get("linkinfo", {}).get("info_kind") == "tun"]
            assert taps == ["tap0"]
            assert redirects(container, "eth0") == [("redirect", "tap0")]
            udp_echo(container.host.name, container.ip4)  # raises without an answer
        finally:
            # Killing ukrun's init alone would leave its guest running (no PID namespace here).
            for pid in container.pids():
                os.kill(pid, signal.SIGKILL)
            for p in procs:
                p.wait(5)
        # The guest is gone: the next round finds its record on a tap without a reader.


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_dry_run_reports_what_execve_would_refuse(broken, container, ukrun_exe, shared_dir):
    # The preflight's verdict matches execve's own (the exit status above), before any change.
    make, status = BROKEN[broken]
    program = make(shared_dir)
    before = snapshot(container)
    proc = container.exec(ukrun_exe, "unix", "--dry-run", program, check=False)
    assert_one_line_error(proc, status)
    assert snapshot(container) == before


def test_dry_run_reports_arguments_past_the_kernels_limit(container, status_program):
    # The word is made inside the child: too long for any command line, including ukrun's.
    code = ("import sys; from ukrun.cli import main; "
            "sys.exit(main(['unix', '--dry-run', %r, 'x' * (256 * 1024)]))" % status_program)
    before = snapshot(container)
    proc = container.exec(sys.executable, "-c", code, check=False)
    line = assert_one_line_error(proc, 1)
    assert "over the kernel's limit" in line, line
    assert snapshot(container) == before


def test_as_pid1_a_stop_while_waiting_for_the_guest_to_open_its_tap_is_not_delayed(
        container, ukrun_exe, shared_dir, pid1_runs):
    # This program never opens its tap: ukrun would wait up to a second for it before it
    # becomes the init, but not once a stop request is pending.
    program = write(shared_dir, "program", NO_HANDLER)
    run = pid1_runs(container, ukrun_exe, "unix", program)
    run.wait_line("ready")
    pid1 = run.pid1()
    assert b"ukrun-init" not in cmdline(pid1)  # still waiting for the tap
    started = time.monotonic()
    os.kill(pid1, signal.SIGTERM)
    assert run.proc.wait(5) == 128 + signal.SIGTERM, run.proc.stderr.read()
    assert time.monotonic() - started < 0.5


# A run whose capability drop fails at one step (or whose result is not as intended): the
# child Python patches ukrun.kernel.caps to refuse that step, as a seccomp or LSM profile would.
FAILING_DROP = textwrap.dedent("""\
    import errno, sys
    from ukrun.kernel import caps
    step = sys.argv[1]
    real_attempt, real_current = caps._attempt, caps.current
    def attempt(what, call, *args):  # what: the step's name, or a function that words it
        if (what if isinstance(what, str) else what()).startswith(step):
            return real_attempt(what, _refused, *args)
        return real_attempt(what, call, *args)
    def _refused(*args):
        raise OSError(errno.EPERM, "Operation not permitted")
    if step == "verify":  # every step works, the result read back is not what was asked
        def current():
            state = real_current()
            return type(state)(**dict(vars(state), bounding=state.bounding | {0}))
        caps.current = current
    caps._attempt = attempt
    from ukrun.cli import main
    sys.exit(main(sys.argv[2:]))
""")
DROP_STEPS = ("PR_SET_NO_NEW_PRIVS", "PR_CAPBSET_DROP", "capset", "PR_CAP_AMBIENT_CLEAR_ALL",
              "PR_CAP_AMBIENT_RAISE", "verify")


@pytest.mark.parametrize("init", MODES)
@pytest.mark.parametrize("step", DROP_STEPS)
def test_a_drop_refused_at_any_step_gives_the_network_back(step, init, container,
                                                           status_program):
    before = snapshot(container)
    proc = container.exec(sys.executable, "-c", FAILING_DROP, step, "unix", "--init", init,
                          status_program, check=False)
    line = assert_one_line_error(proc, 77)
    assert "dropping capabilities" in line and "eth0 was given back" in line, line
    assert snapshot(container) == before
