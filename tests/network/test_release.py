"""ukrun.network.release: the give-back from a record alone, as pure steps over a snapshot
read from a real namespace (the kernel's own link-local address is the reference)."""
import pytest

from ukrun.kernel.rtnl import Rtnl
from ukrun.network import discovery
from ukrun.network.release import link_local, release_steps
from nsutil import in_netns


@pytest.mark.parametrize("mac", ["02:42:ac:1e:00:02", "9e:a4:d3:9c:fc:31", "00:00:00:00:00:01"])
def test_link_local_is_the_kernels(netns, mac):
    """What the kernel's eui64 address generation makes from the MAC, on a real veth."""
    netns.ip("link", "add", "va0", "address", mac, "type", "veth", "peer", "name", "vb0")
    netns.ip("link", "set", "vb0", "up")
    netns.ip("link", "set", "va0", "up")  # with carrier: the kernel adds its link-local now
    (link,) = netns.ip_json("-6", "addr", "show", "va0")
    kernels = [a["local"] for a in link["addr_info"] if a["scope"] == "link"]
    assert kernels == [str(link_local(mac).ip)]


def test_nothing_to_give_back_from_a_foreign_tap(netns):
    """A tun device named like the tap without a record, and one whose record is for another
    interface: no step at all."""
    netns.ip("tuntap", "add", "tap0", "mode", "tap")
    netns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    with in_netns(netns.name), Rtnl() as rtnl:
        snapshot = discovery.read(rtnl, ("eth0",), tc_links=("eth0",))
    assert release_steps(snapshot, "eth0", "tap0", 0) == []
    mac = netns.ip_json("link", "show", "eth0")[0]["address"]
    netns.ip("link", "set", "tap0", "alias", "ukrun:1 i=net1 w=tc b= 4=10.0.0.2/24 g=10.0.0.1 "
             "o=0 m=%s e=%s" % (mac, mac))
    with in_netns(netns.name), Rtnl() as rtnl:
        snapshot = discovery.read(rtnl, ("eth0",), tc_links=("eth0",))
    assert release_steps(snapshot, "eth0", "tap0", 0) == []
    assert [s.op for s in release_steps(snapshot, "net1", "tap0", 0)] == ["delete_tap"]
