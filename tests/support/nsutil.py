"""Network namespaces for tests: docker-like containers, never the machine's own namespace.

Every namespace made here has a unique name (``ukt<pid>x<n>...``) and is removed by the
fixture that made it, together with any process still running inside.
"""
import contextlib
import ctypes
import itertools
import json
import os
import signal
import subprocess
import time

_libc = ctypes.CDLL(None, use_errno=True)
_counter = itertools.count()


def unique(prefix):
    return "%s%dx%d" % (prefix, os.getpid(), next(_counter))


def run(*argv, check=True, **kw):
    """Run a command, returning CompletedProcess with text output."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 60)
    proc = subprocess.run([str(a) for a in argv], **kw)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d): %s%s" % (" ".join(map(str, argv)), proc.returncode,
                                                      proc.stdout, proc.stderr))
    return proc


def kvm_usable():
    """Whether this process can open /dev/kvm read-write (hvt, ukvm and kvm need it)."""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
        return True
    except OSError:
        return False


def _setns(fd):
    import sysheaders

    if _libc.setns(fd, sysheaders.lib.CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), "setns")


@contextlib.contextmanager
def in_netns(name):
    """Run the body with this thread in namespace ``name``; sockets made inside stay there."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open("/run/netns/%s" % name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            try:
                _setns(own)
            except OSError:
                # Going on would run later tests in a test namespace, or worse.
                os._exit(99)
    finally:
        os.close(own)
        os.close(target)


class Netns:
    def __init__(self, name):
        self.name = name
        run("ip", "netns", "add", name)
        self.ip("link", "set", "lo", "up")

    def ip(self, *args, check=True):
        return run("ip", "-n", self.name, *args, check=check)

    def ip_json(self, *args):
        out = run("ip", "-j", "-n", self.name, *args).stdout
        return json.loads(out) if out.strip() else []

    def exec(self, *argv, **kw):
        return run("ip", "netns", "exec", self.name, *argv, **kw)

    def popen(self, *argv, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen(["ip", "netns", "exec", self.name] + [str(a) for a in argv], **kw)

    def pids(self):
        out = run("ip", "netns", "pids", self.name, check=False).stdout
        return [int(p) for p in out.split()]

    def snapshot(self):
        """What the kernel holds in this namespace, as ``ip -j`` reports it, minus counters."""
        links = self.ip_json("-d", "link", "show")
        for link in links:
            for volatile in ("stats", "stats64", "operstate", "linkmode", "linkinfo",
                             "inet6_addr_gen_mode", "promiscuity", "num_tx_queues"):
                link.pop(volatile, None)
        return {
            "links": sorted(links, key=lambda l: l["ifname"]),
            "addrs": self.ip_json("addr", "show"),
            "routes": self.ip_json("route", "show", "table", "all"),
            "qdiscs": self.tc_json("qdisc", "show"),
        }

    def tc_json(self, *args):
        out = run("tc", "-n", self.name, "-j", *args).stdout
        return json.loads(out) if out.strip() else []

    def delete(self):
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        run("ip", "netns", "del", self.name, check=False)


class Container(Netns):
    """What Docker makes: veth eth0 with an address and a default route, its peer on docker0."""

    def __init__(self, name, host, index, mtu=1500):
        super().__init__(name)
        self.host = host
        self.ip4 = "172.30.0.%d" % (index + 1)
        self.prefix = 16
        self.gateway = "172.30.0.1"
        self.mac = "02:42:ac:1e:00:%02x" % (index + 1)
        self.mtu = mtu
        self.peer = "veth%d" % index
        host.ip("link", "add", self.peer, "mtu", mtu, "type", "veth", "peer", "name", "eth0",
                "netns", name)
        host.ip("link", "set", self.peer, "master", "docker0", "up")
        self.ip("link", "set", "eth0", "address", self.mac, "mtu", mtu)
        self.ip("addr", "add", "%s/%d" % (self.ip4, self.prefix), "dev", "eth0")
        self.ip("link", "set", "eth0", "up")
        self.ip("route", "add", "default", "via", self.gateway)


class DockerHost(Netns):
    """The namespace playing the Docker host: bridge docker0 with 172.30.0.1/16."""

    def __init__(self, name):
        super().__init__(name)
        self.ip("link", "add", "docker0", "type", "bridge")
        self.ip("addr", "add", "172.30.0.1/16", "dev", "docker0")
        self.ip("link", "set", "docker0", "up")
        self.containers = []

    def container(self, mtu=1500):
        c = Container(unique("ukc"), self, len(self.containers) + 1, mtu=mtu)
        self.containers.append(c)
        return c

    def delete(self):
        for c in self.containers:
            c.delete()
        super().delete()
