"""The test guests themselves, without ukrun: a tap in a test namespace, the guest on one side,
the namespace's kernel on the other. If these fail, the end-to-end tests would prove nothing."""
import os
import shutil
import socket
import time

import pytest

from guests import (LineReader, install_dummy_unikernel, install_uguest, ping, stop,
                    udp_echo, http_get, vm_guest)
from nsutil import in_netns

HOST_IP, GUEST_IP, PREFIX = "10.0.0.1", "10.0.0.2", 24
GUEST_MAC = "02:00:00:00:00:02"


@pytest.fixture
def tapns(netns):
    """A namespace with a persistent tap `tap0` holding the host side 10.0.0.1/24."""
    netns.ip("tuntap", "add", "tap0", "mode", "tap")
    netns.ip("addr", "add", "%s/%d" % (HOST_IP, PREFIX), "dev", "tap0")
    netns.ip("link", "set", "tap0", "up")
    return netns


@pytest.fixture
def uguest(tmp_path):
    return install_uguest(tmp_path)


@pytest.fixture
def procs():
    """Children to stop whatever happens to the test."""
    started = []
    yield started
    for proc in started:
        stop(proc)


def start(ns, procs, tmp_path, *argv, **kw):
    err = open(tmp_path / ("stderr%d.log" % len(procs)), "wb")   # a file: a full pipe would block
    proc = ns.popen(*argv, stderr=err, **kw)
    err.close()
    procs.append(proc)
    return proc, LineReader(proc)


def ip_args():
    return ["--ipv4=%s/%d" % (GUEST_IP, PREFIX), "--ipv4-gateway=%s" % HOST_IP]


def neighbour_mac(ns, address):
    for entry in ns.ip_json("neigh", "show", address):
        return entry.get("lladdr")
    return None


def test_unix_form_answers_ping_and_udp(tapns, uguest, procs, tmp_path):
    proc, out = start(tapns, procs, tmp_path, uguest, "--interface=tap0", "--mac=" + GUEST_MAC,
                      "extra", *ip_args())
    ready = out.ready_json()
    assert ready["mode"] == "unix"
    assert ready["attach"] == {"net_name": None, "tap": "tap0"}
    assert (ready["ipv4"], ready["gateway"]) == ("%s/%d" % (GUEST_IP, PREFIX), HOST_IP)
    assert (ready["mac"], ready["mac_source"]) == (GUEST_MAC, "arg")
    assert ready["unknown_args"] == ["extra"]
    ping(tapns, GUEST_IP, timeout=5)
    udp_echo(tapns.name, GUEST_IP, 7, b"x" * 1400, timeout=5)
    assert neighbour_mac(tapns, GUEST_IP) == GUEST_MAC
    assert proc.poll() is None


def test_tender_form_takes_net_mac(tapns, uguest, procs, tmp_path):
    unikernel = install_dummy_unikernel(tmp_path)
    _, out = start(tapns, procs, tmp_path, uguest, "--mem=64", "--net:service=tap0",
                   "--net-mac:service=02:AA:00:00:00:09", "--block:disk=none", "--",
                   unikernel, "--hello", *ip_args())
    ready = out.ready_json()
    assert ready["mode"] == "tender"
    assert ready["attach"] == {"net_name": "service", "tap": "tap0"}
    assert (ready["mac"], ready["mac_source"]) == ("02:aa:00:00:00:09", "net-mac")
    assert ready["tender"]["mem"] == 64 and ready["tender"]["other"] == ["--block:disk=none"]
    assert ready["unikernel"] == unikernel
    assert ready["guest_args"] == ["--hello"] + ip_args()
    ping(tapns, GUEST_IP, timeout=5)
    assert neighbour_mac(tapns, GUEST_IP) == "02:aa:00:00:00:09"


@pytest.mark.parametrize("form", ["hvt", "ukvm"])
def test_fd_forms_use_the_inherited_tap(tapns, uguest, procs, tmp_path, form):
    from ukrun._core import ffi, lib

    with in_netns(tapns.name):   # TUNSETIFF attaches in the caller's namespace
        fd = lib.ukrun_tap_open(b"tap0", 0, ffi.new("char[]", lib.IFNAMSIZ))
    assert fd >= 0, os.strerror(ffi.errno)
    try:
        net = ["--net:service=@%d" % fd] if form == "hvt" else ["--net=@%d" % fd]
        _, out = start(tapns, procs, tmp_path, uguest, *net, "--", "unikernel", *ip_args(),
                       pass_fds=(fd,))
    finally:
        os.close(fd)   # the guest holds its own copy now
    ready = out.ready_json()
    assert ready["mode"] == ("tender" if form == "hvt" else "ukvm")
    assert ready["attach"]["fd"] == fd and ready["attach"]["fd_target"] == "/dev/net/tun"
    assert ready["fds"][str(fd)] == "/dev/net/tun"
    assert ready["mac_source"] == "random"
    assert int(ready["mac"].split(":")[0], 16) & 0x03 == 0x02   # locally administered unicast
    udp_echo(tapns.name, GUEST_IP, 7, timeout=5)


@pytest.mark.parametrize("garp", [True, False])
def test_gratuitous_arp_only_when_asked(tapns, uguest, procs, tmp_path, garp):
    # A packet socket on the host side of the tap sees every frame the guest sends.
    with in_netns(tapns.name):
        sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    try:
        sniffer.bind(("tap0", 0))
        sniffer.settimeout(0.2)
        argv = [uguest, "--interface=tap0", "--mac=" + GUEST_MAC] + ip_args()
        _, out = start(tapns, procs, tmp_path, *(argv + ([] if garp else ["--no-garp"])))
        assert out.ready_json()["garp"] is garp
        announced = False
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and not announced:
            try:
                frame = sniffer.recv(2048)
            except socket.timeout:
                continue
            # ARP from the guest's MAC whose sender and target address are both its own.
            announced = (frame[6:12] == bytes.fromhex(GUEST_MAC.replace(":", ""))
                         and frame[28:32] == frame[38:42] == socket.inet_aton(GUEST_IP))
        assert announced is garp
    finally:
        sniffer.close()


def test_exit_after_and_status_report(tapns, uguest, procs, tmp_path):
    start_time = time.monotonic()
    proc, out = start(tapns, procs, tmp_path, uguest, "--interface=tap0", "--exit-after=1",
                      *ip_args())
    ready = out.ready_json()
    for key in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb", "NoNewPrivs"):
        int(ready["status"][key], 16)   # present and a number
    assert set(ready["fds"]) >= {"0", "1", "2"}
    assert proc.wait(timeout=10) == 0
    assert 1 <= time.monotonic() - start_time < 10
    # The tap outlives the guest (persistent), so a restarted guest can attach again.
    _, out = start(tapns, procs, tmp_path, uguest, "--interface=tap0", *ip_args())
    out.ready_json()
    ping(tapns, GUEST_IP, timeout=5)


def test_attaches_without_capabilities(tapns, uguest, procs, tmp_path):
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("setpriv (util-linux) not installed")
    _, out = start(tapns, procs, tmp_path, setpriv, "--inh-caps=-all", "--bounding-set=-all",
                   "--no-new-privs", uguest, "--interface=tap0", *ip_args())
    ready = out.ready_json()
    assert int(ready["status"]["CapEff"], 16) == 0 and ready["status"]["NoNewPrivs"] == "1"
    ping(tapns, GUEST_IP, timeout=5)


def test_refuses_a_missing_tap(netns, uguest):
    proc = netns.exec(uguest, "--interface=nosuchtap", *ip_args(), check=False, timeout=15)
    assert proc.returncode != 0 and "No such device" in proc.stderr


def test_vm_guest_boots_and_serves_http(tapns, procs, tmp_path):
    vm = vm_guest()
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        pytest.skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
    mac = "02:00:00:00:00:22"
    start_time = time.monotonic()
    _, out = start(tapns, procs, tmp_path, qemu, "-nodefaults", "-machine", "acpi=off",
                   "-display", "none", "-serial", "stdio", "-m", "256", "-cpu", "Westmere",
                   "-device", "virtio-net-pci,netdev=n0,mac=%s" % mac,
                   "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
                   "-kernel", vm["kernel"], "-initrd", vm["initrd"],
                   "-append", "console=ttyS0 quiet " + " ".join(ip_args()))
    ready = out.vm_ready(timeout=60)
    booted = time.monotonic() - start_time
    assert ready == {"ip": "%s/%d" % (GUEST_IP, PREFIX), "gw": HOST_IP, "mac": mac}
    ping(tapns, GUEST_IP, timeout=10)
    body, _ = http_get(tapns.name, GUEST_IP, timeout=20)
    assert "ip=%s/%d" % (GUEST_IP, PREFIX) in body
    print("VM guest ready after %.1fs" % booted)
