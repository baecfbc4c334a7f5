"""Rootless podman (Debian's 4.3, slirp4netns) runs ``ukrun spt`` with no network flags.

The image is the Docker engine tests' spt image (``ukrun dockerfile spt --from`` the Debian
example, the suite's uguest standing in for solo5-spt), built by root's podman and loaded into
the user's (kept in .cache/podman/). The user is uid 1000 with subordinate ids; podman runs in
a namespace the test made (tests/support/podman.py), so slirp4netns's host side is that
namespace, never the machine's. Inside, slirp4netns gives the container one interface, tap0
(10.0.2.100/24): ukrun hands it over with no --interface or --tap, on a tap of the next free
name, tap1, and the guest answers UDP sent from the namespace through slirp4netns's own port
forwarding, the one way in from outside: its virtual router sends the frames to 10.0.2.100 on
tap0, where only the guest holds that address now, and the answer goes back the same way.
"""
import json
import os
import tempfile

import pytest

from containerbox import Box
from guests import udp_echo
from nsutil import run
from podman import Podman, missing_tools

pytestmark = [pytest.mark.engine, pytest.mark.skipif(
    missing_tools(rootless=True) is not None, reason=str(missing_tools(rootless=True)))]

USER = 1000              # no passwd entry needed: its subordinate ids are the test's, by uid
SLIRP_ADDRESS, SLIRP_GATEWAY = "10.0.2.100/24", "10.0.2.2"
PORT = 10007             # in the test's namespace, forwarded by slirp4netns to the guest's 7
# Rootless podman's default network, with slirp4netns forwarding ports itself. Podman's
# default handler, rootlessport, forwards from inside the container's namespace, where no
# address is left: nothing reaches tap0 (checked).
SLIRP = "slirp4netns:port_handler=slirp4netns"
# The namespace's address the port is forwarded from. Not 127.0.0.1: a datagram from there
# reaches the guest from 10.0.2.2, the host's loopback, and libslirp refuses to send the
# answer there while host loopback is off, podman's default (checked: ICMP net unreachable).
HOST_ADDRESS = "192.0.2.1"


@pytest.fixture
def rootless():
    user = Podman.rootless(tempfile.mkdtemp(prefix="ukpu-", dir="/tmp"), USER)
    try:
        yield user
    finally:
        user.stop()


def links(pid):
    """The container's links and qdiscs as ``ip -j`` reports them, read from outside."""
    where = ["nsenter", "--net=/proc/%d/ns/net" % pid]
    got = json.loads(run(*where, "ip", "-j", "-d", "addr", "show").stdout)
    qdiscs = json.loads(run(*where, "tc", "-j", "qdisc", "show").stdout or "[]")
    return {l["ifname"]: l for l in got}, qdiscs


def test_rootless_podman_hands_tap0_over_to_tap1(podman_spt_archive, rootless, ukrun_exe):
    image = rootless.load(podman_spt_archive)
    rootless.ns.ip("addr", "add", HOST_ADDRESS + "/32", "dev", "lo")
    flags = run(ukrun_exe, "docker-args", "spt").stdout.split()
    box = Box(rootless.podman, rootless.start(
        *flags, "--network", SLIRP, "-p", "%s:%d:7/udp" % (HOST_ADDRESS, PORT), image))
    ready = box.ready(timeout=60)
    tender = ready["tender"]
    assert ready["ipv4"] == SLIRP_ADDRESS and ready["gateway"] == SLIRP_GATEWAY, ready
    assert tender["nets"] == {"service": "tap1"}, tender
    assert ready["status"]["CapEff"] == "0000000000000400"  # NET_BIND_SERVICE, kept
    byname, qdiscs = links(int(box.inspect("{{.State.Pid}}")))
    assert set(byname) == {"lo", "tap0", "tap1"}, byname
    assert ready["mac"] == byname["tap0"]["address"]       # the guest inherits tap0's MAC
    assert not [a for a in byname["tap0"].get("addr_info", []) if a["family"] == "inet"]
    assert byname["tap1"]["ifalias"].startswith("ukrun:")  # the record a restart reads
    assert {q["dev"] for q in qdiscs if q["kind"] == "ingress"} == {"tap0", "tap1"}
    udp_echo(rootless.ns.name, HOST_ADDRESS, PORT, os.urandom(1000), timeout=20)
