"""``ukrun hook`` from a podman hooks.d entry: Debian's podman 4.3 as root, in a namespace the
test made (tests/support/podman.py), ``--hooks-dir`` holding examples/oci-hook/ukrun.json
(createRuntime) and ukrun-give-back.json (poststop), changed only in the path of ukrun. A
container started with the annotation io.ukrun.handover=true and ``--cap-drop=all`` runs the
spt image (the Docker engine tests' image, the suite's uguest as solo5-spt): its ukrun holds no
capability, finds the hook's handover on tap0 and execs the guest, which answers ping and UDP
from the namespace that plays the host. On podman's own network (netavark's bridge in that
namespace) the container's namespace goes with it; on a kept one (``--network ns:``, wired by
Debian's bridge plugin) the poststop hook gives the network back as the plugin left it.
"""
import json
import os

import pytest

import cnihost
from cnihost import POD_IP
from containerbox import Box
from guests import ping, udp_echo
from nsutil import run
from podman import missing_tools
from snapshots import as_given_back, snapshot
from tree import ROOT

pytestmark = [pytest.mark.engine, pytest.mark.skipif(
    missing_tools() is not None or cnihost.missing() is not None,
    reason=str(missing_tools() or cnihost.missing()))]

HOOK_FILES = ("ukrun.json", "ukrun-give-back.json")
ANNOTATION = "io.ukrun.handover=true"
NO_CAPABILITY = "0000000000000000"


def installed_hook(text, ukrun_exe):
    """An example hooks.d file with ukrun where this test installed it; nothing else changes."""
    hook = json.loads(text)
    assert hook["hook"]["path"] == "/usr/local/bin/ukrun", hook
    hook["hook"]["path"] = ukrun_exe
    return hook


@pytest.fixture
def hooked(rootful_podman, ukrun_exe):
    """The rootful podman with the example hook files in its --hooks-dir, for one test."""
    for name in HOOK_FILES:
        with open(os.path.join(ROOT, "examples", "oci-hook", name)) as fh:
            hook = installed_hook(fh.read(), ukrun_exe)
        with open(os.path.join(rootful_podman.hooks_dir, name), "w") as fh:
            json.dump(hook, fh)
    try:
        yield rootful_podman
    finally:
        for name in HOOK_FILES:
            os.unlink(os.path.join(rootful_podman.hooks_dir, name))


def start_without_capabilities(podman, image, *flags):
    box = Box(podman.podman, podman.start("--annotation", ANNOTATION, "--cap-drop=all",
                                          "--device", "/dev/net/tun", *flags, image))
    ready = box.ready(timeout=60)
    for mask in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
        assert ready["status"][mask] == NO_CAPABILITY, ready["status"]
    assert ready["tender"]["nets"] == {"service": "tap0"}, ready
    return box, ready


def tap_record(pid):
    (tap,) = json.loads(run("nsenter", "--net=/proc/%d/ns/net" % pid, "ip", "-j", "-d", "link",
                            "show", "tap0").stdout)
    return tap.get("ifalias", "")


def test_hooks_d_hands_podmans_network_to_a_container_without_capabilities(
        hooked, podman_spt_archive):
    image = hooked.load(podman_spt_archive)
    box, ready = start_without_capabilities(hooked, image)
    address = box.ip()
    assert ready["ipv4"] == address + "/16" and ready["mac"] == box.mac(), (ready, address)
    assert tap_record(int(box.inspect("{{.State.Pid}}"))).startswith("ukrun:")
    ping(hooked.ns, address, timeout=10)
    udp_echo(hooked.ns.name, address, 7, os.urandom(1000), timeout=10)
    removed = hooked.podman("rm", "-f", "-t", "0", box.id)
    assert "hook" not in removed.stderr, removed.stderr  # poststop: the namespace is gone, 0
    assert not hooked.podman("ps", "-aq").stdout.strip()


def test_poststop_hook_gives_a_kept_namespace_back(hooked, podman_spt_archive, pod):
    image = hooked.load(podman_spt_archive)
    bridge_left = as_given_back(snapshot(pod.pod))
    box, ready = start_without_capabilities(hooked, image,
                                            "--network", "ns:/run/netns/" + pod.pod.name)
    assert ready["ipv4"] == POD_IP + "/24", ready
    (tap,) = pod.pod.ip_json("-d", "link", "show", "tap0")
    assert tap["ifalias"].startswith("ukrun:")
    ping(pod.node, POD_IP, timeout=10)
    udp_echo(pod.node.name, POD_IP, 7, os.urandom(1000), timeout=10)
    removed = hooked.podman("rm", "-f", "-t", "0", box.id)
    assert "hook" not in removed.stderr, removed.stderr
    assert as_given_back(snapshot(pod.pod)) == bridge_left   # the poststop hook gave it back
