"""Attacks on what keeps a run fast: cold code loaded only on failure, the stack limit read
from /proc/self/limits, runs without the cycle collector, netlink replies read in part, and
the image step that gives the installed script its -S back.

Runs go through the real CLI in docker-like containers (nsutil; never the machine's
namespace). Three attacks found defects, fixed since: each test says above it what it found.
The others are attacks the changes withstood that no other test makes.
"""
import importlib.util
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ukrun
from snapshots import snapshot
from files import write
from ukrun import docker_build
from ukrun.guest import execrules
from ukrun.kernel.ffi import lib
from ukrun.kernel.netlink import NLMSG_ALIGN, NetlinkParseError
from ukrun.kernel.rtnl import NetlinkError, Rtnl

PACKAGE = os.path.dirname(os.path.abspath(ukrun.__file__))
# Where cffi's extension lies: a run started with -S needs it on sys.path.
CFFI_DIR = os.path.dirname(importlib.util.find_spec("_cffi_backend").origin)
# The CLI from the package in argv[1], cffi from argv[2], without site (as bin/ukrun runs).
CLI = ("import sys; sys.path[:0] = [sys.argv.pop(1), sys.argv.pop(1)]; "
       "from ukrun.cli import main; sys.exit(main())")
WITHOUT_SETPCAP = ["setpriv", "--bounding-set=-setpcap"]


def one_line_error(proc):
    lines = proc.stderr.strip().splitlines()
    return (len(lines) == 1 and lines[0].startswith("ukrun: error: ")
            and "internal error" not in lines[0])


@pytest.fixture
def root_only_package():
    """A copy of the package under test in a directory only root's capabilities let root into
    (0700, owned by nobody: a venv built by another user, read through CAP_DAC_OVERRIDE).
    Yields the directory to put on sys.path."""
    top = tempfile.mkdtemp(prefix="ukrun-private-")
    os.chmod(top, 0o755)
    private = os.path.join(top, "private")
    shutil.copytree(PACKAGE, os.path.join(private, "ukrun"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    for directory, dirs, files in os.walk(private):
        for name in dirs + files:
            os.chown(os.path.join(directory, name), 65534, 65534)
    os.chown(private, 65534, 65534)
    os.chmod(private, 0o700)
    yield private
    shutil.rmtree(top, ignore_errors=True)


def cli(container, package, *argv, wrap=(), **kw):
    return container.exec(*wrap, sys.executable, "-S", "-c", CLI, package, CFFI_DIR, *argv,
                          check=False, **kw)


@pytest.fixture
def busy_program(shared_dir):
    """A program whose execve fails with ETXTBSY (this test holds it open for writing),
    which no preflight can foresee: it fails after the wiring."""
    program = write(shared_dir, "busy", "#!/bin/sh\nexit 0\n")
    fd = os.open(program, os.O_WRONLY)
    yield program
    os.close(fd)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# === cold code imported on failure =================================================================

# Found by attack, fixed: ukrun.runner._exec_forked imported ukrun.runner (handed_text) after
# caps.drop_to(frozenset()) and before os.kill: when the init's execve fails and the package is
# one root read through its capabilities, the import fails (ModuleNotFoundError), the guest is
# left running unowned and ukrun says 'internal error' (c1283c9: 'executing ukrun-init:
# Permission denied', guest stopped)
def test_a_failed_init_exec_stops_the_guest_and_says_why(container, root_only_package,
                                                         shared_dir):
    pidfile = os.path.join(shared_dir, "pid")
    program = write(shared_dir, "guest", "#!/bin/sh\necho $$ > %s\n"
                    "exec sleep 30 </dev/null >/dev/null 2>&1\n" % pidfile)
    proc = cli(container, root_only_package, "unix", "--init", "always", program)
    assert os.path.exists(pidfile), proc.stderr  # the guest was started
    guest = int(open(pidfile).read())
    assert not alive(guest), "the guest runs on without ukrun's init: %s" % proc.stderr
    assert proc.returncode == 1 and one_line_error(proc), proc.stderr
    assert "ukrun-init" in proc.stderr


# Found by attack, fixed: ukrun.runner._exec_here imported ukrun.runner (exec_failed) after the
# drop in exec mode dropped: a package root read through its capabilities cannot be imported
# then, so a failed execve ends in 'internal error: ModuleNotFoundError' with exit 1 instead of
# 'executing PROGRAM: Text file busy' and 126 (as at c1283c9)
def test_a_failed_exec_after_the_drop_still_says_why(container, root_only_package,
                                                     busy_program):
    proc = cli(container, root_only_package, "unix", "--init", "never", busy_program,
               wrap=WITHOUT_SETPCAP)
    assert proc.returncode == 126 and one_line_error(proc), proc.stderr
    assert "Text file busy" in proc.stderr


@pytest.mark.parametrize("init", ["never", "always"])
def test_a_failed_exec_with_caps_held_gives_back_from_a_root_only_package(
        init, container, root_only_package, busy_program):
    # Exec modes direct and forked import ukrun.runner while ukrun still holds its
    # capabilities: the same package imports, and the network comes back.
    before = snapshot(container)
    proc = cli(container, root_only_package, "unix", "--init", init, busy_program)
    assert proc.returncode == 126 and one_line_error(proc), proc.stderr
    assert "eth0 was given back" in proc.stderr
    assert snapshot(container) == before


@pytest.mark.parametrize("init", ["never", "always"])
def test_any_open_file_limit_leaves_nothing_and_one_line(init, container, busy_program):
    """RLIMIT_NOFILE from too small to start to enough to reach the (failing) execve: each
    failure, wherever it falls, imports its message code with the fds the run has left."""
    before = snapshot(container)
    reached_exec = False
    for limit in range(4, 16):
        proc = cli(container, os.path.dirname(PACKAGE), "unix", "--init", init, busy_program,
                   wrap=["prlimit", "--nofile=%d" % limit])
        assert proc.returncode != 0 and proc.stderr.startswith("ukrun: error: "), (limit, proc)
        assert len(proc.stderr.splitlines()) == 1, (limit, proc.stderr)
        assert snapshot(container) == before, limit
        reached_exec |= "Text file busy" in proc.stderr
    assert reached_exec, "no limit let the run reach its execve"


def test_a_deleted_working_directory_still_gives_back(container, busy_program):
    # python -m puts the working directory first on sys.path; it is gone when a failure
    # imports its code.
    before = snapshot(container)
    gone = tempfile.mkdtemp(prefix="ukrun-gone-")
    proc = container.exec("sh", "-c", 'cd "$1" && rmdir "$1" && shift && exec "$@"', "sh",
                          gone, sys.executable, "-m", "ukrun", "unix", busy_program, check=False,
                          env=dict(os.environ, PYTHONPATH=os.path.dirname(PACKAGE)))
    assert proc.returncode == 126 and one_line_error(proc), proc.stderr
    assert snapshot(container) == before


# === the stack limit from /proc/self/limits =======================================================

# resource.prlimit takes a C long: limits from 2**63 up cannot be set from Python.
LIMIT = st.one_of(st.just(resource.RLIM_INFINITY), st.integers(0, 2 ** 63 - 1),
                  st.integers(0, 1 << 30))


@settings(max_examples=150, deadline=None)
@given(soft=LIMIT, hard=LIMIT)
def test_soft_limit_reads_what_the_kernel_writes(soft, hard):
    # A process of its own each time: a hard limit once lowered stays so without
    # CAP_SYS_RESOURCE.
    soft, hard = sorted((soft, hard), key=lambda v: (v == resource.RLIM_INFINITY, v))
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        # Until its execve is done: execve puts back the stack limit it started with.
        while open("/proc/%d/stat" % sleeper.pid).read().rsplit(")", 1)[1].split()[0] != "S":
            time.sleep(0.001)
        resource.prlimit(sleeper.pid, resource.RLIMIT_STACK, (soft, hard))
        with open("/proc/%d/limits" % sleeper.pid, "rb") as f:
            text = f.read()
    finally:
        sleeper.kill()
        sleeper.wait()
    got = execrules.soft_limit(text, execrules.STACK_LIMIT_NAME)
    assert got == (-1 if soft == resource.RLIM_INFINITY else soft), text


@given(st.binary(max_size=300) | st.text(max_size=200).map(
    lambda t: ("Max stack size" + t).encode("utf-8", "surrogateescape")))
def test_soft_limit_of_any_bytes_is_a_limit_or_valueerror(text):
    try:
        got = execrules.soft_limit(text, execrules.STACK_LIMIT_NAME)
    except ValueError:
        return
    assert isinstance(got, int) and got >= -1


@pytest.mark.parametrize("fake", ["", "Max stack size            unlimited            unlimited"
                                      "            bytes\n", "garbage\n"],
                         ids=["empty", "unlimited", "garbage"])
def test_a_lying_proc_limits_changes_nothing_or_gives_back(fake, container, shared_dir):
    """/proc/self/limits covered (bind mount) under a 256 KiB stack limit, which leaves execve
    128 KiB for its strings. ukrun's own command line fits; the program's does not, as a
    template makes each {ipv4} of it "172.30.0.2/16". The preflight refuses (it asked
    resource), or it believed the file and the failed execve gives the network back."""
    before = snapshot(container)
    limits = write(shared_dir, "limits", fake, 0o644)
    program = write(shared_dir, "prog", "#!/bin/sh\nexit 0\n")
    argv = [sys.executable, "-m", "ukrun", "unix", "--ip-args", "template", "--ip-template",
            "{ipv4}" * 800, program]
    env = dict(os.environ, PWD="/" * 64)  # room for what sh adds
    strings = [os.fsencode(s) for s in [argv[0]] + argv] + [
        os.fsencode("%s=%s" % item) for item in env.items()]
    used = execrules.exec_bytes(strings, len(argv), len(env), 8)
    big = "x" * (execrules.ARG_MAX - 1024 - used - 8 - 1)
    proc = container.exec("unshare", "-m", "--propagation", "private", "sh", "-c",
                          'ulimit -s 256 && mount --bind "$1" /proc/$$/limits && shift '
                          '&& exec "$@"', "sh", limits, *argv, big, check=False, env=env,
                          cwd=os.path.dirname(PACKAGE))
    assert proc.returncode == 1 and one_line_error(proc), proc.stderr
    if "unlimited" in fake:  # believed: the execve fails and gives the network back
        assert "Argument list too long" in proc.stderr and "given back" in proc.stderr
    else:
        assert "the arguments and environment take" in proc.stderr, proc.stderr
    assert snapshot(container) == before


# === runs without the cycle collector ================================================================

MEASURE = ("import os, sys\npid = os.fork()\nif pid == 0:\n    os.execvp(sys.argv[1], sys.argv[1:])\n"
           "_, status, usage = os.wait4(pid, 0)\nprint(usage.ru_maxrss, "
           "os.waitstatus_to_exitcode(status))")


def peak_kb(container, *argv):
    """The run's peak RSS in KiB (kept across its execve of /bin/true), and its status."""
    deadline = time.monotonic() + 60
    while True:
        proc = container.exec(sys.executable, "-c", MEASURE, *argv, "unix", "--init", "never",
                              "/bin/true", check=False, cwd="/")
        # For some seconds after 1500 links came up the kernel's tables keep changing, and a
        # run refuses its fifth interrupted dump (as at c1283c9): wait that out.
        if "kept changing" not in proc.stderr or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    peak, status = map(int, proc.stdout.split())
    assert status == 0, proc.stderr
    return peak


def test_without_the_cycle_collector_a_crowded_namespace_costs_no_more(container, ukrun_exe,
                                                                      shared_dir):
    """1500 links with 250-byte aliases, an IPv6 address each, a route each in main and in one
    of fifty other tables: a run reads them all. Without the collector its peak must not grow
    past a run with it (measured: ~33 MiB more than an empty namespace either way, 1 MiB less
    than c1283c9)."""
    lines = []
    for i in range(1500):
        lines += ["link add d%d type bridge" % i,
                  "link set d%d alias %s%d up" % (i, "a" * 250, i),
                  "addr add fd00:%x::1/64 dev d%d nodad" % (i, i),
                  "route add fd01:%x::/64 dev d%d table %d" % (i, i, 100 + i % 50),
                  "route add fd02:%x::/64 dev d%d" % (i, i)]
    batch = write(shared_dir, "batch", "\n".join(lines) + "\n", 0o644)
    container.ip("-batch", batch)
    with_gc = [sys.executable, "-c", "import sys; from ukrun.cli import main; sys.exit(main())"]
    # Interleaved, the least of three each: a run whose dumps were interrupted (the kernel
    # still settling) holds two copies for a moment, with or without the collector.
    peaks = [(peak_kb(container, ukrun_exe), peak_kb(container, *with_gc)) for _ in range(3)]
    off, on = min(p[0] for p in peaks), min(p[1] for p in peaks)
    assert off <= on * 1.05 + 1024, (off, on)


# === netlink replies read in part ===================================================================

class _Replies:
    """A netlink socket that answers each request with the next of ``chunks``."""

    def __init__(self, chunks):
        self.chunks = list(chunks)

    def send(self, data):
        return len(data)

    def recv_into(self, buf, size, flags):
        return len(self.chunks[0]) if self.chunks else 0

    def recv(self, size):
        if not self.chunks:
            raise NetlinkError(0, "no more answers")  # where the kernel would block
        return self.chunks.pop(0)

    def close(self):
        pass


def _frame(messages, seq):
    out = b""
    for type_, flags, body in messages:
        length = 16 + len(body)
        out += struct.pack("=IHHII", length, type_, flags, seq, 0) + body
        out += b"\0" * (NLMSG_ALIGN(length) - length)
    return out


_KINDS = [lib.NLMSG_ERROR, lib.NLMSG_DONE, lib.NLMSG_NOOP, lib.RTM_NEWROUTE, lib.RTM_NEWLINK,
          lib.RTM_NEWADDR, lib.RTM_NEWQDISC, lib.RTM_NEWTFILTER]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_KINDS), st.integers(0, 0xFFFF),
                          st.binary(max_size=80)), max_size=6),
       st.sampled_from(["routes", "links", "addresses", "qdiscs", "link", "filters"]))
def test_forged_answers_raise_only_netlink_errors(messages, query):
    """Whatever answers a request (the right sequence number, any types and bodies), a
    query returns or raises NetlinkError / NetlinkParseError: acks read for their error
    alone, replies as tuples, other tables skipped before decoding."""
    rtnl = Rtnl.__new__(Rtnl)
    rtnl._sock = _Replies([_frame(messages, 1)])
    rtnl._seq, rtnl._abandoned, rtnl._peek = 0, False, bytearray(1)
    calls = {"routes": lambda: rtnl.routes(table=lib.RT_TABLE_MAIN),
             "link": lambda: rtnl.link("eth0"), "filters": lambda: rtnl.filters(3)}
    try:
        calls.get(query, getattr(rtnl, query))()
    except (NetlinkError, NetlinkParseError):
        pass


# === images: the -S given back ======================================================================

def from_base_step(context):
    """The RUN a --from image runs first, as ukrun dockerfile writes it."""
    shutil.copy("/bin/true", os.path.join(context, "app"))
    cwd = os.getcwd()
    os.chdir(context)
    try:
        text = docker_build.dockerfile("unix", "app", base="me/ukrun:1")
    finally:
        os.chdir(cwd)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("RUN "))
    end = next(i for i in range(start, len(lines)) if not lines[i].endswith("\\"))
    return "\n".join(lines[start:end + 1])[len("RUN "):]


# Found by attack, fixed: docker._no_site appended ' -S' whatever the first line's length: an
# interpreter path of 251 bytes makes it 257 with its newline, the kernel reads 256
# (BINPRM_BUF_SIZE) and passes the cut argument '-', so python reads its program from stdin and
# the image's ukrun does nothing (at 123 bytes the same on kernels before 5.1, whose buffer is
# 128); pip's line without the -S runs
def test_the_s_given_back_never_cuts_the_first_line(tmp_path):
    interpreter_dir = tmp_path / ("d" * (251 - len(str(tmp_path)) - len("//python3")))
    interpreter_dir.mkdir()
    python = interpreter_dir / "python3"
    os.symlink(sys.executable, python)
    assert len(str(python)) == 251
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "ukrun"
    script.write_text("#!%s\nprint('the script ran')\n" % python)  # as pip writes it
    script.chmod(0o755)
    ran = subprocess.run([str(script)], input="print('stdin ran')\n", capture_output=True,
                         text=True, timeout=30)
    assert ran.stdout == "the script ran\n", ran  # pip's line works
    step = subprocess.run(["/usr/bin/dash", "-c", from_base_step(str(tmp_path))], capture_output=True,
                          text=True, timeout=30, env={"PATH": "%s:/usr/bin:/bin" % bin_dir})
    ran = subprocess.run([str(script)], input="print('stdin ran')\n", capture_output=True,
                         text=True, timeout=30)
    # The build may stop (one line), or edit the line into one the kernel reads whole.
    if step.returncode != 0:
        assert step.stderr.startswith("ukrun: error: "), step
        return
    assert ran.stdout == "the script ran\n", (script.read_text().splitlines()[0][-8:], ran)
