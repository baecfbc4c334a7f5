"""Which interface and which tap a run takes when --interface or --tap is not given, from the
container's links alone (planning.default_interface, planning.choose_names,
options.default_taps): pure, on Link values as rtnetlink reports them."""
import pytest
from hypothesis import given, strategies as st

from ukrun.errors import DiscoveryError
from ukrun.guest.targets import TARGETS
from ukrun.kernel.ffi import lib
from ukrun.kernel.rtnl_objects import Link
from ukrun.network.survey import ukrun_links
from ukrun.options import default_taps, per_interface
from ukrun.planning import Options, choose_names, default_interface

MAC = "02:42:ac:1e:00:02"
RECORD = "ukrun:1 i=%s w=tc b= 4=10.0.2.100/24 g=10.0.2.2 o=0 m=" + MAC + " e=" + MAC
BRIDGED = "ukrun:1 i=%s w=bridge b=br0 4=10.0.2.100/24 g=10.0.2.2 o=0 m=" + MAC + " e=" + MAC


def link(index, name, kind="veth", alias=None, flags=lib.IFF_UP):
    return Link(index, name, None if name == "lo" else MAC, 1500, flags, None, kind, alias)


LO = link(1, "lo", kind=None, flags=lib.IFF_UP | lib.IFF_LOOPBACK)


def choose(links, **fields):
    notes = []
    o = choose_names(Options(target="spt", unikernel="k", **fields), links, notes)
    return o.interface, o.tap, notes


def test_eth0_first_even_beside_others():
    assert default_interface([LO, link(2, "net1"), link(3, "eth0")], {}) == ("eth0", None)


def test_the_only_interface_besides_lo_and_the_note_says_so():
    name, note = default_interface([LO, link(2, "tap0", kind="tun")], {})
    assert name == "tap0"
    assert note == "no eth0: handing over tap0, the container's only interface besides lo"


def test_several_without_eth0_are_refused_in_one_line_naming_them():
    with pytest.raises(DiscoveryError) as e:
        default_interface([LO, link(2, "net1"), link(3, "net2")], {})
    assert str(e.value) == ("no eth0, and the container has 2 interfaces: net1, net2 "
                            "(pass --interface NAME (repeatable for several) to say which)")


@pytest.mark.parametrize("host_link", [
    link(2, "docker0", kind="bridge"), link(2, "bond0", kind="bond"),
    link(2, "dummy0", kind="dummy"), link(2, "ens3", kind=None),
    Link(2, "enp1s0", MAC, 1500, lib.IFF_UP, None, "macvlan", None, parent_dev="0000:00:03.0"),
    Link(2, "port0", MAC, 1500, lib.IFF_UP, 7, "veth", None),
])
def test_a_hosts_only_interface_is_never_taken(host_link):
    """--network host on a host whose one interface is its bridge (docker0, say), a bond, a
    NIC or a bridge's port: refused, naming it, never handed over."""
    with pytest.raises(DiscoveryError) as e:
        default_interface([LO, host_link], {})
    assert str(e.value).startswith("interface eth0 not found, and %s" % host_link.name)
    assert "--network host" in str(e.value) and "--interface %s" % host_link.name in str(e.value)


def test_no_interface_at_all():
    with pytest.raises(DiscoveryError) as e:
        default_interface([LO, link(2, "ukrun-lock", kind="dummy")], {})
    assert str(e.value).startswith("interface eth0 not found") and "--interface" in str(e.value)


def test_rootless_podman_slirp4netns_gets_tap1():
    # slirp4netns names the container's one interface tap0: the guest's tap is the next one.
    interface, tap, notes = choose([LO, link(2, "tap0", kind="tun")])
    assert (interface, tap) == (("tap0",), ("tap1",))
    assert notes == ["no eth0: handing over tap0, the container's only interface besides lo"]


def test_a_restart_finds_the_tap_its_earlier_run_chose():
    # The first run handed tap0 to tap1; the record on tap1 makes it ukrun's, not a choice.
    links = [LO, link(2, "tap0", kind="tun"), link(3, "tap1", kind="tun", alias=RECORD % "tap0")]
    assert ukrun_links(links) == {"tap1": "tap0"}
    interface, tap, _ = choose(links)
    assert (interface, tap) == (("tap0",), ("tap1",))


def test_a_restart_of_a_bridged_run_does_not_count_the_bridge():
    links = [LO, link(2, "net1"), link(3, "br0", kind="bridge"),
             link(4, "tap0", kind="tun", alias=BRIDGED % "net1")]
    assert choose(links, wiring="bridge")[:2] == (("net1",), ("tap0",))


def test_an_explicit_interface_named_tap0_moves_the_default_tap():
    o = Options(target="spt", unikernel="k", interface=("tap0",))
    assert [e.tap for e in per_interface(o, TARGETS["spt"])] == ["tap1"]


def test_an_explicit_tap_is_kept_even_when_taken():
    # The survey then refuses it ("already exists and was not made by ukrun").
    assert choose([LO, link(2, "eth0"), link(3, "tap0", kind="tun")],
                  tap=("tap0",))[:2] == (("eth0",), ("tap0",))


def test_a_foreign_tap0_moves_the_default_on():
    assert choose([LO, link(2, "eth0"), link(3, "tap0", kind="tun")])[:2] == (
        ("eth0",), ("tap1",))


def test_several_interfaces_keep_their_positions():
    links = [LO, link(2, "eth0"), link(3, "net1")]
    assert choose(links, interface=("eth0", "net1"))[:2] == (("eth0", "net1"), ("tap0", "tap1"))
    assert choose(links, interface=("eth0", "net1"), tap=("tap1",))[:2] == (
        ("eth0", "net1"), ("tap1", "tap2"))


def test_an_invalid_record_keeps_its_tap_so_the_survey_refuses_it():
    links = [LO, link(2, "eth0"), link(3, "tap0", kind="tun", alias="ukrun:1 i=eth0 junk")]
    assert ukrun_links(links) == {"tap0": None}
    assert choose(links)[:2] == (("eth0",), ("tap0",))


names = st.text(alphabet="abt0123p", min_size=1, max_size=5)


@given(st.lists(names, max_size=4, unique=True), st.lists(names, max_size=3, unique=True),
       st.lists(names, max_size=6))
def test_default_taps_never_collide(interfaces, given_taps, taken):
    given_taps = [t for t in given_taps if t not in interfaces][:len(interfaces)]
    taps = default_taps(tuple(interfaces), tuple(given_taps), tuple(taken))
    assert len(taps) == len(interfaces) and taps[:len(given_taps)] == tuple(given_taps)
    assert len(set(taps) | set(interfaces)) == 2 * len(interfaces)
    assert not set(taps[len(given_taps):]) & (set(taken) | set(interfaces))
