"""A pod network as a runtime makes one, for the tests of ``ukrun cni`` and ``ukrun hook``.

``PodNetwork`` makes a host-like namespace (the node) and a pod namespace, and runs Debian's
containernetworking-plugins there as a runtime would: CNI_COMMAND, CNI_NETNS, CNI_IFNAME,
CNI_CONTAINERID, CNI_PATH in the environment, the configuration on stdin. The bridge plugin
itself runs inside the node namespace (``ip netns exec NODE``), never in the machine's.

``as_pod_user`` is the argv prefix that runs a program inside the pod as a non-root uid with
no capability at all (setpriv), in a mount namespace of its own where /dev/net/tun is a node
anyone may open: what a device plugin gives a pod. The programs it runs are started by
Debian's /usr/bin/python3 (a non-root uid may not reach the test venv's interpreter here) with
PYTHONPATH pointing at this checkout's ukrun.
"""
import json
import os
import shutil

import ukrun
from nsutil import Netns, run, unique

CNI_PATH = "/usr/lib/cni"
SYSTEM_PYTHON = "/usr/bin/python3"
UKRUN_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(ukrun.__file__)))
POD_UID, OTHER_UID = 1000, 1001
SUBNET, GATEWAY, POD_IP = "172.30.77.0/24", "172.30.77.1", "172.30.77.2"


def missing() -> str | None:
    """Why these tests cannot run here, or None."""
    for path in (os.path.join(CNI_PATH, "bridge"), os.path.join(CNI_PATH, "host-local"),
                 SYSTEM_PYTHON, shutil.which("setpriv") or "/nonexistent/setpriv"):
        if not os.path.exists(path):
            return "%s is missing (make sysdeps installs containernetworking-plugins)" % path
    probe = run(SYSTEM_PYTHON, "-c", "import _cffi_backend", check=False)
    if probe.returncode != 0:
        return "Debian's python3 has no cffi backend (python3-cffi-backend)"
    return None


def ukrun_cni_argv():
    """The installed CNI plugin executable (setup.py's console script), as a runtime finds it."""
    import sys

    exe = os.path.join(os.path.dirname(sys.executable), "ukrun-cni")
    assert os.path.exists(exe), "the ukrun-cni console script is not installed (make build)"
    return [exe]


class PodNetwork:
    """A node namespace and a pod namespace, wired by the bridge plugin (``add_bridge``)."""

    def __init__(self, tmp_path):
        self.tmp = str(tmp_path)
        self.node = Netns(unique("ukn"))
        self.pod = Netns(unique("ukp"))
        self.container_id = unique("pod")
        self.bridge_config = {
            "cniVersion": "1.0.0", "name": "uknet", "type": "bridge", "bridge": "ukcni0",
            "isGateway": True, "isDefaultGateway": True, "ipMasq": False,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET}]],
                     "dataDir": os.path.join(self.tmp, "ipam")}}
        # What the pod's non-root user reads: not under pytest's tmp_path (mode 0700).
        import tempfile

        self.shared = tempfile.mkdtemp(prefix="ukcni")
        os.chmod(self.shared, 0o755)
        tun = os.path.join(self.shared, "tun")
        os.mknod(tun, 0o20666, os.makedev(10, 200))
        os.chmod(tun, 0o666)
        self.tun = tun
        self.prev_result = None

    def env(self, command, ifname="eth0", netns=None):
        return dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=self.container_id,
                    CNI_NETNS=netns if netns is not None else "/run/netns/%s" % self.pod.name,
                    CNI_IFNAME=ifname, CNI_PATH=CNI_PATH, PYTHONPATH=UKRUN_ROOT)

    def plugin(self, argv, command, config, **env):
        """Run a plugin in the node namespace; (returncode, parsed stdout or None, stderr)."""
        stdin = config if isinstance(config, (str, bytes)) else json.dumps(config)
        proc = run("ip", "netns", "exec", self.node.name, *argv, input=stdin, check=False,
                   env=self.env(command, **env))
        out = proc.stdout.strip()
        return proc.returncode, json.loads(out) if out else None, proc.stderr

    def add_bridge(self, ifname="eth0"):
        """The bridge plugin's ADD, naming the pod's interface ``ifname``; its result."""
        code, result, err = self.plugin([os.path.join(CNI_PATH, "bridge")], "ADD",
                                        self.bridge_config, ifname=ifname)
        assert code == 0, err
        self.prev_result = result
        return result

    def ukrun_config(self, **keys):
        config = {"cniVersion": "1.0.0", "name": "uknet", "type": "ukrun-cni",
                  "owner": POD_UID, "group": POD_UID, "prevResult": self.prev_result}
        config.update(keys)
        return {k: v for k, v in config.items() if v is not None}

    def ukrun(self, command, config, **env):
        return self.plugin(ukrun_cni_argv(), command, config, **env)

    def as_pod_user(self, uid=POD_UID):
        """The argv prefix: in the pod, as ``uid`` with no capability, the pod's tun node."""
        mount = "mount --bind %s /dev/net/tun && exec \"$@\"" % self.tun
        return ["unshare", "-m", "sh", "-c", mount, "pod", "ip", "netns", "exec", self.pod.name,
                "setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups",
                "--inh-caps", "-all", "--bounding-set", "-all", "--no-new-privs",
                "env", "PYTHONPATH=%s" % UKRUN_ROOT]

    def guest(self, name="uguest"):
        """The userspace guest, started by Debian's python3, where the pod's user reads it."""
        path = os.path.join(self.shared, name)
        with open(os.path.join(os.path.dirname(__file__), "guests", "uguest.py")) as src, \
                open(path, "w") as dst:
            dst.write("#!%s\n" % SYSTEM_PYTHON)
            dst.write(src.read())
        os.chmod(path, 0o755)
        return path

    def delete(self):
        self.pod.delete()
        self.node.delete()
        shutil.rmtree(self.shared, ignore_errors=True)
