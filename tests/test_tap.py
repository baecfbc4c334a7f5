"""ukrun.tap against the kernel, inside test namespaces, with `ip` and `ethtool` as witnesses."""
import errno
import fcntl
import json
import os
import struct
import subprocess
import sys

import pytest

import sysheaders
from nsutil import in_netns
from sysheaders import lib as hdr
from ukrun import tap
from ukrun._ffi import lib


def link_names(netns):
    return [link["ifname"] for link in netns.ip_json("link", "show")]


def tun_info(netns, name):
    """What the kernel reports of a tun/tap device through `ip -d link`."""
    link = netns.ip_json("-d", "link", "show", "dev", name)[0]
    assert link["linkinfo"]["info_kind"] == "tun"
    return link["linkinfo"]["info_data"]


def fd_flags(fd):
    """The tun flags of an open fd, as TUNGETIFF fills a struct ifreq."""
    ffi = sysheaders.ffi
    ifr = fcntl.ioctl(fd, hdr.TUNGETIFF, bytes(ffi.sizeof("struct ifreq")))
    return struct.unpack_from("=h", ifr, ffi.offsetof("struct ifreq", "ifr_flags"))[0] & 0xFFFF


def test_persistent_tap_is_a_tap_without_packet_info(netns):
    with in_netns(netns.name):
        t = tap.open_tap("tap0", persist=True)
    with t:
        assert t.name == "tap0"
        info = tun_info(netns, "tap0")
        assert (info["type"], info["pi"], info["persist"]) == ("tap", False, True)
        assert fd_flags(t.fd) & (hdr.IFF_TAP | hdr.IFF_NO_PI) == hdr.IFF_TAP | hdr.IFF_NO_PI
    assert t.closed
    assert "tap0" in link_names(netns)


def test_tap_that_is_not_persistent_goes_with_its_fd(netns):
    with in_netns(netns.name):
        t = tap.open_tap("tap1")
    assert tun_info(netns, "tap1")["persist"] is False
    t.close()
    assert "tap1" not in link_names(netns)


def test_set_persist_both_ways(netns):
    with in_netns(netns.name):
        t = tap.open_tap("tap2", persist=True)
    t.set_persist(False)
    assert tun_info(netns, "tap2")["persist"] is False
    t.close()
    assert "tap2" not in link_names(netns)


def test_tap_fd_is_close_on_exec(netns):
    with in_netns(netns.name), tap.open_tap("tap3") as t:
        assert fcntl.fcntl(t.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        # And a child started without closing fds really does not get it...
        assert "/dev/net/tun" not in child_fds()
        # ...until it is made inheritable, as for a tender's --net:NAME=@FD.
        os.set_inheritable(t.fd, True)
        assert "/dev/net/tun" in child_fds()


def child_fds():
    return subprocess.run(["ls", "-l", "/proc/self/fd/"], close_fds=False,
                          capture_output=True, text=True, check=True).stdout


ATTACH = r"""
import json, sys
from ukrun import caps, tap
result = {"effective": sorted(caps.current().effective)}
with tap.open_tap(sys.argv[1]) as t:
    result["attached"] = t.name
try:
    tap.open_tap(sys.argv[1] + "new")
except OSError as e:
    result["create_errno"] = e.errno
print(json.dumps(result))
"""


def test_process_without_capabilities_attaches_to_a_persistent_tap(netns):
    with in_netns(netns.name):
        tap.open_tap("tap4", persist=True).close()
    # setpriv empties the bounding set, so root's execve grants no capability at all.
    out = netns.exec("setpriv", "--bounding-set=-all", "--inh-caps=-all",
                     sys.executable, "-c", ATTACH, "tap4").stdout
    result = json.loads(out)
    assert result == {"effective": [], "attached": "tap4", "create_errno": errno.EPERM}
    assert link_names(netns).count("tap4") == 1


def test_exclusive_refuses_an_existing_tap(netns):
    with in_netns(netns.name), tap.open_tap("tap5"):
        with pytest.raises(OSError) as e:
            tap.open_tap("tap5", exclusive=True)
    assert e.value.errno == errno.EBUSY
    assert e.value.filename == "opening tap tap5"


def test_a_device_that_is_not_a_tap_is_refused_with_the_kernels_errno(netns):
    # TUNSETIFF fails on "lo"; the C closes the fd and must keep TUNSETIFF's errno.
    with in_netns(netns.name), pytest.raises(OSError) as e:
        tap.open_tap("lo")
    assert e.value.errno == errno.EINVAL


@pytest.mark.parametrize("name, error", [
    ("", ValueError),
    ("a" * 16, ValueError),
    ("\u00e9" * 8, ValueError),          # 8 characters but 16 bytes
    ("tap%d", ValueError),
    ("tap/0", ValueError),
    ("tap:0", ValueError),
    ("tap 0", ValueError),
    ("tap\t0", ValueError),
    ("tap\n", ValueError),
    (".", ValueError),
    ("..", ValueError),
    ("tap\0", ValueError),
    (b"tap0", TypeError),
    ("tap\x0b", ValueError),
    ("t\u00e0", ValueError),             # "à" is C3 A0, and A0 is a space to the kernel
    ("\u00e0p\u00e0", ValueError),
    ("tap\ud800", ValueError),           # a lone surrogate that stands for no byte
], ids=["empty", "16-bytes", "16-utf8-bytes", "percent", "slash", "colon", "space", "tab",
        "newline", "dot", "dotdot", "nul", "bytes", "vertical-tab", "byte-a0", "byte-a0-twice",
        "lone-surrogate"])
def test_bad_names_are_refused_before_any_syscall(monkeypatch, name, error):
    calls = []

    class NoSyscalls:
        def __getattr__(self, attr):
            if attr.startswith("ukrun_"):
                calls.append(attr)
            return getattr(lib, attr)

    monkeypatch.setattr(tap, "lib", NoSyscalls())
    with pytest.raises(error):
        tap.open_tap(name)
    with pytest.raises(error):
        tap.disable_offloads(name)
    assert calls == []


def test_longest_valid_name_is_accepted():
    assert tap.validate_ifname("a" * (lib.IFNAMSIZ - 1)) == "a" * 15
    assert tap.validate_ifname("tap-0_x.y") == "tap-0_x.y"


def test_one_name_rule_for_taps_and_netlink():
    import ukrun.ifname
    import ukrun.rtnl
    assert tap.validate_ifname is ukrun.ifname.validate_ifname is ukrun.rtnl.validate_ifname


@pytest.mark.parametrize("name, raw", [
    ("t\udce9", b"t\xe9"),                 # not UTF-8: held as surrogateescape does
    ("x\u3000", b"x\xe3\x80\x80"),          # a space to Python, not to the kernel
    ("x\x1c", b"x\x1c"),
    ("\u00e9" * 7, "\u00e9".encode() * 7),   # 14 bytes
], ids=["not-utf8", "ideographic-space", "control-1c", "14-utf8-bytes"])
def test_names_the_kernel_takes_make_taps_of_exactly_those_bytes(netns, name, raw):
    with in_netns(netns.name), tap.open_tap(name, persist=True) as t:
        assert t.name == name
        tap.disable_offloads(name)
    assert raw in netns.exec("ls", "/sys/class/net", text=False).stdout.split()


def ethtool_k(netns, name):
    """{"generic-receive-offload": "off", ...} from `ethtool -k`, the independent witness."""
    out = netns.exec("ethtool", "-k", name).stdout
    pairs = (line.strip().split(": ", 1) for line in out.splitlines()[1:] if ": " in line)
    return {key: value.split()[0] for key, value in pairs}


OFFLOAD_NAMES = {"gro": "generic-receive-offload", "gso": "generic-segmentation-offload",
                 "tso": "tcp-segmentation-offload"}


def test_disable_offloads_turns_gro_gso_tso_off(netns):
    with in_netns(netns.name), tap.open_tap("tap6") as t:
        # Give the tap TSO as a tender with vnet headers would, so all three start on.
        fcntl.ioctl(t.fd, hdr.TUNSETOFFLOAD, hdr.TUN_F_CSUM | hdr.TUN_F_TSO4 | hdr.TUN_F_TSO6)
        before = ethtool_k(netns, "tap6")
        assert tap.offloads("tap6") == {"gro": True, "gso": True, "tso": True}
        tap.disable_offloads("tap6")
        after = ethtool_k(netns, "tap6")
        assert tap.offloads("tap6") == {"gro": False, "gso": False, "tso": False}
    assert [before[OFFLOAD_NAMES[f]] for f in ("gro", "gso", "tso")] == ["on", "on", "on"]
    assert [after[OFFLOAD_NAMES[f]] for f in ("gro", "gso", "tso")] == ["off", "off", "off"]


def test_disable_offloads_on_a_missing_interface(netns):
    with in_netns(netns.name), pytest.raises(OSError) as e:
        tap.disable_offloads("nosuch0")
    assert e.value.errno == errno.ENODEV
    assert e.value.filename == "turning gro off on nosuch0 (SIOCETHTOOL)"
