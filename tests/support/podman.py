"""Debian's podman 4.3 for the tests, rootful and rootless, inside network namespaces they make.

    root = Podman.rootful(workdir)              # as root
    user = Podman.rootless(workdir, uid=1000)   # as a user with subordinate ids: slirp4netns
    root.podman("run", ...)                     # this podman's configuration and storage only
    root.stop()                                 # containers, namespace, cgroups, files

What this machine needs (DESIGN.md, "Podman runs here too"): ``nsenter --net=/run/netns/NS
podman`` (``ip netns exec`` gives a fresh /sys without the cgroup mounts runc looks for); a
private containers.conf whose default_ulimits stay within the hard limits (root here lacks
CAP_SYS_RESOURCE); vfs storage under a private root; file locks instead of
/dev/shm/libpod_lock, and a cgroup parent of its own instead of /libpod_parent, so that
nothing of it outlives stop(). Podman 4.3 as root still writes /run/containers/networks and
/var/lib/containers/cache: stop() removes what of them was not there before.

Rootless: every call runs in a private mount namespace where /etc is an overlay that adds the
user's /etc/subuid and /etc/subgid lines (the machine's /etc is not changed) and /dev/net/tun is
a node of the test's open to everyone (the machine's is root's, 0600: slirp4netns opens it as
the user, and a container's --device is that node), then as the user (setpriv), with HOME and
XDG_RUNTIME_DIR in the workdir. slirp4netns runs in NS, so NS plays the user's own network.

Images: ``build`` and ``import_base`` take what the Docker engine's take, so engine.Images
builds the same images here. ``image_archive`` keeps one as ``podman save`` wrote it in
.cache/podman/, under a key of everything that went into it (ukrun's sources, the example,
the guest, the base's key), and ``load`` gives it to any Podman, rootless ones included.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import resource
import shutil
import signal

from cgroups import kill_and_remove
from engine import BASE_CHANGES, BASE_IMAGE, Images, base_key, remove_workdir
from nsutil import Netns, run, unique
from tree import ROOT, SUPPORT
from wheelutil import BUILT, SOURCES

CACHE = os.path.join(ROOT, ".cache", "podman")

PODMAN = "/usr/bin/podman"
RUNTIME = "runc"   # Debian's runc 1.1.5; crun is not installed here
# What podman 4.3 as root writes outside its configured roots, deepest first.
MACHINE_LEFTOVERS = ("/run/containers/networks", "/run/containers",
                     "/var/lib/containers/cache", "/var/lib/containers")
SUBORDINATE_IDS = (100000, 65536)   # the rootless user's range: first id, count
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def missing_tools(rootless=False):
    """Why the podman tests cannot run here (one line), or None."""
    tools = ["podman", "conmon", "runc", "netavark", "nsenter", "debootstrap"]
    if rootless:
        tools += ["slirp4netns", "newuidmap", "newgidmap", "setpriv", "unshare"]
    found = {t: shutil.which(t) or shutil.which(t, path="/usr/lib/podman") for t in tools}
    missing = [t for t, path in found.items() if not path]
    if missing:
        return "%s not installed: make sysdeps (apt-get install podman netavark uidmap " \
               "slirp4netns)" % ", ".join(missing)
    return None


def ulimits():
    """["nofile=N:N", "nproc=M:M"] within this process's hard limits (podman's defaults exceed
    them): containers.conf's default_ulimits, and ``podman build --ulimit`` (RUN steps do not
    read that key). nproc also stays at kernel.pid_max: podman's runc is refused above it here
    (checked: 32768 passes, 65536 does not, under a hard limit of 96367)."""
    with open("/proc/sys/kernel/pid_max") as fh:
        pid_max = int(fh.read())
    words = []
    for name, which, most in (("nofile", resource.RLIMIT_NOFILE, None),
                              ("nproc", resource.RLIMIT_NPROC, pid_max)):
        hard = resource.getrlimit(which)[1]
        value = min(v for v in (hard, most) if v is not None and v != resource.RLIM_INFINITY)
        words.append("%s=%d:%d" % (name, value, value))
    return words


def write_config(conf, storage, runroot, tmp, networks):
    """containers.conf and storage.conf in CONF; returns the environment that names them."""
    os.makedirs(conf, exist_ok=True)
    containers = os.path.join(conf, "containers.conf")
    with open(containers, "w") as fh:
        fh.write('[containers]\ndefault_ulimits = %s\n\n'
                 '[network]\nnetwork_backend = "netavark"\nnetwork_config_dir = "%s"\n\n'
                 '[engine]\nruntime = "%s"\ncgroup_manager = "cgroupfs"\n'
                 'events_logger = "file"\nlock_type = "file"\ntmp_dir = "%s"\n'
                 % (json.dumps(ulimits()), networks, RUNTIME, tmp))
    storage_conf = os.path.join(conf, "storage.conf")
    with open(storage_conf, "w") as fh:
        fh.write('[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"\n'
                 % (storage, runroot))
    for path in (containers, storage_conf):
        os.chmod(path, 0o644)
    return {"CONTAINERS_CONF": containers, "CONTAINERS_STORAGE_CONF": storage_conf}


class Podman:
    """One podman (its configuration, storage and namespace NS); see the module docstring."""

    def __init__(self, workdir, uid=None):
        self.workdir, self.uid = workdir, uid
        self.ns = None
        self.hooks_dir = os.path.join(workdir, "hooks")   # --hooks-dir: only the test's hooks
        self.cgroup_parent = None if uid is not None else "/" + os.path.basename(workdir)
        self.leftovers = [] if uid is not None else [
            p for p in MACHINE_LEFTOVERS if not os.path.exists(p)]
        self.env = {}
        self.prefix = []
        self.loaded = {}   # archive path -> the image's name here

    @classmethod
    def rootful(cls, workdir):
        return cls._started(cls(workdir))

    @classmethod
    def rootless(cls, workdir, uid):
        return cls._started(cls(workdir, uid))

    @classmethod
    def _started(cls, podman):
        try:
            podman._prepare()
        except BaseException:
            podman.stop()
            raise
        return podman

    def _prepare(self):
        os.chmod(self.workdir, 0o755)   # the rootless user walks through it
        self.ns = Netns(unique("ukpd"))
        os.makedirs(self.hooks_dir, mode=0o755)
        if self.uid is None:
            self.env = write_config(*(os.path.join(self.workdir, d)
                                      for d in ("conf", "storage", "run", "tmp", "networks")))
            self.prefix = ["nsenter", "--net=/run/netns/" + self.ns.name]
            return
        home, runtime = self._user_dir("home", 0o755), self._user_dir("run", 0o700)
        self.env = write_config(os.path.join(self.workdir, "conf"), os.path.join(home, "storage"),
                                os.path.join(runtime, "storage"), os.path.join(runtime, "tmp"),
                                os.path.join(home, "networks"))
        self.env.update(HOME=home, XDG_RUNTIME_DIR=runtime, PATH=PATH)
        self.prefix = self._rootless_prefix()

    def _user_dir(self, name, mode):
        path = os.path.join(self.workdir, name)
        os.makedirs(path, mode=mode)
        os.chown(path, self.uid, self.uid)
        os.chmod(path, mode)
        return path

    def _rootless_prefix(self):
        """unshare -m ... sh -c SCRIPT: the private mounts, then nsenter and setpriv (see the
        module docstring); "$@" is the podman command line."""
        upper, work = os.path.join(self.workdir, "etc"), os.path.join(self.workdir, "etc-work")
        os.makedirs(upper, mode=0o755)
        os.makedirs(work, mode=0o755)
        for name in ("subuid", "subgid"):
            with open(os.path.join(upper, name), "w") as fh:
                fh.write("%d:%d:%d\n" % (self.uid, *SUBORDINATE_IDS))   # subuid(5): UID or name
            os.chmod(os.path.join(upper, name), 0o644)
        tun = os.path.join(self.workdir, "tun")
        os.mknod(tun, 0o20666, os.makedev(10, 200))
        os.chmod(tun, 0o666)
        env = ["%s=%s" % item for item in sorted(self.env.items())]
        script = ("set -e; mount -t overlay ukrun-etc -o lowerdir=/etc,upperdir=%s,workdir=%s "
                  "/etc; mount --bind %s /dev/net/tun; mount --make-rshared /; exec \"$@\""
                  % (upper, work, tun))
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "rootless",
                "nsenter", "--net=/run/netns/" + self.ns.name, "setpriv", "--reuid",
                str(self.uid), "--regid", str(self.uid), "--clear-groups", "env", "-i", *env]

    def podman(self, *args, check=True, timeout=120, **kw):
        """``podman --hooks-dir HOOKS ARGS`` with this podman's configuration, in NS."""
        env = dict(os.environ, **self.env) if self.uid is None else None
        return run(*self.prefix, PODMAN, "--hooks-dir", self.hooks_dir, *args, check=check,
                   timeout=timeout, env=env, **kw)

    def start(self, *args):
        """``podman run -d ARGS`` (rootful: under this podman's cgroup parent); the id."""
        parent = ["--cgroup-parent", self.cgroup_parent] if self.cgroup_parent else []
        return self.podman("run", "-d", *parent, *args).stdout.strip()

    # ---- what engine.Images asks of an engine ----

    def has_image(self, tag):
        return self.podman("image", "exists", tag, check=False).returncode == 0

    def build(self, tag, context, dockerfile_text, timeout=600):
        """Build TAG from DOCKERFILE_TEXT (written into CONTEXT). RUN steps get no network."""
        path = os.path.join(context, "Dockerfile")
        with open(path, "w") as fh:
            fh.write(dockerfile_text)
        parent = ["--cgroup-parent", self.cgroup_parent] if self.cgroup_parent else []
        limits = [word for limit in ulimits() for word in ("--ulimit", limit)]
        self.podman("build", "--network", "none", *parent, *limits, "-q", "-t", tag, "-f", path,
                    context, timeout=timeout)
        return tag

    def import_base(self, tarball, tag=BASE_IMAGE):
        changes = [word for change in BASE_CHANGES for word in ("--change", change)]
        self.podman("import", "-q", *changes, tarball, tag, timeout=600)
        return tag

    def load(self, archive):
        """The image in ARCHIVE (podman save's), loaded; its name. The archive is read as
        standard input, so a rootless podman needs no access to where it lies."""
        if archive in self.loaded:   # built here
            return self.loaded[archive]
        with open(archive, "rb") as fh:
            out = self.podman("load", stdin=fh, timeout=600).stdout
        (name,) = [l.split(": ", 1)[1] for l in out.splitlines() if l.startswith("Loaded image")]
        self.loaded[archive] = name
        return name

    # ---- teardown, in an order that leaves nothing behind ----

    def stop(self):
        if self.prefix:
            with contextlib.suppress(Exception):
                self.podman("rm", "-af", "-t", "0", timeout=120, check=False)
        if self.uid is not None:
            self._kill_pause_process()
        if self.ns is not None:
            self.ns.delete()   # conmon, slirp4netns and the rootless pause process live in NS
        if self.cgroup_parent:
            kill_and_remove(self.cgroup_parent)
        remove_workdir(self.workdir)
        for path in self.leftovers:   # deepest first: a parent goes only once empty
            if path.endswith(("/networks", "/cache")):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.rmdir(path)

    def _kill_pause_process(self):
        pidfile = os.path.join(self.workdir, "run", "tmp", "pause.pid")   # in tmp_dir
        with contextlib.suppress(OSError, ValueError):
            with open(pidfile) as fh:
                os.kill(int(fh.read().strip()), signal.SIGKILL)


# ---- images, built once per tree and kept ----

def image_key():
    """A digest of every file an engine.Images image is made of, and of the base's key."""
    digest = hashlib.sha256(base_key().encode())
    paths = [os.path.join(ROOT, "examples", "debian", "Dockerfile"),
             os.path.join(SUPPORT, "engine.py")]
    for top in [os.path.join(ROOT, name) for name in SOURCES] + [os.path.join(SUPPORT, "guests")]:
        for dirpath, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d not in BUILT(dirpath, dirs))
            paths += [os.path.join(dirpath, f) for f in sorted(files)
                      if f not in BUILT(dirpath, files)]
        if os.path.isfile(top):
            paths.append(top)
    for path in paths:
        digest.update(os.path.relpath(path, ROOT).encode() + b"\0")
        with open(path, "rb") as fh:
            digest.update(hashlib.sha256(fh.read()).digest())
    return digest.hexdigest()[:16]


def image_archive(rootful, name, log=print):
    """The path of engine.Images' image NAME as ``podman save`` wrote it, in .cache/podman/;
    built by ROOTFUL (which then holds it too) when this tree has not built it before."""
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, "%s-%s.tar" % (name, image_key()))
    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # two sessions building it at once would collide
        if os.path.exists(path):
            return path
        images = Images(rootful, os.path.join(rootful.workdir, "contexts-" + name), log)
        tag = images[name]
        rootful.podman("save", "-q", "-o", path + ".tmp", tag, timeout=600)
        rootful.loaded[path] = tag
        os.replace(path + ".tmp", path)   # whole or not at all
        for other in os.listdir(CACHE):
            if other.startswith(name + "-") and os.path.join(CACHE, other) != path:
                os.unlink(os.path.join(CACHE, other))
    return path
