"""A container wired by a real CNI plugin (bridge + host-local, invoked as a runtime would)
that names its interface net1: ukrun with no --interface hands net1 over, and a guest on the
tap answers ping from the host-like namespace the bridge lives in."""
import pytest

import cni
from nsutil import Netns, in_netns, unique
from test_runner import Guest, ping
from ukrun.planning import Options, plan
from ukrun.runner import apply

SUBNET = "10.0.0.0/24"

pytestmark = pytest.mark.skipif(cni.available("bridge", "host-local") is not None,
                                reason=cni.available("bridge", "host-local") or "")


@pytest.fixture
def cni_container(tmp_path):
    """(host-like netns, container netns, CNI ADD result) for a bridge network, net1."""
    host, box = Netns(unique("ukh")), None
    config = cni.bridge_config("uk-test", "cni-uk0", SUBNET, tmp_path / "leases")
    added = False
    try:
        box = Netns(unique("ukc"))
        result = cni.add(config, host.name, box.name, "net1", box.name)
        added = True
        yield host, box, result
    finally:
        try:
            if added:
                cni.delete(config, host.name, box.name, "net1", box.name)
        finally:
            if box is not None:
                box.delete()
            host.delete()


def test_no_interface_flag_picks_cni_net1_and_the_guest_answers(cni_container, programs):
    host, box, result = cni_container
    address = [ip["address"] for ip in result["ips"]][0]  # "10.0.0.2/24"
    assert [i["name"] for i in result["interfaces"] if i.get("sandbox")] == ["net1"]
    mac = box.ip_json("link", "show", "net1")[0]["address"]
    exe, kernel = programs
    with in_netns(box.name):
        p = plan(Options(target="spt", unikernel=kernel, tender=exe))
        assert [h.network.interface for h in p.handovers] == ["net1"]
        assert "--ipv4=%s" % address in p.argv and "--net:service=tap0" in p.argv
        assert any("no eth0: handing over net1" in n for n in p.notes)
        apply(p).close()
    assert box.ip_json("addr", "show", "net1")[0]["addr_info"] == [] or all(
        a["family"] != "inet" for a in box.ip_json("addr", "show", "net1")[0]["addr_info"])
    guest = Guest(box.name, "tap0", mac, ip=address.split("/")[0])
    try:
        assert ping(host, address.split("/")[0])
    finally:
        guest.close()
