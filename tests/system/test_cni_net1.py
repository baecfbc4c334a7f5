"""A pod wired by a real CNI plugin (bridge + host-local, invoked as a runtime would) that
names its interface net1: ukrun with no --interface hands net1 over, and a guest on the tap
answers ping from the node namespace the bridge lives in."""
import pytest

from cnihost import POD_IP, PodNetwork, missing
from nsutil import in_netns
from tapguest import Guest, ping
from ukrun.planning import Options, plan
from ukrun.runner import apply

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")


@pytest.fixture
def pod_on_net1(tmp_path):
    network = PodNetwork(tmp_path)
    try:
        network.add_bridge(ifname="net1")
        yield network
    finally:
        network.delete()


def test_no_interface_flag_picks_cni_net1_and_the_guest_answers(pod_on_net1, programs):
    pod = pod_on_net1.pod
    result = pod_on_net1.prev_result
    assert [i["name"] for i in result["interfaces"] if i.get("sandbox")] == ["net1"]
    address = result["ips"][0]["address"]
    assert address.split("/")[0] == POD_IP
    mac = pod.ip_json("link", "show", "net1")[0]["address"]
    exe, kernel = programs
    with in_netns(pod.name):
        p = plan(Options(target="spt", unikernel=kernel, tender=exe))
        assert [h.network.interface for h in p.handovers] == ["net1"]
        assert "--ipv4=%s" % address in p.argv and "--net:service=tap0" in p.argv
        assert any("no eth0: handing over net1" in n for n in p.notes)
        apply(p).close()
    assert all(a["family"] != "inet" for a in pod.ip_json("addr", "show", "net1")[0]["addr_info"])
    guest = Guest(pod.name, "tap0", mac, ip=POD_IP)
    try:
        assert ping(pod_on_net1.node, POD_IP)
    finally:
        guest.close()
