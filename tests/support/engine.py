"""A real Docker engine for the tests: Debian's dockerd, inside a network namespace the test makes.

    engine = Engine.start(workdir)     # raises EngineUnavailable with dockerd's own error
    engine.docker("run", ...)          # every call goes to this engine's socket only
    engine.stop()                      # containers, dockerd, namespace, directories

dockerd runs as `ip netns exec NS tests/support/engine/in-cgroups dockerd ...`, so docker0 and every
container's veth live in NS and nothing reaches the machine's own namespace. Its bridge and
address pools are inside 172.30.0.0/16; its DNS server is its own bridge address, where nothing
listens, so a resolver inside a container fails at once instead of trying the machine's.

Images: no registry is reachable, so the base ``local/debian:bookworm`` is a debootstrap rootfs
(`docker import`), cached as a tarball in .cache/engine/ under a key made of everything that
went into it. Python wheels come from the host: ukrun's, built from this tree, and cffi's and
pycparser's, the versions this venv runs (a manylinux cp311 wheel loads in bookworm's python3).
"""
import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from nsutil import Netns, run, unique
from wheelutil import build_wheel

from tree import ROOT, SUPPORT as HERE
CACHE = os.path.join(ROOT, ".cache", "engine")
WRAPPER = os.path.join(HERE, "engine", "in-cgroups")

BASE_IMAGE = "local/debian:bookworm"
SUITE = "bookworm"
# What the images need offline: examples/debian's two stages install python3, python3-venv,
# python3-dev, gcc, libc6-dev and libffi-dev (apt-get finds them already there), the qemu
# target needs QEMU, and a client container needs ping.
BASE_PACKAGES = ("python3", "python3-venv", "python3-dev", "gcc", "libc6-dev", "libffi-dev",
                 "qemu-system-x86", "iputils-ping")
# Left out of the tarball, as debian:bookworm-slim leaves them out (and debootstrap's .debs).
BASE_EXCLUDES = ("./var/cache/apt/archives/*.deb", "./var/lib/apt/lists/*", "./usr/share/doc/*",
                 "./usr/share/man/*", "./usr/share/info/*", "./usr/share/locale/*")
BASE_CHANGES = ("ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                'CMD ["bash"]')
WHEEL_DEPENDENCIES = ("cffi", "pycparser")

BRIDGE_CIDR = "172.30.0.1/24"
ADDRESS_POOL = "base=172.30.0.0/16,size=24"
START_SECONDS = 60
STOP_SECONDS = 20


class EngineUnavailable(Exception):
    """dockerd cannot run here; the message is what it (or the install check) said."""


def missing_tools():
    """What is not installed of what the engine tests need, as one line, or None."""
    dockerd = shutil.which("dockerd")
    cli = os.path.join(os.path.dirname(dockerd), "docker") if dockerd else None
    missing = [name for name, path in (("dockerd", dockerd), ("debootstrap",
                                       shutil.which("debootstrap")), ("unshare",
                                       shutil.which("unshare"))) if not path]
    if dockerd and not os.path.exists(cli) and not shutil.which("docker", path="/usr/bin"):
        missing.append("docker")
    if missing:
        return "%s not installed: make sysdeps (apt-get install docker.io debootstrap)" % \
            ", ".join(missing)
    return None


def docker_cli():
    """The docker CLI of the same package as dockerd (another one may come first on PATH)."""
    beside = os.path.join(os.path.dirname(shutil.which("dockerd")), "docker")
    return beside if os.path.exists(beside) else "/usr/bin/docker"


def dockerd_error(log_text):
    """dockerd's own reason for stopping: its fatal line, else the log's last line."""
    lines = [l.strip() for l in log_text.splitlines() if l.strip()]
    # In order of preference: the daemon's fatal line, a flag error (cobra's "Status: ..."
    # comes before its "See 'dockerd --help'" line), any error it logged.
    for marker in ("level=fatal", "failed to start daemon", "Error starting daemon", "Status:",
                   "level=error"):
        hits = [l for l in lines if marker in l]
        if hits:
            return hits[-1]
    return lines[-1] if lines else "no output"


class Engine:
    """One dockerd in its own namespace and directories; see the module docstring."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.ns = None
        self.proc = None
        self.cli = docker_cli()
        self.sock = os.path.join(workdir, "docker.sock")
        self.log = os.path.join(workdir, "dockerd.log")
        self.cgroup_parent = "/" + os.path.basename(workdir)

    @classmethod
    def start(cls, workdir):
        engine = cls(workdir)
        try:
            engine._start()
        except BaseException:
            engine.stop()
            raise
        return engine

    def _start(self):
        self.ns = Netns(unique("ukde"))
        for name in ("data", "exec"):
            os.makedirs(os.path.join(self.workdir, name))
        argv = ["ip", "netns", "exec", self.ns.name, WRAPPER, "dockerd",
                "--data-root", os.path.join(self.workdir, "data"),
                "--exec-root", os.path.join(self.workdir, "exec"),
                "--pidfile", os.path.join(self.workdir, "dockerd.pid"),
                "-H", "unix://" + self.sock, "--storage-driver", "vfs",
                "--iptables=false", "--ip6tables=false", "--ip-masq=false",
                "--userland-proxy=false", "--bip", BRIDGE_CIDR,
                "--default-address-pool", ADDRESS_POOL, "--dns", BRIDGE_CIDR.split("/")[0],
                "--cgroup-parent", self.cgroup_parent]
        with open(self.log, "wb") as log:
            # Its own session: a ^C in pytest reaches pytest, which then stops it in order.
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineUnavailable("dockerd exited (%d): %s"
                                        % (self.proc.returncode, dockerd_error(self.log_text())))
            if os.path.exists(self.sock) and self.docker("version", check=False,
                                                         timeout=10).returncode == 0:
                return
            time.sleep(0.2)
        raise EngineUnavailable("dockerd did not answer within %ds: %s"
                                % (START_SECONDS, dockerd_error(self.log_text())))

    def log_text(self):
        with open(self.log, errors="replace") as fh:
            return fh.read()

    def docker(self, *args, check=True, timeout=120, **kw):
        """`docker -H unix://SOCK ARGS` (the legacy builder: BuildKit needs more than vfs)."""
        env = dict(os.environ, DOCKER_BUILDKIT="0", DOCKER_CLI_HINTS="false")
        env.pop("DOCKER_HOST", None)
        return run(self.cli, "-H", "unix://" + self.sock, *args, check=check, timeout=timeout,
                   env=env, **kw)

    def has_image(self, tag):
        return self.docker("image", "inspect", tag, check=False).returncode == 0

    def build(self, tag, context, dockerfile_text, timeout=600):
        """Build TAG from DOCKERFILE_TEXT (written into CONTEXT). RUN steps get no network."""
        path = os.path.join(context, "Dockerfile")
        with open(path, "w") as fh:
            fh.write(dockerfile_text)
        self.docker("build", "--network", "none", "-q", "-t", tag, "-f", path, context,
                    timeout=timeout)
        return tag

    def import_base(self, tarball, tag=BASE_IMAGE):
        changes = [word for change in BASE_CHANGES for word in ("-c", change)]
        with open(tarball, "rb") as fh:
            self.docker("import", *changes, "-", tag, stdin=fh, capture_output=True,
                        text=False, timeout=600)
        return tag

    # ---- teardown, in an order that cannot leave anything behind ----

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                ids = self.docker("ps", "-aq", timeout=30).stdout.split()
                if ids:
                    self.docker("rm", "-f", *ids, timeout=120, check=False)
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=STOP_SECONDS)
        self._kill_cgroup_members()
        if self.ns is not None:
            self.ns.delete()   # containerd and shims live in NS: killed there
        self._remove_workdir()

    def _signal(self, sig):
        # Popen's pid is dockerd's: ip netns exec, unshare and sh each exec the next.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)

    def _kill_cgroup_members(self):
        """Container processes dockerd did not stop (it was killed): every one is in a cgroup
        under our --cgroup-parent, in the machine's pids hierarchy."""
        top = os.path.join("/sys/fs/cgroup/pids", self.cgroup_parent.lstrip("/"))
        for _ in range(20):
            pids = []
            for dirpath, _, files in os.walk(top):
                if "cgroup.procs" in files:
                    with open(os.path.join(dirpath, "cgroup.procs")) as fh:
                        pids += [int(p) for p in fh.read().split()]
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for hierarchy in os.listdir("/sys/fs/cgroup") if os.path.isdir(top) else ():
            path = os.path.join("/sys/fs/cgroup", hierarchy, self.cgroup_parent.lstrip("/"))
            for dirpath, _, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)

    def _remove_workdir(self):
        with open("/proc/self/mountinfo") as fh:
            mounted = [l.split()[4] for l in fh if l.split()[4].startswith(self.workdir + "/")]
        # dockerd's mounts live in the wrapper's mount namespace and go with its processes;
        # one visible here would make rm -rf reach into whatever is mounted there.
        for point in sorted(mounted, key=len, reverse=True):
            run("umount", "-l", point, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)


# ---- the base image's rootfs, cached ----

def base_key():
    words = [SUITE, "minbase", ",".join(BASE_PACKAGES), " ".join(BASE_EXCLUDES), "v2"]
    return hashlib.sha256("\n".join(words).encode()).hexdigest()[:16]


def base_tarball(log=print):
    """The cached rootfs tarball of BASE_IMAGE, made with debootstrap when missing."""
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, "debian-%s-%s.tar" % (SUITE, base_key()))
    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # two sessions building it at once would collide
        if os.path.exists(path):
            return path
        tree = tempfile.mkdtemp(prefix="rootfs-", dir=CACHE)
        os.chmod(tree, 0o755)   # it becomes the image's /: mkdtemp's 0700 shuts out non-root users
        try:
            log("engine: debootstrap %s (%s)" % (SUITE, ", ".join(BASE_PACKAGES)))
            proc = run("debootstrap", "--variant=minbase",
                       "--include=" + ",".join(BASE_PACKAGES), SUITE, tree, check=False,
                       timeout=1200)
            if proc.returncode != 0:
                raise RuntimeError("debootstrap failed (%d): %s" % (
                    proc.returncode, (proc.stdout + proc.stderr).strip().splitlines()[-1:]))
            excludes = ["--exclude=" + pattern for pattern in BASE_EXCLUDES]
            run("tar", "-C", tree, "--numeric-owner", *excludes, "-cf", path + ".tmp", ".",
                timeout=600)
            os.replace(path + ".tmp", path)   # whole or not at all
        finally:
            shutil.rmtree(tree, ignore_errors=True)
        for name in os.listdir(CACHE):
            if name.startswith("debian-") and os.path.join(CACHE, name) != path:
                os.unlink(os.path.join(CACHE, name))
        return path


# ---- wheels for the images ----

def wheels(dest):
    """DEST/ with ukrun's wheel built from this tree and its dependencies' wheels."""
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ukrun-wheel-") as tmp:
        shutil.copy(build_wheel(tmp), dest)
    cached = os.path.join(CACHE, "wheels")
    os.makedirs(cached, exist_ok=True)
    for name in WHEEL_DEPENDENCIES:
        version = importlib.metadata.version(name)
        prefix = "%s-%s-" % (name, version)
        if not any(f.startswith(prefix) for f in os.listdir(cached)):
            run(sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                "--only-binary=:all:", "-d", cached, "%s==%s" % (name, version), timeout=300)
        for f in os.listdir(cached):
            if f.startswith(prefix) and f.endswith(".whl"):
                shutil.copy(os.path.join(cached, f), dest)
    return dest


# ---- the images the tests run, built once per session and only when a test asks ----

EXAMPLE_IMAGE = "ukrun-test/debian-example"
IMAGE_PYTHON = "/opt/ukrun/bin/python3"   # the examples' venv: ukrun._core imports there
IMAGE_UKRUN = "/opt/ukrun/bin/ukrun"      # the script pip installed there
EXAMPLE_BASE = "debian:bookworm-slim"


def adapt_debian_example(text, base=BASE_IMAGE, wheels_dir="wheels"):
    """examples/debian/Dockerfile with FROM on BASE and ukrun's wheel from the build context.

    Nothing else changes: its apt-get lines stay (the base already holds their packages, so
    they pass offline). Raises ValueError when the example no longer has the lines replaced.
    """
    out, replaced = [], {"from": 0, "sdist": 0, "pip wheel": 0}
    for line in text.splitlines():
        if line.startswith("FROM " + EXAMPLE_BASE):
            line = "FROM " + base + line[len("FROM " + EXAMPLE_BASE):]
            replaced["from"] += 1
        elif line.startswith("COPY [\"ukrun-") and ".tar.gz" in line:
            line = "COPY [%s, \"/wheels\"]" % ('"%s"' % wheels_dir)
            replaced["sdist"] += 1
        elif "/bin/pip wheel " in line:
            replaced["pip wheel"] += 1
            continue
        out.append(line)
    if replaced != {"from": 2, "sdist": 1, "pip wheel": 1}:
        raise ValueError("examples/debian/Dockerfile changed shape: replaced %s" % replaced)
    return "\n".join(out) + "\n"


def write_program(path, text):
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o755)
    return path


def stand_in_guest(directory, name, source):
    """SOURCE (a Python guest) as DIRECTORY/NAME, run by the image's venv python."""
    with open(source) as fh:
        body = fh.read()
    return write_program(os.path.join(directory, name), "#!%s\n%s" % (IMAGE_PYTHON, body))


class Images:
    """Image tags by name (``images["spt"]``), each built on first use from what ukrun ships:
    the adapted Debian example, and `ukrun dockerfile TARGET --from` that example."""

    def __init__(self, engine, workdir, log=print):
        self.engine, self.workdir, self.log = engine, workdir, log
        self.tags = {}
        self.seconds = {}

    def __getitem__(self, name):
        if name not in self.tags:
            began, before = time.monotonic(), sum(self.seconds.values())
            self.tags[name] = getattr(self, "_" + name.replace("-", "_"))()
            # Its own time: less the images it was built on, when they were built for it.
            own = time.monotonic() - began - (sum(self.seconds.values()) - before)
            self.seconds[name] = round(own, 1)
            self.log("engine: image %s built in %.1fs" % (name, own))
        return self.tags[name]

    def context(self, name):
        path = os.path.join(self.workdir, name)
        os.makedirs(path)
        return path

    def _base(self):
        return self.engine.import_base(base_tarball(self.log))

    def _example(self):
        from guests import UGUEST_SOURCE, install_dummy_unikernel

        self["base"]
        ctx = self.context("example")
        wheels(os.path.join(ctx, "wheels"))
        stand_in_guest(ctx, "solo5-hvt", UGUEST_SOURCE)
        install_dummy_unikernel(ctx, "www.hvt")
        with open(os.path.join(ROOT, "examples", "debian", "Dockerfile")) as fh:
            text = adapt_debian_example(fh.read())
        return self.engine.build(EXAMPLE_IMAGE, ctx, text)

    def generated(self, name, target, files, options=(), args=(), extra="", base="example"):
        """`ukrun dockerfile TARGET --from BASE OPTIONS UNIKERNEL ARGS` (+ EXTRA lines).

        FILES are (name, function writing it at a path) for the context; the last one is the
        unikernel. BASE names another image here, with ukrun installed."""
        base = self[base]
        ctx = self.context(name)
        paths = [make(os.path.join(ctx, f)) for f, make in files]
        proc = run(sys.executable, "-m", "ukrun", "dockerfile", target, "--from", base,
                   "--context", ctx, *options, paths[-1], *args, cwd=ctx)
        return self.engine.build("ukrun-test/" + name, ctx, proc.stdout + extra)

    def _unix(self, wiring="tc"):
        from guests import UGUEST_SOURCE

        return self.generated("unix-" + wiring, "unix", [
            ("uguest", lambda p: stand_in_guest(*os.path.split(p), UGUEST_SOURCE))],
            options=["--run-option=--wiring=" + wiring])

    def _unix_bridge(self):
        return self._unix("bridge")

    def _spt(self, base="example"):
        from guests import UGUEST_SOURCE, install_dummy_unikernel

        return self.generated("spt" if base == "example" else "spt-" + base, "spt", [
            ("solo5-spt", lambda p: stand_in_guest(*os.path.split(p), UGUEST_SOURCE)),
            ("www.spt", lambda p: install_dummy_unikernel(*os.path.split(p)))],
            options=["--tender", "solo5-spt"], base=base)

    def _plain(self):
        """The example with ukrun's first line put back as pip wrote it, "#!IMAGE_PYTHON": a
        base whose ukrun pip installed and no one has edited since."""
        return self.engine.build("ukrun-test/plain", self.context("plain"), (
            "FROM %s\nRUN sed -i '1s|^#!%s -S$|#!%s|' %s && head -n 1 %s | grep -qx '#!%s'\n"
            % (self["example"], IMAGE_PYTHON, IMAGE_PYTHON, IMAGE_UKRUN, IMAGE_UKRUN,
               IMAGE_PYTHON)))

    def _spt_plain(self):
        return self._spt(base="plain")

    def _pinger(self):
        """Built on the unix image, whose /unikernel/uguest it loads. It installs no signal
        handler: SIGTERM's default action ends it."""
        with open(os.path.join(HERE, "engine", "pinger.py")) as fh:
            source = fh.read()
        return self.generated("pinger", "unix", [
            ("pinger", lambda p: write_program(p, "#!%s\n%s" % (IMAGE_PYTHON, source)))],
            base="unix")

    def _qemu(self):
        """The Linux VM guest; its initrd needs one more COPY, which ukrun dockerfile has no
        option for (--tender-arg=-initrd names the file; the image must hold it)."""
        from guests import vm_guest

        vm = vm_guest()
        return self.generated("qemu", "qemu", [
            ("initrd.gz", lambda p: shutil.copy(vm["initrd"], p)),
            ("vmlinuz", lambda p: shutil.copy(vm["kernel"], p))],
            options=["--run-option=--mem=256", "--run-option=--tender-arg=-initrd",
                     "--run-option=--tender-arg=/unikernel/initrd.gz"],
            args=["console=ttyS0", "quiet"],
            extra='COPY ["initrd.gz", "/unikernel/initrd.gz"]\n')
