"""The test guests themselves, without ukrun: a tap in a test namespace, the guest on one side,
the namespace's kernel on the other. If these fail, the end-to-end tests would prove nothing."""
import ipaddress
import os
import shutil
import socket
import struct
import subprocess
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from guests import (LineReader, install_dummy_unikernel, ping, ping_once, stop,
                    udp_echo, http_get, uguest as ug, vm_guest)
from nsutil import in_netns

HOST_IP, GUEST_IP, PREFIX = "10.0.0.1", "10.0.0.2", 24
GUEST_MAC = "02:00:00:00:00:02"
GUEST_LL = "fe80::ff:fe00:2"   # GUEST_MAC by EUI-64: 02 -> 00, ff:fe in the middle
HOST_IP6, GUEST_IP6, PREFIX6 = "fd00::1", "fd00::2", 64


@pytest.fixture
def tapns(netns):
    """A namespace with a persistent tap `tap0` holding the host side 10.0.0.1/24."""
    netns.ip("tuntap", "add", "tap0", "mode", "tap")
    netns.ip("addr", "add", "%s/%d" % (HOST_IP, PREFIX), "dev", "tap0")
    netns.ip("link", "set", "tap0", "up")
    return netns


@pytest.fixture
def tapns6(tapns):
    """tapns with fd00::1/64 on tap0 too, usable at once (no duplicate address detection)."""
    tapns.ip("-6", "addr", "add", "%s/%d" % (HOST_IP6, PREFIX6), "dev", "tap0", "nodad")
    return tapns


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


def ones_complement_ok(data):
    """Whether DATA (a message with its checksum, after its pseudo-header) sums to all ones."""
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def packet_socket(ns, ethertype):
    """A packet socket on tap0 in NS: it sees every frame of ETHERTYPE the guest sends."""
    with in_netns(ns.name):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
    sock.bind(("tap0", 0))
    sock.settimeout(0.2)
    return sock


def announcement(frame):
    """What a frame from the guest announces: "arp", an IPv6 address (an unsolicited neighbour
    advertisement, RFC 4861 7.2.6), or None."""
    mac = bytes.fromhex(GUEST_MAC.replace(":", ""))
    if frame[6:12] != mac:
        return None
    if frame[12:14] == b"\x08\x06":
        # ARP whose sender and target address are both the guest's own.
        ok = frame[28:32] == frame[38:42] == socket.inet_aton(GUEST_IP)
        return "arp" if ok else None
    ip6, icmp = frame[14:54], frame[54:]
    src, dst, target = ip6[8:24], ip6[24:40], icmp[8:24]
    pseudo = src + dst + struct.pack("!IxxxB", len(icmp), 58)
    if (frame[12:14] == b"\x86\xdd" and frame[:6] == b"\x33\x33\0\0\0\1" and ip6[6] == 58
            and ip6[7] == 255 and icmp[0] == 136 and icmp[4] & 0x60 == 0x20 and src == target
            and dst == ipaddress.IPv6Address("ff02::1").packed and icmp[24:32] == b"\2\1" + mac
            and ones_complement_ok(pseudo + icmp)):
        return str(ipaddress.IPv6Address(target))
    return None


@pytest.mark.parametrize("garp", [True, False])
def test_announces_itself_only_when_asked(tapns, uguest, procs, tmp_path, garp):
    sniffers = [packet_socket(tapns, 0x0806), packet_socket(tapns, 0x86DD)]
    try:
        argv = [uguest, "--interface=tap0", "--mac=" + GUEST_MAC, "--ipv6=%s/64" % GUEST_IP6]
        argv += ip_args() + ([] if garp else ["--no-garp"])
        _, out = start(tapns, procs, tmp_path, *argv)
        assert out.ready_json()["garp"] is garp
        wanted = {"arp", GUEST_LL, GUEST_IP6}
        seen = set()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and seen != wanted:
            for sniffer in sniffers:
                try:
                    seen.add(announcement(sniffer.recv(2048)))
                except socket.timeout:
                    pass
        assert seen - {None} == (wanted if garp else set())
    finally:
        for sniffer in sniffers:
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


def boot_vm(ns, procs, tmp_path, mac, cmdline):
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        pytest.skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
    vm = vm_guest()
    return start(ns, procs, tmp_path, qemu, "-nodefaults", "-machine", "acpi=off",
                 "-display", "none", "-serial", "stdio", "-m", "256", "-cpu", "Westmere",
                 "-device", "virtio-net-pci,netdev=n0,mac=%s" % mac,
                 "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
                 "-kernel", vm["kernel"], "-initrd", vm["initrd"],
                 "-append", "console=ttyS0 quiet " + cmdline)


def test_vm_guest_boots_and_serves_http(tapns, procs, tmp_path):
    mac = "02:00:00:00:00:22"
    start_time = time.monotonic()
    _, out = boot_vm(tapns, procs, tmp_path, mac, " ".join(ip_args()))
    ready = out.vm_ready(timeout=60)
    booted = time.monotonic() - start_time
    # Exactly the three fields: other tests compare the whole line of a guest given --ipv4.
    assert ready == {"ip": "%s/%d" % (GUEST_IP, PREFIX), "gw": HOST_IP, "mac": mac}
    ping(tapns, GUEST_IP, timeout=10)
    body, _ = http_get(tapns.name, GUEST_IP, timeout=20)
    assert "ip=%s/%d" % (GUEST_IP, PREFIX) in body
    print("VM guest ready after %.1fs" % booted)


def test_vm_guest_takes_the_kernel_ip_word_and_ipv6(tapns, procs, tmp_path):
    """ip= (netmask, gateway, hostname, DNS) and --ipv6 with a link-local gateway, in one boot.

    The host pings from addresses outside the guest's prefixes, so the answers must take the
    guest's default routes: through 10.0.0.1 and through fe80::1, a link-local gateway."""
    tapns.ip("addr", "add", "10.0.0.129/25", "dev", "tap0")
    for address in ("fd00::1/64", "fe80::1/64", "2001:db8:1::1/64"):
        tapns.ip("-6", "addr", "add", address, "dev", "tap0", "nodad")
    mac = "02:00:00:00:00:23"
    linux_ip = "ip=10.0.0.2::10.0.0.1:255.255.255.128:ukguest:eth0:off:10.0.0.53:10.0.0.54"
    _, out = boot_vm(tapns, procs, tmp_path, mac,
                     "%s --ipv6=fd00::2/64 --ipv6-gateway=fe80::1" % linux_ip)
    ready = out.vm_ready(timeout=60)
    assert ready == {"ip": "10.0.0.2/25", "gw": "10.0.0.1", "mac": mac, "ip6": "fd00::2/64",
                     "gw6": "fe80::1", "dns": "10.0.0.53,10.0.0.54", "host": "ukguest",
                     "fmt": "linux"}, ready
    ping(tapns, "10.0.0.2", timeout=10, source="10.0.0.129")
    ping(tapns, "fd00::2", timeout=10, source="2001:db8:1::1")
    body, _ = http_get(tapns.name, "fd00::2", timeout=20)
    assert body.split() == ["ukrun", "guest", "ip=10.0.0.2/25", "gw=10.0.0.1", "mac=" + mac,
                            "ip6=fd00::2/64", "gw6=fe80::1", "dns=10.0.0.53,10.0.0.54",
                            "host=ukguest", "fmt=linux"]
    resolv, _ = http_get(tapns.name, "10.0.0.2", path="/resolv.conf", timeout=5)
    assert resolv == "nameserver 10.0.0.53\nnameserver 10.0.0.54\n"


# --- the network words, as a guest takes them ---------------------------------------------------

FORMAT_CASES = {
    "mirage": (["--ipv4=10.0.0.2/24", "--ipv4-gateway=10.0.0.1",
                "--dns_servers=udp:10.0.0.53,tcp:[fd00::53]:5353", "--resolver=10.0.0.54"],
               dict(ipv4="10.0.0.2/24", gateway="10.0.0.1",
                    dns=["10.0.0.53", "fd00::53", "10.0.0.54"], hostname=None, device=None)),
    "unikraft": (["netdev.ip=10.0.0.2/24:10.0.0.1:10.0.0.53:10.0.0.54:guest:example.test"],
                 dict(ipv4="10.0.0.2/24", gateway="10.0.0.1", dns=["10.0.0.53", "10.0.0.54"],
                      hostname="guest", domain="example.test")),
    "unikraft-lwip": (["netdev.ipv4_addr=10.0.0.2", "netdev.ipv4_gw_addr=10.0.0.1",
                       "netdev.ipv4_subnet_mask=255.255.255.0"],
                      dict(ipv4="10.0.0.2/24", gateway="10.0.0.1", dns=[])),
    "linux": (["ip=10.0.0.2::10.0.0.1:255.255.255.0:guest:tap0:off:10.0.0.53:10.0.0.54"],
              dict(ipv4="10.0.0.2/24", gateway="10.0.0.1", dns=["10.0.0.53", "10.0.0.54"],
                   hostname="guest", device="tap0")),
}


@pytest.mark.parametrize("fmt", sorted(FORMAT_CASES))
def test_configures_itself_from_each_format(tapns, uguest, procs, tmp_path, fmt):
    words, expected = FORMAT_CASES[fmt]
    _, out = start(tapns, procs, tmp_path, uguest, "--interface=tap0", "--mac=" + GUEST_MAC,
                   "extra", *words)
    ready = out.ready_json()
    assert ready["format"] == fmt and ready["unknown_args"] == ["extra"]
    assert {k: ready[k] for k in expected} == expected
    assert (ready["ipv6"], ready["gateway6"], ready["link_local"], ready["warnings"]) == \
        (None, None, None, [])
    ping(tapns, GUEST_IP, timeout=5)
    udp_echo(tapns.name, GUEST_IP, 7, timeout=5)


def test_dual_stack_answers_neighbour_solicitation_ping_and_udp(tapns6, uguest, procs, tmp_path):
    _, out = start(tapns6, procs, tmp_path, uguest, "--interface=tap0", "--mac=" + GUEST_MAC,
                   "--no-garp", "--ipv6=%s/%d" % (GUEST_IP6, PREFIX6),
                   "--ipv6-gateway=" + HOST_IP6, *ip_args())
    ready = out.ready_json()
    assert (ready["ipv4"], ready["ipv6"], ready["gateway6"], ready["link_local"]) == \
        ("%s/%d" % (GUEST_IP, PREFIX), "%s/%d" % (GUEST_IP6, PREFIX6), HOST_IP6, GUEST_LL)
    # --no-garp: the host learns the guest's MAC only from its neighbour advertisement.
    assert neighbour_mac(tapns6, GUEST_IP6) is None
    ping(tapns6, GUEST_IP6, timeout=5)
    entry = tapns6.ip_json("neigh", "show", GUEST_IP6)[0]
    # REACHABLE, not STALE: the advertisement answered the solicitation (its S flag is set).
    assert (entry.get("lladdr"), entry.get("state")) == (GUEST_MAC, ["REACHABLE"]), entry
    ping(tapns6, GUEST_LL + "%tap0", timeout=5)   # from the host's own link-local address
    udp_echo(tapns6.name, GUEST_IP6, 7, b"y" * 1400, timeout=5)
    udp_echo(tapns6.name, GUEST_LL + "%tap0", 7, timeout=5)
    ping(tapns6, GUEST_IP, timeout=5)
    udp_echo(tapns6.name, GUEST_IP, 7, timeout=5)


def test_ipv6_only(tapns6, uguest, procs, tmp_path):
    _, out = start(tapns6, procs, tmp_path, uguest, "--interface=tap0", "--mac=" + GUEST_MAC,
                   "--ipv6=%s/%d" % (GUEST_IP6, PREFIX6), "--ipv6-only=true")
    ready = out.ready_json()
    assert (ready["ipv4"], ready["gateway"], ready["ipv6"], ready["ipv6_only"]) == \
        (None, None, "%s/%d" % (GUEST_IP6, PREFIX6), True)
    assert ready["warnings"] == []
    ping(tapns6, GUEST_IP6, timeout=5)
    udp_echo(tapns6.name, GUEST_IP6, 7, timeout=5)
    assert not ping_once(tapns6, GUEST_IP, wait=1)   # no IPv4 at all, not even ARP
    assert neighbour_mac(tapns6, GUEST_IP) != GUEST_MAC


def test_only_words_switch_a_stack_off(tapns6, uguest, procs, tmp_path):
    # IPv4 and IPv6 given, --ipv4-only=true: the guest must stay off IPv6.
    _, out = start(tapns6, procs, tmp_path, uguest, "--interface=tap0", "--mac=" + GUEST_MAC,
                   "--ipv6=%s/%d" % (GUEST_IP6, PREFIX6), "--ipv4-only=true", *ip_args())
    ready = out.ready_json()
    assert (ready["ipv6"], ready["link_local"], ready["ipv4_only"]) == (None, None, True)
    ping(tapns6, GUEST_IP, timeout=5)
    assert not ping_once(tapns6, GUEST_IP6, wait=1)


def test_mirage_default_ipv4_is_a_warning(tapns6, uguest, procs, tmp_path):
    # --ipv6 without --ipv4 and without --ipv6-only=true: a real MirageOS would also take
    # 10.0.0.2/24; uguest answers IPv6 only and says so, so a test can catch the missing word.
    _, out = start(tapns6, procs, tmp_path, uguest, "--interface=tap0",
                   "--ipv6=%s/%d" % (GUEST_IP6, PREFIX6))
    ready = out.ready_json()
    assert ready["ipv4"] is None and ready["ipv6_only"] is False
    assert len(ready["warnings"]) == 1 and "--ipv6-only=true" in ready["warnings"][0]
    ping(tapns6, GUEST_IP6, timeout=5)


def test_host_duplicate_address_detection_sees_the_guest(tapns6, uguest, procs, tmp_path):
    # The kernel's DAD (an NS from :: to the solicited-node group) must hear the guest's NA.
    _, out = start(tapns6, procs, tmp_path, uguest, "--interface=tap0", "--no-garp",
                   "--ipv6=%s/%d" % (GUEST_IP6, PREFIX6), "--ipv6-only=true")
    out.ready_json()
    tapns6.ip("-6", "addr", "add", "%s/%d" % (GUEST_IP6, PREFIX6), "dev", "tap0")
    deadline = time.monotonic() + 10
    while True:
        flags = [a for a in tapns6.ip_json("-6", "addr", "show", "dev", "tap0")[0]["addr_info"]
                 if a["local"] == GUEST_IP6][0]
        if flags.get("dadfailed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert flags.get("dadfailed"), flags


def echo6_frame(guest_mac, host_mac, payload, good_checksum):
    src = ipaddress.IPv6Address(HOST_IP6).packed
    dst = ipaddress.IPv6Address(GUEST_IP6).packed
    icmp = struct.pack("!BBHHH", 128, 0, 0, 0x1234, 1) + payload
    total = sum(struct.unpack("!%dH" % ((40 + len(icmp)) // 2),
                              src + dst + struct.pack("!IxxxB", len(icmp), 58) + icmp))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    value = ~total & 0xFFFF if good_checksum else (~total + 1) & 0xFFFF
    icmp = icmp[:2] + struct.pack("!H", value) + icmp[4:]
    header = struct.pack("!IHBB16s16s", 6 << 28, len(icmp), 58, 64, src, dst)
    return guest_mac + host_mac + b"\x86\xdd" + header + icmp


def test_bad_checksums_are_dropped(tapns6, uguest, procs, tmp_path):
    _, out = start(tapns6, procs, tmp_path, uguest, "--interface=tap0", "--mac=" + GUEST_MAC,
                   "--no-garp", "--ipv6=%s/%d" % (GUEST_IP6, PREFIX6), "--ipv6-only=true")
    out.ready_json()
    guest_mac = bytes.fromhex(GUEST_MAC.replace(":", ""))
    host_mac = bytes.fromhex(tapns6.ip_json("link", "show", "tap0")[0]["address"].replace(":", ""))
    sock = packet_socket(tapns6, 0x86DD)
    try:
        for good in (False, True):   # the good one shows the bad one was not just missed
            payload = b"good" if good else b"bad!"
            sock.send(echo6_frame(guest_mac, host_mac, payload, good))
            replied = False
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline and not replied:
                try:
                    frame = sock.recv(2048)
                except socket.timeout:
                    continue
                replied = (frame[6:12] == guest_mac and frame[54] == 129
                           and frame[62:] == payload)
            assert replied is good
    finally:
        sock.close()


@pytest.mark.parametrize("words,message", [
    ([], "no network configuration"),
    (["--ipv4=10.0.0.2/24", "ip=10.0.0.2:::255.255.255.0::eth0:off"], "several formats"),
    (["--ipv4=10.0.0.2"], "has no /PREFIX"),
    (["--ipv4=10.0.0.2/24", "--ipv4=10.0.0.3/24"], "given twice"),
    (["--ipv6-only"], "needs a value"),
    (["--ipv6=fd00::2/64", "--ipv6-only=yes"], "true or false"),
    (["--ipv6=fd00::2/64", "--ipv6-only=true", "--ipv4-only=true"], "no stack"),
    (["--ipv6=fd00::2/64", "--ipv6-gateway=fe80::1%eth0"], "zone id"),
    (["--ipv4=10.0.0.2/24", "--dns_servers=udp:10.0.0.53,"], "empty entry"),
    (["--ipv4=10.0.0.2/24", "--resolver=tcp:10.0.0.53:99999"], "bad port"),
    (["--ipv4=10.0.0.2/24", "--resolver=udp:[fd00::53"], "bad nameserver"),
    (["netdev.ip=10.0.0.2/24:10.0.0.1:1.1.1.1:1.0.0.1:h:d:x"], "more than 6 fields"),
    (["netdev.ip=10.0.0.2/24:gateway"], "netdev.ip="),
    (["netdev.ipv4_addr=10.0.0.2"], "netdev.ipv4_subnet_mask= missing"),
    (["netdev.ipv4_addr=10.0.0.2", "netdev.ipv4_subnet_mask=255.0.255.0"], "contiguous"),
    (["ip=dhcp"], "autoconfiguration"),
    (["ip=10.0.0.2::10.0.0.1:255.255.255.0::eth0:dhcp"], "autoconfiguration"),
    (["ip=10.0.0.2::::::off:fd00::53"], "ip="),
    # Both colon-separated: an IPv6 server cannot be written in either.
    (["netdev.ip=10.0.0.2/24:10.0.0.1:fd00::53"], "more than 6 fields|netdev.ip="),
])
def test_refuses_bad_network_words(words, message):
    with pytest.raises(ug.ConfigError, match=message):
        ug.parse_network(words)


def test_bad_words_stop_the_guest_before_it_attaches(uguest):
    # No namespace needed: the guest must fail before it touches any device.
    proc = subprocess.run([uguest, "--interface=nosuchtap", "--ipv4=10.0.0.2"],
                          capture_output=True, text=True, timeout=15)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "uguest: error: --ipv4=10.0.0.2: '10.0.0.2' has no /PREFIX"


# Words the parsers are fed: their own keys with values near the real ones, and junk.
VALUE_TEXT = st.text(alphabet="0123456789abcdef.:/[]!,%-udptlsxyz", max_size=40)
NETWORK_WORD = st.one_of(
    st.builds("{}={}".format, st.sampled_from(sorted(ug.FORMAT_OF)), VALUE_TEXT),
    st.sampled_from(sorted(ug.FORMAT_OF)),
    st.text(max_size=20))


@settings(max_examples=400, deadline=None)
@given(st.lists(NETWORK_WORD, max_size=5))
@example(["ip=1.2.3.4:::0.0.0.0"])
@example(["--dns_servers=udp:"])
@example(["--resolver=[]"])
def test_parsers_raise_only_config_error(words):
    try:
        net, rest = ug.parse_network(words)
    except ug.ConfigError:
        return
    assert net["format"] in ug.PARSERS and all(ug.FORMAT_OF.get(w.partition("=")[0]) is None
                                               for w in rest)
    ug.network_report(net)


def nameserver_forms(address):
    """Ways MirageOS may write one nameserver."""
    bracketed = "[%s]" % address if address.version == 6 else str(address)
    return st.sampled_from([str(address), "udp:%s" % address, "tcp:%s:53" % bracketed,
                            "tls:%s:853!dns.example!key:abc" % bracketed])


@settings(max_examples=200, deadline=None)
@given(address=st.ip_addresses(v=4), prefix=st.integers(0, 32),
       gateway=st.none() | st.ip_addresses(v=4), dns=st.lists(st.ip_addresses(v=4), max_size=2),
       data=st.data())
def test_every_format_reads_back_what_was_written(address, prefix, gateway, dns, data):
    ipv4 = ipaddress.IPv4Interface((address, prefix))
    mask = str(ipv4.netmask)
    gw = str(gateway) if gateway else ""
    servers = ":".join(map(str, dns))
    written = {
        "mirage": ["--ipv4=%s" % ipv4] + (["--ipv4-gateway=" + gw] if gw else [])
        + (["--dns_servers=" + ",".join(data.draw(nameserver_forms(d)) for d in dns)]
           if dns else []),
        "unikraft": ["netdev.ip=%s:%s:%s" % (ipv4, gw, servers)],
        "unikraft-lwip": ["netdev.ipv4_addr=%s" % address, "netdev.ipv4_subnet_mask=" + mask]
        + (["netdev.ipv4_gw_addr=" + gw] if gw else []),
        "linux": ["ip=%s::%s:%s::eth0:off:%s" % (address, gw, mask, servers)],
    }
    for fmt, words in written.items():
        net, rest = ug.parse_network(words)
        assert rest == [] and net["format"] == fmt
        assert (net["ipv4"], net["gateway"]) == (ipv4, gateway)
        assert net["dns"] == ([] if fmt == "unikraft-lwip" else dns)


@settings(max_examples=100, deadline=None)
@given(address=st.ip_addresses(v=6), prefix=st.integers(0, 128),
       gateway=st.none() | st.ip_addresses(v=6), dns=st.lists(st.ip_addresses(), max_size=3),
       data=st.data())
def test_mirage_ipv6_words_read_back(address, prefix, gateway, dns, data):
    words = ["--ipv6=%s/%d" % (address, prefix), "--ipv6-only=true"]
    words += ["--ipv6-gateway=%s" % gateway] if gateway else []
    words += ["--resolver=" + ",".join(data.draw(nameserver_forms(d)) for d in dns)] if dns else []
    net, _ = ug.parse_network(words)
    assert (net["ipv6"], net["gateway6"], net["dns"], net["ipv4"]) == \
        (ipaddress.IPv6Interface((address, prefix)), gateway, dns, None)


FRAME_HEAD = st.sampled_from([
    b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x86\xdd",
    b"\x33\x33\xff\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x86\xdd",
    b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00",
    b"\xff" * 6 + b"\x02\0\0\0\0\x01" + b"\x08\x06"])


@settings(max_examples=500, deadline=None)
@given(head=FRAME_HEAD, ip6=st.binary(min_size=8, max_size=8), body=st.binary(max_size=120),
       kind=st.sampled_from([None, 128, 135, 17]))
def test_frame_handler_never_raises(head, ip6, body, kind):
    # IPv6 frames addressed to the guest, with a random header tail and body, so the fuzz
    # reaches the neighbour, echo and UDP code and not just the first length check.
    net, _ = ug.parse_network(["--ipv4=10.0.0.2/24", "--ipv6=fd00::2/64"])
    with open(os.devnull, "wb") as sink:
        guest = ug.Guest(sink.fileno(), GUEST_MAC, net, 7)
        if head[12:14] == b"\x86\xdd":
            proto = 17 if kind == 17 else 58
            dst = ipaddress.IPv6Address(GUEST_IP6 if head[0] == 2 else "ff02::1:ff00:2").packed
            first = bytes([kind]) if kind in (128, 135) else b""
            payload = first + body
            header = b"\x60\0\0\0" + struct.pack("!HBB", len(payload), proto, ip6[0]) + ip6 * 2
            guest.handle(head + header + dst + payload)
        else:
            guest.handle(head + ip6 + body)
        guest.handle(head + body)
