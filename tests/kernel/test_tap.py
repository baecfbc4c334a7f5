"""ukrun.kernel.tap against the kernel, inside test namespaces, with `ip` and `ethtool` as witnesses."""
import errno
import fcntl
import json
import os
import struct
import subprocess
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import sysheaders
from nsutil import in_netns
from sysheaders import lib as hdr
from ukrun.kernel import tap
from ukrun.kernel.ffi import lib
from ukrun.kernel.netlink import Attr, pack_attr


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
from ukrun.kernel import caps, tap
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
    import ukrun.kernel.ifname
    import ukrun.kernel.rtnl
    assert tap.validate_ifname is ukrun.kernel.ifname.validate_ifname is ukrun.kernel.ifname.validate_ifname


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


# --- owners: who may attach without CAP_NET_ADMIN ---------------------------------------------

TREE = os.path.dirname(os.path.dirname(os.path.abspath(tap.__file__)))

# Attach to each named tap as open_tap does (IFF_TAP | IFF_NO_PI, one queue), as whoever runs it:
# prints {name: "ok" | errno}. ukrun from this tree: the venv's Python may be out of a uid's reach.
ATTACH_EACH = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from ukrun.kernel.tap import open_tap
result = {}
for name in sys.argv[2:]:
    try:
        open_tap(name).close()
        result[name] = "ok"
    except OSError as e:
        result[name] = e.errno
print(json.dumps(result))
"""

# /dev/net/tun as Debian's udev makes it (0666), in the attacher's own mount namespace.
OPEN_TUN = 'mount -t tmpfs none /dev/net && mknod -m 666 /dev/net/tun c 10 200 && exec "$@"'

# Who attaches, as setpriv arguments, and the uid and groups that tap_problem is told: root and
# other uids, all without capabilities (a guest after ukrun's drop).
WHO = {
    "root": (["--bounding-set=-all", "--inh-caps=-all"], 0, {0}),
    "uid-1000": (["--reuid=1000", "--regid=1000", "--clear-groups", "--bounding-set=-all",
                  "--inh-caps=-all"], 1000, {1000}),
    "uid-1000-group-100": (["--reuid=1000", "--regid=1000", "--groups=100", "--bounding-set=-all",
                            "--inh-caps=-all"], 1000, {1000, 100}),
    "uid-65534": (["--reuid=65534", "--regid=65534", "--clear-groups", "--bounding-set=-all",
                   "--inh-caps=-all"], 65534, {65534}),
}


def attach_each(netns, who, names):
    argv = WHO[who][0]
    out = netns.exec("unshare", "-m", "--propagation", "private", "sh", "-c", OPEN_TUN, "sh",
                     "setpriv", *argv, sys.executable, "-c", ATTACH_EACH, TREE, *names).stdout
    return json.loads(out)


def sysfs(netns, name, attr):
    return netns.exec("cat", "/sys/class/net/%s/%s" % (name, attr)).stdout.strip()


def test_owner_is_given_before_the_tap_persists(netns):
    with in_netns(netns.name):
        tap.open_tap("mine0", persist=True, owner=1000).close()
        tap.open_tap("free0", persist=True).close()
        with tap.open_tap("mine1") as t:
            t.set_owner(0)
            assert sysfs(netns, "mine1", "owner") == "0"
    assert (sysfs(netns, "mine0", "owner"), sysfs(netns, "free0", "owner")) == ("1000", "-1")
    assert tun_info(netns, "mine0")["persist"] is True


@pytest.mark.parametrize("who, owned_by_root, owned_by_1000, free", [
    ("root", "ok", errno.EPERM, "ok"),            # root without CAP_NET_ADMIN is a uid like others
    ("uid-1000", errno.EPERM, "ok", "ok"),
    ("uid-65534", errno.EPERM, errno.EPERM, "ok"),  # finding 4: an ownerless tap is anyone's
])
def test_only_the_owner_attaches_without_capabilities(netns, who, owned_by_root, owned_by_1000,
                                                      free):
    with in_netns(netns.name):
        tap.open_tap("root0", persist=True, owner=0).close()
        tap.open_tap("user0", persist=True, owner=1000).close()
        tap.open_tap("free0", persist=True).close()
    assert attach_each(netns, who, ["root0", "user0", "free0"]) == {
        "root0": owned_by_root, "user0": owned_by_1000, "free0": free}


def test_ukrun_with_net_admin_attaches_to_a_tap_it_gave_away(netns):
    # The undo and a restart hold the tap again after it was given to the guest's uid.
    with in_netns(netns.name):
        tap.open_tap("user0", persist=True, owner=1000).close()
        with tap.open_tap("user0") as t:
            t.set_persist(False)
    assert "user0" not in link_names(netns)


class FailingLib:
    """ukrun's lib with one C function failing as the kernel would (-1, errno), the rest real;
    records which ukrun_* functions were called."""

    def __init__(self, failing=None, err=errno.EPERM):
        self.failing, self.err, self.calls = failing, err, []

    def __getattr__(self, attr):
        if attr.startswith("ukrun_"):
            self.calls.append(attr)
        if attr != self.failing:
            return getattr(lib, attr)

        def fail(*args):
            tap.ffi.errno = self.err
            return -1
        return fail


def test_a_tap_whose_owner_cannot_be_set_does_not_stay(netns, monkeypatch):
    monkeypatch.setattr(tap, "lib", FailingLib("ukrun_tap_set_owner"))
    with in_netns(netns.name), pytest.raises(OSError) as e:
        tap.open_tap("tap9", persist=True, owner=1000)
    assert (e.value.errno, e.value.filename) == (errno.EPERM, "giving tap tap9 to uid 1000")
    assert "tap_set_persist" not in " ".join(tap.lib.calls)
    assert "tap9" not in link_names(netns)


@pytest.mark.parametrize("uid, error", [
    (-1, ValueError), (2 ** 32 - 1, ValueError), (2 ** 32, ValueError),  # (uid_t)-1 is no uid
    (True, TypeError), ("0", TypeError), (1.0, TypeError), (None, TypeError),
])
def test_bad_owners_are_refused_before_any_syscall(monkeypatch, uid, error):
    fake = FailingLib()
    monkeypatch.setattr(tap, "lib", fake)
    if uid is not None:
        with pytest.raises(error):
            tap.open_tap("tap0", owner=uid)
    with pytest.raises(error):
        tap.Tap(-1, "tap0").set_owner(uid)
    assert fake.calls == []


# --- tap_problem: what the kernel reports, judged as a guest would find it ---------------------

def links_of(netns):
    from ukrun.kernel.rtnl import Rtnl

    with in_netns(netns.name), Rtnl() as rtnl:
        return {link.name: link for link in rtnl.links()}


# Devices a neighbour with CAP_NET_ADMIN can make, and whether a guest can attach to each.
DEVICES = {
    "tap0": ["mode", "tap"],
    "tun0": ["mode", "tun"],
    "mq0": ["mode", "tap", "multi_queue"],
    "tunmq0": ["mode", "tun", "multi_queue", "user", "12345"],
    "u1000": ["mode", "tap", "user", "1000"],
    "u12345": ["mode", "tap", "user", "12345"],
    "g100": ["mode", "tap", "group", "100"],
    "u1000g100": ["mode", "tap", "user", "1000", "group", "100"],
}


@pytest.mark.parametrize("who", sorted(WHO))
def test_tap_problem_agrees_with_the_kernel_on_attaching(netns, who):
    for name, args in DEVICES.items():
        netns.ip("tuntap", "add", name, *args)
    with in_netns(netns.name):
        tap.open_tap("mine0", persist=True, owner=WHO[who][1]).close()
    links = links_of(netns)
    got = attach_each(netns, who, sorted(DEVICES) + ["mine0"])
    _, uid, groups = WHO[who]
    verdicts = {name: tap_verdict(links[name], uid, groups) for name in got}
    assert verdicts == {name: result == "ok" for name, result in got.items()}
    assert verdicts["mine0"] and not verdicts["tun0"] and not verdicts["mq0"]


def tap_verdict(link, uid, groups):
    problem = tap.tap_problem(link, uid, groups)
    assert problem is None or problem.strip() and "\n" not in problem
    return problem is None


@pytest.mark.parametrize("args, problem", [
    (["mode", "tun"], "it is an L3 tun device, which carries no Ethernet frames"),
    (["mode", "tap", "multi_queue"],
     "it is multi-queue, which refuses a guest attaching to one queue"),
    (["mode", "tap", "pi"], "it adds packet information to every frame (IFF_NO_PI is off)"),
    (["mode", "tap", "user", "12345"], "it belongs to uid 12345, and the guest runs as uid 0"),
    (["mode", "tap", "group", "100"], "it belongs to group 100, which the guest is not in"),
    (["mode", "tun", "multi_queue", "user", "5"],
     "it is an L3 tun device, which carries no Ethernet frames; it is multi-queue, which refuses "
     "a guest attaching to one queue; it belongs to uid 5, and the guest runs as uid 0"),
    (["mode", "tap", "user", "0"], None),
    (["mode", "tap"], None),
], ids=["tun", "multi-queue", "pi", "owned", "group", "all-three", "own-uid", "plain"])
def test_tap_problem_names_every_reason(netns, args, problem):
    netns.ip("tuntap", "add", "dev0", *args)
    assert tap.tap_problem(links_of(netns)["dev0"], 0, {0}) == problem


def test_tap_problem_of_what_is_no_persistent_tap(netns):
    netns.ip("link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
    netns.ip("link", "add", "br0", "type", "bridge")
    with in_netns(netns.name), tap.open_tap("held0"):
        links = links_of(netns)
    problems = {name: tap.tap_problem(links[name], 0, {0}) for name in ("veth0", "br0", "lo",
                                                                       "held0")}
    assert problems == {
        "veth0": "it is not a tun/tap device (kind veth)",
        "br0": "it is not a tun/tap device (kind bridge)",
        "lo": "it is not a tun/tap device (kind none)",
        "held0": "it is not persistent: it goes away with its holder's last fd"}


def fake_tun(tun_data, kind="tun"):
    from ukrun.kernel.rtnl_objects import Link

    return Link(7, "tap0", "02:00:00:00:00:07", 1500, 0, None, kind, None, tun_data=tun_data)


@pytest.mark.parametrize("attr, named", [
    (Attr(lib.IFLA_TUN_OWNER, b"\0\0"), "IFLA_TUN_OWNER"),       # a u32 in 2 bytes
    (Attr(lib.IFLA_TUN_TYPE, b"\2\0\0\0"), "IFLA_TUN_TYPE"),  # a u8 in 4
], ids=["owner", "type"])
def test_tap_problem_of_tun_settings_that_do_not_parse(attr, named):
    for data in (pack_attr(attr), pack_attr(attr)[:-2], b"\x05\0"):
        problem = tap.tap_problem(fake_tun(data), 0, {0})
        assert problem.startswith("its tun settings cannot be read (link 7: IFLA_INFO_DATA: ")
    assert named + ": " in tap.tap_problem(fake_tun(pack_attr(attr)), 0, {0})


def test_tap_problem_of_a_kernel_that_reports_no_tun_settings():
    # Before Linux 4.15 a tun device comes without IFLA_INFO_DATA: only the kind is judged.
    assert tap.tap_problem(fake_tun(None), 1000, ()) is None
    assert tap.tap_problem(fake_tun(None, kind="veth"), 0, ()) is not None


@given(st.binary(max_size=64), st.integers(0, 2 ** 32 - 2), st.frozensets(st.integers(0, 70000)))
@example(b"\x05\0\x03\0\x01\0\0\0", 0, frozenset())  # IFLA_TUN_TYPE IFF_TUN
def test_tap_problem_never_raises(data, euid, groups):
    problem = tap.tap_problem(fake_tun(data), euid, groups)
    assert problem is None or (isinstance(problem, str) and problem)
