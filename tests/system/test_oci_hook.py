"""``ukrun hook`` under Debian's runc: a bundle whose config.json names ukrun's hook as its
createRuntime hook, a process with an empty capability set as uid 1000 (the bundle's
process.user, which the tap is given to), in a pod namespace Debian's bridge plugin wired.
The guest answers ping and UDP from the node; a poststop ``ukrun hook --give-back`` leaves
the kept namespace as the bridge plugin left it. Nothing runs in the machine's namespace:
the hook enters /proc/PID/ns/net, the pod's.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

import cnihost
from cnihost import POD_IP, POD_UID, SYSTEM_PYTHON, UKRUN_ROOT
from guests import ping, udp_echo
from runcbundle import RUNC, bundle_config
from snapshots import snapshot

pytestmark = pytest.mark.skipif(
    cnihost.missing() is not None or not os.path.exists(RUNC),
    reason=str(cnihost.missing() or "runc is missing (make sysdeps installs it)"))


def exactly(snap):  # as in test_cni_plugin: the kernel's queue length for a queueless veth
    for section in ("links", "addrs"):
        for link in snap[section]:
            link.pop("txqlen", None)
    return snap


def test_runc_create_runtime_hook(pod):
    bridge_left = exactly(snapshot(pod.pod))
    guest = pod.guest()
    bundle = tempfile.mkdtemp(prefix="ukrunc")
    name = "ukc%d" % os.getpid()
    ukrun_exe = os.path.join(os.path.dirname(sys.executable), "ukrun")
    try:
        os.chmod(bundle, 0o755)
        bundle_config(bundle, [SYSTEM_PYTHON, "-m", "ukrun", "unix", guest, "--exit-after=30"],
                      "/run/netns/%s" % pod.pod.name, [ukrun_exe, "hook"], POD_UID,
                      env=["PYTHONPATH=%s" % UKRUN_ROOT], shared=(UKRUN_ROOT, pod.shared),
                      poststop=[ukrun_exe, "hook", "--give-back"])
        out_path = os.path.join(bundle, "out")
        with open(out_path, "wb") as out, open(os.path.join(bundle, "err"), "wb") as err:
            proc = subprocess.Popen([RUNC, "run", "--bundle", bundle, name], stdout=out,
                                    stderr=err)
        deadline = time.monotonic() + 20
        while b"\n" not in open(out_path, "rb").read() and time.monotonic() < deadline:
            assert proc.poll() is None, open(os.path.join(bundle, "err")).read()
            time.sleep(0.05)
        line = json.loads(open(out_path).readline())
        for mask in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
            assert int(line["status"][mask], 16) == 0, line["status"]
        assert line["ipv4"] == "%s/24" % POD_IP
        (tap,) = pod.pod.ip_json("-d", "link", "show", "tap0")
        assert tap["ifalias"].startswith("ukrun:")
        ping(pod.node, POD_IP, timeout=10)
        udp_echo(pod.node.name, POD_IP, 7, os.urandom(600), timeout=10)
        subprocess.run([RUNC, "kill", name, "KILL"], capture_output=True, timeout=30)
        proc.wait(timeout=30)
        subprocess.run([RUNC, "delete", "-f", name], capture_output=True, timeout=30)
        assert exactly(snapshot(pod.pod)) == bridge_left  # the poststop hook gave it back
    finally:
        subprocess.run([RUNC, "delete", "-f", name], capture_output=True, timeout=30)
        shutil.rmtree(bundle, ignore_errors=True)


@pytest.mark.parametrize("state, words", [
    (b"{", "not JSON"), (b"[]", "not a JSON object"), (b'{"pid": "1"}', "not a process id"),
    (b'{"pid": -4}', "not a process id"), (b'{"status": "creating"}', "holds no pid"),
])
def test_hook_refuses_a_bad_state_in_one_line(state, words):
    ukrun_exe = os.path.join(os.path.dirname(sys.executable), "ukrun")
    proc = subprocess.run([ukrun_exe, "hook"], input=state, capture_output=True, timeout=30)
    assert proc.returncode == 2, proc
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("ukrun: error: ") and words in err, err


def test_hook_reads_the_bundles_user_and_namespace(tmp_path):
    from ukrun import oci_hook

    (tmp_path / "config.json").write_text(json.dumps({
        "process": {"user": {"uid": 1000, "gid": 1001}},
        "linux": {"namespaces": [{"type": "network", "path": "/run/netns/kept"}]}}))
    state = {"pid": 0, "bundle": str(tmp_path)}
    assert oci_hook.container_user(state) == (1000, 1001)
    assert oci_hook.namespace_path(state) == "/run/netns/kept"
    assert oci_hook.namespace_path(dict(state, pid=42)) == "/proc/42/ns/net"
    assert oci_hook.container_user({"bundle": str(tmp_path / "none")}) == (None, None)
