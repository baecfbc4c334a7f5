"""ukrun-init (csrc/init.c, found by ukrun.kernel.process) as PID 1 of a PID namespace made here.

Each namespace is used as the runner uses it: PID 1 (PID1 below, under `unshare --pid --fork`)
blocks every signal, forks the program, then execs the init with the program's pid; the
program restores an empty mask before its own exec. Signals come from this process, outside
the namespace, as `docker stop`'s do. Every wait is bounded; a failing test SIGKILLs its
PID 1, which takes the whole namespace with it.
"""
import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ukrun.kernel import process

WAIT = 10.0  # seconds: the bound on every wait below

# PID 1 of the namespace, as ukrun's runner will be when it forks the program.
PID1 = r"""
import json, os, signal, sys
cfg = json.loads(sys.argv[1])
signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
child = os.fork()
if child == 0:
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    os.execv(cfg["child"][0], cfg["child"])
# /proc is the machine's (no --mount-proc): /proc/self names this process as the test sees it.
print("pid1", os.readlink("/proc/self"), flush=True)
if cfg["hold"]:
    sys.stdin.readline()
if cfg["child_exits_first"]:
    os.waitid(os.P_PID, child, os.WEXITED | os.WNOWAIT)
    # Take the pending SIGCHLD too, so that only the init's own look at the start finds it.
    assert signal.sigtimedwait([signal.SIGCHLD], 0) is not None
os.execv(cfg["argv"][0], cfg["argv"] + [cfg["pid"] or str(child)])
"""

# The program. `handle`: report every signal it gets as "got N", exit 42 on SIGTERM.
# `exit DIR ORPHANS`: leave ORPHANS processes to PID 1 (each waits for DIR/release), then exit
# as DIR/exit says ("N", or "kill:SIG" to die by that signal).
CHILD = r"""
import os, signal, sys, time
mode = sys.argv[1]

def wait_for(path):
    deadline = time.monotonic() + 20
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)

if mode == "handle":
    def got(sig, frame):
        print("got", sig, flush=True)
        if sig == signal.SIGTERM:
            os._exit(42)
    for sig in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}:
        signal.signal(sig, got)
    print("ready", os.readlink("/proc/self"), flush=True)
    while True:
        signal.pause()

where, orphans = sys.argv[2], int(sys.argv[3])
for _ in range(orphans):
    middle = os.fork()
    if middle == 0:
        if os.fork() == 0:
            wait_for(os.path.join(where, "release"))
        os._exit(0)
    os.waitpid(middle, 0)
print("ready", os.readlink("/proc/self"), flush=True)
wait_for(os.path.join(where, "exit"))
how = open(os.path.join(where, "exit")).read()
if how.startswith("kill:"):
    os.kill(os.getpid(), int(how[5:]))
sys.exit(int(how))
"""

FORWARDED = sorted(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD})


@pytest.fixture(scope="module")
def init():
    return process.init_program()


def wait_until(what, condition):
    deadline = time.monotonic() + WAIT
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("not within %g s: %s" % (WAIT, what))
        time.sleep(0.005)


def status_of(pid):
    """/proc/PID/status as a dict of stripped strings; {} when PID is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            return dict((k, v.strip()) for k, v in (line.split(":", 1) for line in f))
    except (FileNotFoundError, ProcessLookupError):
        return {}


def children(pid):
    """The pids whose parent is PID, zombies included (they keep their PPid until reaped)."""
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit() and status_of(int(name)).get("PPid") == str(pid):
            found.add(int(name))
    return found


def exe(pid):
    try:
        return os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return None


class Namespace:
    """A PID namespace whose PID 1 forks CHILD (an argv) and execs ARGV + [its pid]."""

    def __init__(self, argv, child, pid=None, hold=False, child_exits_first=False):
        cfg = {"argv": argv, "child": child, "pid": pid, "hold": hold,
               "child_exits_first": child_exits_first}
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", sys.executable, "-c", PID1, json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pending = b""
        self.lines = []
        self.pid = None

    def start(self):
        self.pid = int(self.line("pid1").split()[1])

    def _read(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
            raise AssertionError("no output within %g s; so far %r" % (WAIT, self.lines))
        chunk = os.read(self.proc.stdout.fileno(), 4096)
        if not chunk:
            raise AssertionError("output ended; lines were %r" % self.lines)
        self.pending += chunk
        *complete, self.pending = self.pending.split(b"\n")
        self.lines += [c.decode() for c in complete]

    def line(self, prefix):
        """The first line not yet taken that starts with PREFIX (waiting for it)."""
        deadline = time.monotonic() + WAIT
        while True:
            for i, text in enumerate(self.lines):
                if text.startswith(prefix):
                    return self.lines.pop(i)
            self._read(deadline)

    def wait_for_init(self, init):
        wait_until("PID 1 execs %s" % init, lambda: exe(self.pid) == os.path.realpath(init))
        # NSpid lists the pid in every namespace from the machine's down: 1 is its own.
        assert status_of(self.pid)["NSpid"].split()[-1] == "1"

    def release(self):
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def finish(self):
        """(exit status of PID 1, its stderr lines); what is left of stdout joins .lines."""
        out, err = self.proc.communicate(timeout=WAIT)
        self.lines += (self.pending + out).decode().splitlines()
        return self.proc.returncode, err.decode().splitlines()

    def close(self):
        if self.proc.poll() is None:
            # SIGKILL from outside ends PID 1, and with it the whole namespace.
            for pid in [self.pid] if self.pid else children(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(timeout=WAIT)


@contextlib.contextmanager
def namespace(*args, **kw):
    ns = Namespace(*args, **kw)
    try:
        ns.start()
        yield ns
    finally:
        ns.close()


def python(mode, *args):
    return [sys.executable, "-c", CHILD, mode] + [str(a) for a in args]


# --- signals ------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR2])
def test_a_signal_ends_a_child_without_handlers_and_the_init_exits_as_it_did(init, sig):
    with namespace([init], ["/bin/sleep", "30"]) as ns:
        ns.wait_for_init(init)
        wait_until("the child execs sleep", lambda: any(
            exe(c) == os.path.realpath("/bin/sleep") for c in children(ns.pid)))
        os.kill(ns.pid, sig)
        assert ns.finish() == (128 + sig, [])


def test_every_signal_but_sigchld_reaches_the_child_and_its_own_exit_status_passes(init):
    with namespace([init], python("handle")) as ns:
        ns.line("ready")
        ns.wait_for_init(init)
        for sig in FORWARDED:
            if sig == signal.SIGTERM:
                continue
            os.kill(ns.pid, sig)
            assert ns.line("got") == "got %d" % sig
        # A SIGCHLD sent to PID 1 makes it reap, not forward: the next signal arrives first.
        os.kill(ns.pid, signal.SIGCHLD)
        os.kill(ns.pid, signal.SIGUSR1)
        assert ns.line("got") == "got %d" % signal.SIGUSR1
        os.kill(ns.pid, signal.SIGTERM)
        assert ns.finish() == (42, [])
        assert ns.lines == ["got %d" % signal.SIGTERM]


def test_a_signal_sent_before_the_init_runs_is_not_lost(init):
    # PID 1 still runs the runner's code, with every signal blocked: the kernel keeps the
    # signal pending, execve keeps it, and the init forwards it once it runs.
    with namespace([init], python("handle"), hold=True) as ns:
        ns.line("ready")
        os.kill(ns.pid, signal.SIGUSR1)
        assert exe(ns.pid) == os.path.realpath(sys.executable)
        ns.release()
        assert ns.line("got") == "got %d" % signal.SIGUSR1
        ns.wait_for_init(init)
        os.kill(ns.pid, signal.SIGTERM)
        assert ns.finish() == (42, [])


# --- exit statuses and zombies --------------------------------------------------------------

@pytest.mark.parametrize("how, status", [("0", 0), ("3", 3), ("255", 255),
                                         ("kill:9", 137), ("kill:10", 138)])
def test_the_childs_exit_status_passes_through(init, tmp_path, how, status):
    with namespace([init], python("exit", tmp_path, 0)) as ns:
        ns.line("ready")
        ns.wait_for_init(init)
        (tmp_path / "tmp").write_text(how)
        os.rename(tmp_path / "tmp", tmp_path / "exit")
        assert ns.finish() == (status, [])


@pytest.mark.parametrize("how, status", [("7", 7), ("kill:9", 137)])
def test_a_child_that_ended_before_the_init_started_is_reaped(init, tmp_path, how, status):
    (tmp_path / "exit").write_text(how)
    with namespace([init], python("exit", tmp_path, 0), child_exits_first=True) as ns:
        assert ns.finish() == (status, [])


def test_orphans_are_reaped(init, tmp_path):
    orphans = 5
    with namespace([init], python("exit", tmp_path, orphans)) as ns:
        child = int(ns.line("ready").split()[1])
        ns.wait_for_init(init)
        # Their parents have exited: the kernel made the init their parent.
        assert len(children(ns.pid) - {child}) == orphans
        (tmp_path / "release").touch()
        wait_until("the init reaps every orphan", lambda: children(ns.pid) == {child})
        (tmp_path / "exit").write_text("0")
        assert ns.finish() == (0, [])


# --- refusals -----------------------------------------------------------------------------

def test_a_pid_that_is_not_its_child_is_refused(init):
    pid_max = int(open("/proc/sys/kernel/pid_max").read())
    for pid in ("1", str(pid_max + 1)):  # itself, and a pid no process can have
        with namespace([init], ["/bin/sleep", "30"], pid=pid) as ns:
            status, err = ns.finish()
        assert status == 1
        assert len(err) == 1 and err[0].startswith("ukrun-init: process %s is not a child" % pid)


def expected_status(words):
    """What ukrun-init, started with argv WORDS and no children, must exit with."""
    if len(words) == 1 and re.fullmatch(r"[0-9]+", words[0]) and 0 < int(words[0]) < 2 ** 31:
        return 1  # well formed, but not its child (it has none)
    return 2


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",),
                                      blacklist_characters="\0"), max_size=12), max_size=3))
@example([])
@example(["1"])
@example(["0"])
@example(["00001"])
@example(["-1"])
@example(["+1"])
@example([" 1"])
@example(["1 "])
@example(["2147483647"])
@example(["2147483648"])
@example(["99999999999999999999999"])
@example(["１"])  # a digit to Python's str.isdigit, not to C
@example(["1", "2"])
def test_command_line(init, words):
    proc = subprocess.run([init] + words, capture_output=True, timeout=WAIT)
    status = expected_status(words)
    assert proc.returncode == status, (words, proc.stderr)
    err = proc.stderr.decode().splitlines()
    assert proc.stdout == b"" and len(err) == 1
    if status == 2:
        assert err[0].startswith("usage: ukrun-init CHILD_PID")
    else:
        assert err[0].startswith("ukrun-init: process %d is not a child" % int(words[0]))


# --- capabilities ---------------------------------------------------------------------------

CAP_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


def test_with_every_capability_dropped_the_init_holds_none_and_still_forwards(init):
    setpriv = "/usr/bin/setpriv"
    if not os.access(setpriv, os.X_OK):
        pytest.skip("util-linux's setpriv is not installed (it drops the capabilities here)")
    drop = [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all",
            "--no-new-privs", init]
    with namespace(drop, ["/bin/sleep", "30"]) as ns:
        ns.wait_for_init(init)
        status = status_of(ns.pid)
        assert {f: int(status[f], 16) for f in CAP_FIELDS} == dict.fromkeys(CAP_FIELDS, 0)
        assert status["NoNewPrivs"] == "1"
        wait_until("the child execs sleep", lambda: any(
            exe(c) == os.path.realpath("/bin/sleep") for c in children(ns.pid)))
        os.kill(ns.pid, signal.SIGTERM)
        assert ns.finish() == (143, [])


# --- ukrun.kernel.process -------------------------------------------------------------------------------

def test_init_program_is_the_executable_shipped_in_the_package(init):
    assert os.path.isabs(init)
    assert os.path.dirname(init) == os.path.dirname(os.path.dirname(os.path.abspath(process.__file__)))
    assert os.path.basename(init) == "ukrun-init"
    assert os.access(init, os.X_OK)


def test_a_missing_init_says_to_reinstall(monkeypatch, tmp_path):
    monkeypatch.setattr(process, "__file__", str(tmp_path / "kernel" / "process.py"))
    with pytest.raises(process.InitProgramError) as e:
        process.init_program()
    assert str(e.value) == ("ukrun's init %s is missing (reinstall ukrun)"
                            % (tmp_path / "ukrun-init"))
    assert e.value.exit_status == 1


@pytest.mark.parametrize("make", [lambda p: p.write_bytes(b"\x7fELF"), lambda p: p.mkdir()])
def test_an_init_that_is_not_an_executable_file_says_to_reinstall(monkeypatch, tmp_path, make):
    make(tmp_path / "ukrun-init")  # mode 0644 (root may execute any file with an x bit)
    monkeypatch.setattr(process, "__file__", str(tmp_path / "kernel" / "process.py"))
    with pytest.raises(process.InitProgramError, match=r"^ukrun's init .* \(reinstall ukrun\)$"):
        process.init_program()


def test_importing_the_process_module_loads_nothing_but_ukrun_errors():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(process.__file__))))
    code = ("import os, sys; before = set(sys.modules); import ukrun.kernel.process; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         check=True, timeout=WAIT, env=dict(os.environ, PYTHONPATH=root)).stdout
    assert out.split() == ["ukrun", "ukrun._version", "ukrun.errors", "ukrun.kernel",
                           "ukrun.kernel.process"]
