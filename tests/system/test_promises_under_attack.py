"""Attacks on what a run promises (nothing lost, foreign links untouched, the record is input), as a hostile pod neighbour and a hurried operator would make
them, through the real CLI in docker-like containers (nsutil; never the machine's namespace).

Each attack that still breaks a promise is a test marked ``xfail(strict=True, raises=
AssertionError, reason="finding N: ...")``: it fails today and turns red once fixed, so the
marker must go with the fix. What a test needs before it can make its point is checked with
``require``, which raises ``Precondition``, not AssertionError: an attack that could not be
staged is a real failure, never an expected one. The other tests are attacks ukrun already
withstands that no other test makes. Every process is bounded in time and dies with its
namespace.
"""
import errno
import functools
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

import ukrun
from nsutil import in_netns
from files import write
from snapshots import snapshot, wiring_state

NET_BIND_SERVICE = 1 << 10
CAP_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
MODES = ("never", "always")  # --init: exec directly, or fork under ukrun's init
# The abstract unix socket name an earlier ukrun locked with, which any process could bind.
OLD_LOCK_NAME = b"\0ukrun-network-namespace-lock"


class Precondition(Exception):
    """The attack could not be staged: the test says nothing about ukrun."""


def require(condition, message):
    if not condition:
        raise Precondition(message)


def finding(number, text):
    return pytest.mark.xfail(strict=True, raises=AssertionError,
                             reason="finding %d: %s" % (number, text))


# --- helpers ----------------------------------------------------------------------------------

def marker_program(directory):
    """A program that leaves a file behind when it runs: (program, the file)."""
    ran = os.path.join(directory, "ran")
    return write(directory, "marker", "#!/bin/sh\n: > %s\n" % ran), ran


def status_program(directory):
    """Prints its own capability lines and no_new_privs (cat's, exec'd by sh)."""
    return write(directory, "status", "#!/bin/sh\nexec cat /proc/self/status\n")


def status_of(text):
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def one_line_error(proc):
    """Whether ukrun said exactly one line, ``ukrun: error: ...`` (HOOKED_CLI's own aside)."""
    lines = [l for l in proc.stderr.strip().splitlines() if not l.startswith("HOOK after ")]
    return len(lines) == 1 and lines[0].startswith("ukrun: error: ")


def in_shell(container, ukrun_exe, argv, redirections):
    """ukrun run by sh with ``redirections`` applied first (e.g. '>&-' closes stdout)."""
    command = 'exec "$@" %s' % redirections
    return subprocess.run(["ip", "netns", "exec", container.name, "sh", "-c", command, "sh",
                           ukrun_exe] + list(argv), capture_output=True, text=True, timeout=60)


# The real CLI in a child Python that does something right after the wiring step OP#N (the N-th
# step of kind OP; OP alone: the first): SIGKILL itself (as the OOM killer or `docker kill`
# would), or delete a link (as a CNI tearing the pod down would). Nothing of ukrun's is changed
# but the moment.
HOOKED_CLI = textwrap.dedent("""\
    import os, signal, subprocess, sys
    from ukrun.network import executor as steps
    from ukrun.cli import main
    where, action = sys.argv[1], sys.argv[2]
    op, _, nth = where.partition("#")
    left = [int(nth or 1)]
    real_do = steps.Kernel.do
    def do(self, step):
        real_do(self, step)
        if step.op == op:
            left[0] -= 1
        if left[0] == 0:
            steps.Kernel.do = real_do
            sys.stderr.write("HOOK after %s\\n" % where)
            sys.stderr.flush()
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            subprocess.run(["ip", "link", "del", action], check=True)
    steps.Kernel.do = do
    sys.exit(main(sys.argv[3:]))
""")


def hooked_ukrun(container, op, action, *argv):
    return container.exec(sys.executable, "-c", HOOKED_CLI, op, action, *argv, check=False)


def planned_ops(container, ukrun_exe, *argv):
    """The ops of the steps a run would take, in order, from --dry-run."""
    out = container.exec(ukrun_exe, argv[0], "--dry-run", *argv[1:]).stdout
    return [step["op"] for step in json.loads(out)["steps"]]


def comparable(container, wiring):
    """wiring_state as JSON, without what differs between two equal wirings in two containers:
    link indexes, the MACs a run makes up (the tap's, the bridge's, and under bridge wiring
    eth0's), and each container's own address and MAC (in its record too)."""
    state = wiring_state(container)
    for section in ("links", "ipv4"):
        for link in state[section]:
            link.pop("ifindex", None)
            link.pop("link_index", None)
            if link["ifname"] != "eth0" or wiring == "bridge":
                link.pop("address", None)
                link.pop("permaddr", None)
    text = json.dumps(state, sort_keys=True)
    text = re.sub(r"\b%s\b" % re.escape(container.ip4), "ADDRESS", text)
    return re.sub(r"\b%s\b" % re.escape(container.mac), "MAC", text)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise Precondition("no %s within %s s" % (what, timeout))


def proc_status(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            return status_of(f.read())
    except FileNotFoundError:
        return {}


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def blocks_sigterm(pid):
    """Whether ``pid`` blocks SIGTERM now (ukrun blocks every signal for the whole run)."""
    blocked = proc_status(pid).get("SigBlk")
    return blocked is not None and int(blocked, 16) >> (signal.SIGTERM - 1) & 1


@functools.lru_cache(maxsize=None)
def securebits():
    """PR_SET_SECUREBITS and the SECBIT_* masks, from the system headers (cffi, built once)."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef("#define PR_SET_SECUREBITS ...\n"
             "#define SECBIT_NO_CAP_AMBIENT_RAISE ...\n"
             "#define SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED ...\n")
    ffi.set_source("_ukrun_attacks_securebits",
                   "#include <sys/prctl.h>\n#include <linux/securebits.h>\n")
    build = tempfile.mkdtemp(prefix="ukrun-attacks-cffi-")
    try:
        path = ffi.compile(tmpdir=build)
        spec = importlib.util.spec_from_file_location("_ukrun_attacks_securebits", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.lib
    finally:
        shutil.rmtree(build, ignore_errors=True)


# prctl(argv[1], argv[2]) through libc (PR_SET_SECUREBITS and the bits), then execs the rest.
WITH_SECUREBITS = textwrap.dedent("""\
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    request, bits = int(sys.argv[1]), int(sys.argv[2])
    if libc.prctl(request, bits, 0, 0, 0) != 0:
        sys.exit("prctl: " + os.strerror(ctypes.get_errno()))
    os.execv(sys.argv[3], sys.argv[3:])
""")


# === findings: promises that still break =========================================================

# --- finding 1: a SIGKILL between creating a link and marking it locks every later run out -----

# Was finding 1: a run SIGKILLed between creating the tap (or bridge) and writing its record
# (or mark) left a link every later run refused as someone else's.
@pytest.mark.parametrize("wiring, op", [("tc", "create_tap"), ("bridge", "create_bridge"),
                                        ("bridge", "create_tap")])
def test_a_run_killed_right_after_creating_a_link_does_not_lock_out_the_next(
        wiring, op, container, ukrun_exe, shared_dir):
    program, ran = marker_program(shared_dir)
    require(op in planned_ops(container, ukrun_exe, "unix", "--wiring", wiring, program),
            "a %s wiring no longer plans %s" % (wiring, op))
    killed = hooked_ukrun(container, op, "kill", "unix", "--wiring", wiring, program)
    require(killed.returncode == -signal.SIGKILL and "HOOK after " + op in killed.stderr,
            "the first run was not killed after %s: %s" % (op, killed.stderr))
    # The container restarts in its kept namespace (a pod): the next run must go through.
    again = container.exec(ukrun_exe, "unix", "--wiring", wiring, program, check=False)
    assert again.returncode == 0, again.stderr
    assert os.path.exists(ran)


# --- finding 2: a closed stdout or stderr costs the container its network -----------------------

# Was finding 2: with stdout or stderr closed, ukrun died of an AttributeError after the
# wiring (sys.stdout is None) and left eth0 handed over to no guest.
@pytest.mark.parametrize("init", MODES)
@pytest.mark.parametrize("redirections", [">&-", "2>&-", "<&- >&- 2>&-"],
                         ids=["stdout-closed", "stderr-closed", "all-closed"])
def test_closed_standard_fds_do_not_stop_the_program(redirections, init, container, ukrun_exe,
                                                     shared_dir):
    program, ran = marker_program(shared_dir)
    before = snapshot(container)
    proc = in_shell(container, ukrun_exe, ["unix", "--init", init, program], redirections)
    if not os.path.exists(ran):  # a refusal at least gives the network back
        assert snapshot(container) == before, "eth0 left handed over: %s" % proc.stderr
    assert proc.returncode == 0 and os.path.exists(ran), (proc.returncode, proc.stderr)


# --- finding 3: any process in the namespace, without privilege, stops every run -----------------

SQUATTER = textwrap.dedent("""\
    import socket, sys, time
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(%r)
    print("holding", flush=True)
    time.sleep(60)
""" % OLD_LOCK_NAME)

# Was finding 3: an unprivileged process (uid 65534, no capabilities) that bound ukrun's
# abstract lock name stopped every run. The lock is now a netfilter queue (or, without one, a
# tap) that only CAP_NET_ADMIN can take.
TAKER = textwrap.dedent("""\
    import sys
    sys.path.insert(0, sys.argv[1])
    from ukrun.kernel.nslock import LOCK_NAME
    from ukrun.kernel.tap import open_tap
    try:
        open_tap(LOCK_NAME, exclusive=True)
    except OSError as e:
        print(e.errno)
""")


def test_an_unprivileged_process_cannot_take_the_namespace_lock(container):
    root = os.path.dirname(os.path.dirname(os.path.abspath(ukrun.__file__)))
    proc = container.exec("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-c", TAKER,
                          root, check=False)
    # EACCES where /dev/net/tun is 0600 (this machine), EPERM where it is 0666 (Debian's
    # default): TUNSETIFF creates nothing without CAP_NET_ADMIN.
    assert proc.stdout.strip() in (str(errno.EPERM), str(errno.EACCES)), (proc.stdout,
                                                                          proc.stderr)


def test_an_unprivileged_process_cannot_hold_the_namespace_lock(container, ukrun_exe, shared_dir):
    program, ran = marker_program(shared_dir)
    squatter = container.popen("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-c",
                               SQUATTER, text=True)
    try:
        require(squatter.stdout.readline().strip() == "holding", "the squatter did not start")
        proc = container.exec(ukrun_exe, "unix", program, check=False, timeout=30)
    finally:
        squatter.kill()
        squatter.wait(5)
    assert proc.returncode == 0, proc.stderr
    assert os.path.exists(ran)


# --- finding 4: the tap is anyone's to attach -----------------------------------------------------

# Attach to tap0 by name (ukrun.kernel.tap, from ukrun's own tree), then read frames for the pod's IPv4
# address for a while: prints {"attach": "ok" | errno, "frame": bool}.
ATTACHER = textwrap.dedent("""\
    import json, os, select, sys, time
    sys.path.insert(0, sys.argv[1])
    from ukrun.kernel.tap import open_tap
    wanted = bytes(int(b) for b in sys.argv[2].split("."))
    try:
        tap = open_tap("tap0")
    except OSError as e:
        print(json.dumps({"attach": e.errno, "frame": False}), flush=True)
        sys.exit(0)
    print("attached", flush=True)
    frame, deadline = False, time.monotonic() + 5
    while not frame and time.monotonic() < deadline:
        if select.select([tap.fd], [], [], 0.2)[0]:
            frame = wanted in os.read(tap.fd, 65536)
    print(json.dumps({"attach": "ok", "frame": frame}), flush=True)
""")

# /dev/net/tun as Debian's udev makes it (0666), in the attacker's own mount namespace.
OPEN_TUN = 'mount -t tmpfs none /dev/net && mknod -m 666 /dev/net/tun c 10 200 && exec "$@"'


# Was finding 4 (fixed): see the test's name.
def test_a_process_without_privilege_cannot_take_the_guests_tap(docker_host, container, ukrun_exe,
                                                               shared_dir):
    program, _ = marker_program(shared_dir)
    container.exec(ukrun_exe, "unix", program)  # the guest ran and is gone; tap0 stays wired
    tree = os.path.dirname(os.path.dirname(os.path.abspath(ukrun.__file__)))
    attacker = container.popen("unshare", "-m", "--propagation", "private", "sh", "-c", OPEN_TUN,
                               "sh", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-c",
                               ATTACHER, tree, container.ip4, text=True)
    try:
        first = attacker.stdout.readline().strip()
        if first == "attached":
            with in_netns(docker_host.name):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with sock:  # a client of the pod, while the attacker listens
                while attacker.poll() is None:
                    sock.sendto(b"for the guest", (container.ip4, 9))
                    time.sleep(0.05)
            first = attacker.stdout.readline().strip()
        require(first.startswith("{"), "the attacker did not report: %r %s"
                % (first, attacker.stderr.read()))
    finally:
        attacker.kill()
        attacker.wait(5)
    assert json.loads(first) == {"attach": errno.EPERM, "frame": False}


# --- finding 5: a second run in direct mode rewires under a guest that is starting ---------------

def slow_guest(directory):
    """A guest that opens tap0 only 0.5 s after it starts (as QEMU takes its time)."""
    return write(directory, "slowguest", textwrap.dedent("""\
        #!%s
        import time
        time.sleep(0.5)
        from ukrun.kernel.tap import open_tap
        tap = open_tap("tap0")
        time.sleep(30)
    """ % sys.executable))


# Was finding 5: in exec mode direct nothing waited for the guest to open its tap: a second run
# in that window found no carrier, took the record over and rewired eth0. A run now waits up to
# survey.TAKEOVER_WAIT (1 s) for a reader before taking a record over; a guest slower than that
# to open its tap is taken for gone (README, Limits).
def test_a_second_run_never_rewires_under_a_starting_guest(container, ukrun_exe, shared_dir):
    guest = slow_guest(shared_dir)
    other, _ = marker_program(shared_dir)
    first = container.popen(ukrun_exe, "unix", "--init", "never", guest)
    try:
        # The guest is a script: once exec'd, it is the interpreter's first argument (before,
        # it was one of ukrun's).
        wait_for(lambda: cmdline(first.pid).split(b"\0")[1:2] == [guest.encode()], 10,
                 "exec of the first guest")
        started = time.monotonic()
        second = container.exec(ukrun_exe, "unix", "--wiring", "bridge", other, check=False)
        require(time.monotonic() - started < 4, "the second run outlasted the guest's delay")
        eth0 = container.ip_json("-d", "link", "show", "eth0")[0]
    finally:
        first.kill()
        first.wait(5)
    assert second.returncode == 1 and "already handed" in second.stderr, second.stderr
    assert "master" not in eth0, "eth0 was moved to %s under the first guest" % eth0["master"]


# --- finding 6: a signal during a direct run kills ukrun at the exec, not the program ------------

def trapping_program(directory):
    return write(directory, "trap", "#!/bin/sh\ntrap 'echo got-term; exit 7' TERM\necho ready\n"
                                    "while :; do sleep 0.05; done\n")


def run_with_sigterm_while_waiting(container, ukrun_exe, init, program):
    """Start ukrun while this test holds the namespace lock, SIGTERM it while it waits (every
    signal blocked by then), then let it go: (returncode, stdout, stderr)."""
    from ukrun.kernel.nslock import LOCK_NAME

    # A lock tap holds a run back whichever kind of lock the run itself would take.
    container.ip("tuntap", "add", LOCK_NAME, "mode", "tap")
    try:
        proc = container.popen(ukrun_exe, "unix", "--init", init, program, text=True)
        wait_for(lambda: b"ukrun" in cmdline(proc.pid) and blocks_sigterm(proc.pid), 10,
                 "ukrun waiting for the lock with signals blocked")
        os.kill(proc.pid, signal.SIGTERM)
    finally:
        container.ip("link", "del", LOCK_NAME)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


# Was finding 6: in exec mode direct, a SIGTERM that came in during the run was delivered to
# ukrun when it unblocked signals right before execve: ukrun died, the program never ran and
# eth0 stayed handed over. Now the run gives the network back and ends with 128 + 15.
def test_a_sigterm_during_a_direct_run_reaches_the_program_or_changes_nothing(
        container, ukrun_exe, shared_dir):
    program = trapping_program(shared_dir)
    before = snapshot(container)
    status, out, err = run_with_sigterm_while_waiting(container, ukrun_exe, "never", program)
    delivered = "got-term" in out and status == 7
    assert delivered or snapshot(container) == before, (status, out, err)


# --- finding 7: as PID 1, a SIGTERM during Python's start is lost ---------------------------------

# Was finding 7: as PID 1, until run() blocked signals (all of Python's start and ukrun's
# imports) SIGTERM had no handler and the kernel dropped it. The installed script now blocks
# every signal on its first lines, before site (and so sitecustomize) runs, when its
# interpreter line keeps -S (an editable install, `python -S .../bin/ukrun`); pip drops the
# flag from a wheel's script, and then site runs first (README, Limits). CPython's own start
# before the script's first line stays a window of some milliseconds.
def test_as_pid1_a_sigterm_during_start_still_stops_the_program(container, ukrun_exe, shared_dir):
    program = write(shared_dir, "sleeper", "#!/bin/sh\necho ready\nexec sleep 60\n")
    # A slow start (a cold page cache, a busy node) made reproducible: Python runs this first.
    site = os.path.join(shared_dir, "site")
    os.mkdir(site)
    write(site, "sitecustomize.py", "import time\ntime.sleep(1)\n", mode=0o644)
    env = dict(os.environ, PYTHONPATH=site)
    run = subprocess.Popen(["ip", "netns", "exec", container.name, "unshare", "--pid", "--fork",
                            "--mount-proc", "--kill-child", ukrun_exe, "unix", program],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        def pid1():
            try:
                with open("/proc/%d/task/%d/children" % (run.pid, run.pid)) as f:
                    children = f.read().split()
            except FileNotFoundError:
                return None
            return int(children[0]) if children and b"ukrun" in cmdline(int(children[0])) else None
        pid = wait_for(pid1, 10, "ukrun as PID 1")
        time.sleep(0.2)  # inside the slow start: sitecustomize sleeps for a second
        require(b"ukrun" in cmdline(pid) and run.poll() is None, "ukrun is not starting")
        os.kill(pid, signal.SIGTERM)  # docker stop, from the host's PID namespace
        try:
            code = run.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
    finally:
        if run.poll() is None:
            run.kill()
        run.wait(5)
    assert code is not None, "the program still ran 5 s after docker stop's SIGTERM"


# --- finding 8: an older ukrun's record bricks the pod --------------------------------------------

# What ukrun wrote on the tap before its records became words (e53023e): JSON.
JSON_RECORD = ('ukrun:{"v":1,"i":"eth0","w":"tc","b":null,"4":"172.30.0.2/16",'
               '"g":"172.30.0.1","o":0,"m":null,"e":"02:42:ac:1e:00:02"}')


# Was finding 8: the JSON record an older ukrun wrote was refused as 'ukrun did not write it',
# and the hint (delete the tap) threw away the only copy of eth0's address.
def test_a_record_of_an_older_ukrun_is_taken_over_or_explained(container, ukrun_exe, shared_dir):
    program, ran = marker_program(shared_dir)
    # What the older run left in the kept namespace: its tap, its record, eth0 without IPv4.
    container.ip("tuntap", "add", "tap0", "mode", "tap")
    container.ip("link", "set", "tap0", "alias", JSON_RECORD)
    container.ip("addr", "flush", "dev", "eth0")
    proc = container.exec(ukrun_exe, "unix", program, check=False)
    assert proc.returncode == 0 and os.path.exists(ran), proc.stderr
    # Taken over, and rewritten in today's words.
    assert container.ip_json("-d", "link", "show", "tap0")[0]["ifalias"].startswith("ukrun:1 ")


# --- finding 9: a record makes any tun device ukrun's, usable or not ------------------------------

# Was finding 9 (fixed): see the test's name.
@pytest.mark.parametrize("kind", [("mode", "tun"), ("mode", "tap", "multi_queue"),
                                  ("mode", "tap", "user", "12345")],
                         ids=["tun", "multi-queue", "owned"])
def test_a_recorded_device_no_guest_can_attach_is_refused(kind, container, ukrun_exe, shared_dir):
    program, ran = marker_program(shared_dir)
    container.exec(ukrun_exe, "unix", program)  # a real record, whatever its format
    record = container.ip_json("-d", "link", "show", "tap0")[0]["ifalias"]
    # A neighbour with CAP_NET_ADMIN swaps the tap for its own device, record and all.
    container.ip("link", "del", "tap0")
    container.ip("tuntap", "add", "tap0", *kind)
    container.ip("link", "set", "tap0", "alias", record)
    os.unlink(ran)
    before = snapshot(container)
    dry = container.exec(ukrun_exe, "unix", "--dry-run", program, check=False)
    proc = container.exec(ukrun_exe, "unix", program, check=False)
    assert dry.returncode != 0 and one_line_error(dry), dry.stdout[-300:]
    assert proc.returncode != 0 and one_line_error(proc), proc.stderr
    assert snapshot(container) == before and not os.path.exists(ran)


# --- finding 10: root refused for want of an ambient set it does not need ------------------------

# Was finding 10 (fixed): see the test's name.
@pytest.mark.parametrize("init", MODES)
def test_root_without_ambient_raise_still_runs(init, container, ukrun_exe, shared_dir):
    lib = securebits()
    bits = lib.SECBIT_NO_CAP_AMBIENT_RAISE | lib.SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED
    program = status_program(shared_dir)
    proc = container.exec(sys.executable, "-c", WITH_SECUREBITS, lib.PR_SET_SECUREBITS, bits,
                          ukrun_exe, "unix", "--init", init, program, check=False)
    require("prctl:" not in proc.stderr, proc.stderr)
    assert proc.returncode == 0, proc.stderr
    got = status_of(proc.stdout)
    assert int(got["CapPrm"], 16) == NET_BIND_SERVICE, got


# === attacks ukrun withstands ===================================================================

@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_a_run_killed_after_any_later_step_is_finished_by_the_next(wiring, docker_host, ukrun_exe,
                                                                   shared_dir):
    # SIGKILL (OOM, docker kill) right after each step but the links' creation (finding 1):
    # the restarted container's run ends with the wiring one clean run makes.
    program, _ = marker_program(shared_dir)
    argv = ("unix", "--wiring", wiring, program)
    clean = docker_host.container()
    ops = planned_ops(clean, ukrun_exe, *argv)
    clean.exec(ukrun_exe, *argv)
    wanted = comparable(clean, wiring)
    moments = ["%s#%d" % (op, ops[:i + 1].count(op)) for i, op in enumerate(ops)
               if op not in ("create_tap", "create_bridge")]
    require(len(moments) >= 8, "too few steps planned: %s" % ops)
    for moment in moments:
        container = docker_host.container()
        killed = hooked_ukrun(container, moment, "kill", *argv)
        require(killed.returncode == -signal.SIGKILL, "not killed after %s: %s"
                % (moment, killed.stderr))
        again = container.exec(ukrun_exe, *argv, check=False)
        assert again.returncode == 0, (moment, again.stderr)
        assert comparable(container, wiring) == wanted, "killed after %s" % moment
        container.delete()


@pytest.mark.parametrize("wiring, op", [("tc", "set_alias"), ("tc", "delete_address"),
                                        ("bridge", "enslave")])
def test_eth0_deleted_mid_run_leaves_nothing_of_ukruns(wiring, op, container, shared_dir):
    # The CNI tears the pod down while ukrun wires it: one line, exit 1, and neither a tap nor a
    # bridge nor a record stays behind to confuse the namespace's next user.
    program, ran = marker_program(shared_dir)
    proc = hooked_ukrun(container, op, "eth0", "unix", "--wiring", wiring, program)
    require("HOOK after " + op in proc.stderr, "eth0 was not deleted after %s" % op)
    assert proc.returncode == 1 and one_line_error(proc), proc.stderr
    assert [link["ifname"] for link in container.ip_json("link", "show")] == ["lo"]
    assert not os.path.exists(ran)


@pytest.mark.parametrize("init", MODES)
def test_stdin_closed_the_program_runs_as_if_started_directly(init, container, ukrun_exe,
                                                             shared_dir):
    program = write(shared_dir, "stdin", "#!/bin/sh\nif [ -e /proc/self/fd/0 ]; then echo open; "
                                         "else echo closed; fi\n")
    proc = in_shell(container, ukrun_exe, ["unix", "--init", init, program], "<&-")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "closed"


# Lists the fds it holds (fstat, which opens none) and, once its parent is ukrun's init, the init's.
FD_REPORT = "#!%s -I\n" % sys.executable + textwrap.dedent("""\
    import json, os, sys, time
    def held():
        found = []
        for fd in range(1024):
            try:
                os.fstat(fd)
                found.append(fd)
            except OSError:
                pass
        return found
    mine, parent = held(), os.getppid()
    init = None
    if "always" in sys.argv:
        deadline = time.monotonic() + 5
        while b"ukrun-init" not in open("/proc/%d/cmdline" % parent, "rb").read():
            if time.monotonic() > deadline:
                sys.exit("the parent never became ukrun-init")
            time.sleep(0.02)
        init = sorted(int(n) for n in os.listdir("/proc/%d/fd" % parent))
    print(json.dumps({"fds": mine, "init": init}))
""")


@pytest.mark.parametrize("init", MODES)
@pytest.mark.parametrize("target", ["unix", "spt"])
def test_a_callers_open_fds_reach_neither_the_program_nor_the_init(target, init, container,
                                                                  ukrun_exe, shared_dir):
    report = write(shared_dir, "fds", FD_REPORT)
    unikernel = write(shared_dir, "unikernel", "", mode=0o644)
    if target == "unix":
        argv = ["unix", "--init", init, report, init]
    else:  # the tender gets the tap as fd 3, where the caller had a file open
        argv = ["spt", "--init", init, "--tap-fd", "--tender", report, unikernel, init]
    command = 'exec 3</etc/hostname 4</etc/passwd 9>/dev/null 200</dev/null; exec "$@"'
    proc = subprocess.run(["ip", "netns", "exec", container.name, "bash", "-c", command, "bash",
                           ukrun_exe] + argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["fds"] == ([0, 1, 2] if target == "unix" else [0, 1, 2, 3])
    assert got["init"] in (None, [0, 1, 2])


@pytest.mark.parametrize("script, direct, forked", [
    ("exit 3", 3, 3),
    ("kill -KILL $$", -signal.SIGKILL, 128 + signal.SIGKILL),
    ("kill -SEGV $$", -signal.SIGSEGV, 128 + signal.SIGSEGV),
], ids=["exit-3", "sigkill", "sigsegv"])
@pytest.mark.parametrize("init", MODES)
def test_a_guest_that_ends_at_once_gives_its_status(script, direct, forked, init, container,
                                                    ukrun_exe, shared_dir):
    # Direct, the program is the process; forked, ukrun's init exits as a shell reports it.
    program = write(shared_dir, "quick", "#!/bin/sh\n%s\n" % script)
    proc = container.exec(ukrun_exe, "unix", "--init", init, program, check=False)
    assert proc.returncode == (direct if init == "never" else forked), proc.stderr
    assert proc.stderr == ""


def test_a_sigterm_during_a_forked_run_reaches_the_program(container, ukrun_exe, shared_dir):
    # The counterpart of finding 6: under ukrun's init the pending signal is forwarded.
    program = trapping_program(shared_dir)
    status, out, err = run_with_sigterm_while_waiting(container, ukrun_exe, "always", program)
    if status == 128 + signal.SIGTERM:
        # The program got it before its shell had set the trap (a loaded machine): ukrun-init
        # reports the TERM that killed it, and the network stays the guest's. A run that gave
        # up before the program (ukrun's own 128 + 15) would have given eth0 back.
        assert "tap0" in [link["ifname"] for link in container.ip_json("link", "show")], err
        return
    assert status == 7 and "got-term" in out, (status, out, err)


def capability_binary(directory):
    """grep with file capabilities (sys_admin, net_raw: effective and permitted), exec'd by the
    guest: what it would gain, it must not."""
    if shutil.which("setcap") is None:
        pytest.skip("setcap (libcap2-bin) is not installed")
    binary = os.path.join(directory, "capgrep")
    shutil.copy("/usr/bin/grep", binary)
    subprocess.run(["setcap", "cap_sys_admin,cap_net_raw+ep", binary], check=True)
    return write(directory, "capstatus", "#!/bin/sh\nexec %s -E '^(Cap|NoNewPrivs)' "
                                         "/proc/self/status\n" % binary)


@pytest.mark.parametrize("who", ["root", "root-without-setpcap", "uid-1000"])
@pytest.mark.parametrize("init", MODES)
def test_file_capabilities_give_the_guest_nothing_beyond_the_kept(who, init, container, ukrun_exe,
                                                                  shared_dir):
    program = capability_binary(shared_dir)
    caps = "+net_admin,+net_bind_service,+dac_override"
    wrap = {"root": [], "root-without-setpcap": ["setpriv", "--bounding-set=-setpcap"],
            "uid-1000": ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups",
                         "--inh-caps=" + caps, "--ambient-caps=" + caps]}[who]
    proc = container.exec(*wrap, ukrun_exe, "unix", "--init", init, program, check=False)
    if proc.returncode == 126:  # the kernel refused the exec: the bounding set lacks them
        assert "Operation not permitted" in proc.stderr, proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    got = status_of(proc.stdout)
    for key in ("CapPrm", "CapEff", "CapAmb"):
        assert int(got[key], 16) & ~NET_BIND_SERVICE == 0, (key, got)


@pytest.mark.parametrize("init", MODES)
@pytest.mark.parametrize("how", ["no_new_privs", "noroot"])
def test_inherited_privilege_restrictions_still_give_exactly_the_kept_caps(how, init, container,
                                                                         ukrun_exe, shared_dir):
    # no_new_privs already set; SECBIT_NOROOT (root is not special: ukrun's own capabilities
    # come from the ambient set, as a non-root user's would).
    caps = "+net_admin,+net_bind_service,+setpcap"
    wrap = {"no_new_privs": ["setpriv", "--no-new-privs"],
            "noroot": ["setpriv", "--securebits", "+noroot,+noroot_locked",
                       "--inh-caps", caps, "--ambient-caps", caps]}[how]
    program = status_program(shared_dir)
    proc = container.exec(*wrap, ukrun_exe, "unix", "--init", init, program, check=False)
    assert proc.returncode == 0, proc.stderr
    got = status_of(proc.stdout)
    for key in CAP_SETS:
        assert int(got[key], 16) == NET_BIND_SERVICE, (key, got)
    assert got["NoNewPrivs"] == "1"


def test_a_non_root_user_without_dac_override_runs(container, ukrun_exe, shared_dir):
    # docker run --user 1000 --cap-add NET_ADMIN --cap-add NET_BIND_SERVICE --cap-drop
    # DAC_OVERRIDE on a host whose /dev/net/tun is 0666 (Debian's udev rule).
    caps = "+net_admin,+net_bind_service"
    program = status_program(shared_dir)
    proc = container.exec("unshare", "-m", "--propagation", "private", "sh", "-c", OPEN_TUN, "sh",
                          "setpriv", "--reuid=1000", "--regid=1000", "--clear-groups",
                          "--inh-caps=" + caps, "--ambient-caps=" + caps, ukrun_exe, "unix",
                          program, check=False)
    assert proc.returncode == 0, proc.stderr
    got = status_of(proc.stdout)
    assert got["Uid"].split()[0] == "1000"
    for key in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(got[key], 16) == NET_BIND_SERVICE, (key, got)


@pytest.mark.parametrize("hide", ["umount -l /proc", "mount -t tmpfs none /proc"],
                         ids=["unmounted", "covered"])
def test_without_proc_nothing_changes(hide, container, ukrun_exe, shared_dir):
    program, ran = marker_program(shared_dir)
    before = snapshot(container)
    proc = container.exec("unshare", "-m", "--propagation", "private", "sh", "-c",
                          hide + ' && exec "$@"', "sh", ukrun_exe, "unix", program, check=False)
    assert proc.returncode == 1 and one_line_error(proc), proc.stderr
    assert snapshot(container) == before and not os.path.exists(ran)


def test_a_record_on_a_link_that_is_not_a_tap_makes_it_no_ukruns(container, ukrun_exe,
                                                                  shared_dir):
    # A neighbour's bridge named tap0, carrying a record that validates (a real one, copied).
    program, ran = marker_program(shared_dir)
    container.exec(ukrun_exe, "unix", program)
    record = container.ip_json("-d", "link", "show", "tap0")[0]["ifalias"]
    container.ip("link", "del", "tap0")
    container.ip("link", "add", "tap0", "type", "bridge")
    container.ip("link", "set", "tap0", "alias", record)
    os.unlink(ran)
    before = snapshot(container)
    proc = container.exec(ukrun_exe, "unix", "--tap", "tap0", program, check=False)
    assert proc.returncode == 1 and one_line_error(proc), proc.stderr
    assert "tap0 already exists" in proc.stderr  # not ukrun's: its record is not taken
    assert snapshot(container) == before and not os.path.exists(ran)
    # With no --tap the run passes the foreign tap0 by for tap1, and finds eth0 as the
    # first run left it, without its address (which only that record held): refused too.
    proc = container.exec(ukrun_exe, "unix", program, check=False)
    assert proc.returncode == 1 and one_line_error(proc), proc.stderr
    assert "eth0 has no global IPv4 or IPv6 address" in proc.stderr
    assert snapshot(container) == before and not os.path.exists(ran)
