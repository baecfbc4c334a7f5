"""Discovery in docker-like containers: exactly what the kernel holds, as `ip -j` reports it."""
import json
import socket
from ipaddress import IPv4Address, IPv6Address, ip_interface, ip_network

import pytest
from nsutil import in_netns

from ukrun.network import discovery as netconf
from ukrun.kernel.ffi import lib
from ukrun.errors import DiscoveryError
from ukrun.network.discovery import Snapshot, config, discover
from ukrun.network.record import Record
from ukrun.kernel.rtnl_objects import Address, Link, Route
from ukrun.kernel.rtnl import Rtnl


def discover_in(ns, interface="eth0"):
    with in_netns(ns.name):
        return discover(interface)


def witness_routes(ns, interface):
    """Every main-table route through ``interface`` as (dst, gateway), from ip -j."""
    routes = set()
    for family, default in (("-4", "0.0.0.0/0"), ("-6", "::/0")):
        for r in ns.ip_json(family, "route", "show", "table", "main"):
            if r.get("dev") == interface:
                dst = default if r["dst"] == "default" else r["dst"]
                routes.add((str(ip_network(dst, strict=False)), r.get("gateway")))
    return routes


def test_discover_in_a_docker_like_container(container):
    config = discover_in(container)
    link = container.ip_json("link", "show", "eth0")[0]
    assert (config.interface, config.index, config.mac, config.mtu) == \
        ("eth0", link["ifindex"], container.mac, container.mtu)
    assert (config.mac, config.mtu) == (link["address"], link["mtu"])
    assert config.ipv4 == ip_interface("%s/%d" % (container.ip4, container.prefix))
    assert config.gateway4 == IPv4Address(container.gateway) and not config.gateway4_onlink
    assert config.ipv6 is None and config.gateway6 is None  # only a link-local address

    addr_info = container.ip_json("addr", "show", "eth0")[0]["addr_info"]
    assert sorted(str(a.interface) for a in config.addresses) == \
        sorted("%s/%d" % (a["local"], a["prefixlen"]) for a in addr_info)
    assert {(str(r.dst), None if r.gateway is None else str(r.gateway)) for r in config.routes} == \
        witness_routes(container, "eth0")
    assert all(r.oif == config.index for r in config.routes)


def test_discover_reports_the_mtu_the_kernel_holds(docker_host):
    container = docker_host.container(mtu=1400)
    assert discover_in(container).mtu == 1400 == container.ip_json("link", "show", "eth0")[0]["mtu"]


def test_to_json_is_plain_data(container):
    config = discover_in(container)
    data = json.loads(json.dumps(config.to_json()))
    assert (data["ipv4"], data["gateway4"], data["mac"]) == ("172.30.0.2/16", "172.30.0.1", container.mac)
    assert data["ipv6"] is None
    assert sorted(a["address"] for a in data["addresses"]) == \
        sorted(str(a.interface) for a in config.addresses)
    assert [r["dst"] for r in data["routes"]] == [str(r.dst) for r in config.routes]


def test_discover_with_a_given_socket_leaves_it_open(container):
    with in_netns(container.name):
        rtnl = Rtnl()
    with rtnl:
        assert discover("eth0", rtnl=rtnl).ipv4 == ip_interface("172.30.0.2/16")
        assert rtnl.link("eth0").name == "eth0"


def test_secondary_address_is_not_the_primary(container):
    container.ip("addr", "add", "172.30.0.9/16", "dev", "eth0")
    config = discover_in(container)
    assert config.ipv4 == ip_interface("172.30.0.2/16")
    assert ip_interface("172.30.0.9/16") in {a.interface for a in config.addresses}


def test_ipv6_address_and_gateway(container):
    container.ip("-6", "addr", "add", "2001:db8::2/64", "dev", "eth0", "nodad")
    container.ip("-6", "route", "add", "default", "via", "2001:db8::1", "dev", "eth0")
    config = discover_in(container)
    assert config.ipv6 == ip_interface("2001:db8::2/64")
    assert config.gateway6 == IPv6Address("2001:db8::1")
    assert config.ipv4 == ip_interface("172.30.0.2/16")


@pytest.mark.parametrize("onlink", [True, False], ids=["onlink gateway", "gateway behind a link route"])
def test_calico_like_slash_32(container, onlink):
    """Calico gives a /32 and a gateway no prefix covers: 169.254.1.1, reached on the link."""
    container.ip("addr", "flush", "dev", "eth0")
    container.ip("addr", "add", "10.244.1.7/32", "dev", "eth0")
    if onlink:
        container.ip("route", "add", "default", "via", "169.254.1.1", "dev", "eth0", "onlink")
    else:
        container.ip("route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
        container.ip("route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
    config = discover_in(container)
    assert config.ipv4 == ip_interface("10.244.1.7/32")
    assert config.gateway4 == IPv4Address("169.254.1.1")
    assert config.gateway4_onlink is onlink
    witness = container.ip_json("route", "show", "default")[0]
    assert ("onlink" in witness["flags"]) is onlink
    assert {(str(r.dst), None if r.gateway is None else str(r.gateway)) for r in config.routes} == \
        witness_routes(container, "eth0")


def test_missing_interface(container):
    with pytest.raises(DiscoveryError) as e:
        discover_in(container, "eth9")
    assert e.value.message == "interface eth9 not found" and e.value.exit_status == 1


def test_an_ipv6_only_interface(netns):
    netns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    netns.ip("-6", "addr", "add", "2001:db8::2/64", "dev", "eth0", "nodad")
    found = discover_in(netns)
    assert found.ipv4 is None and str(found.ipv6) == "2001:db8::2/64"


def test_interface_without_any_address(netns):
    netns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    with pytest.raises(DiscoveryError) as e:
        discover_in(netns)
    assert e.value.message == "interface eth0 has no global IPv4 or IPv6 address"


def test_interface_with_only_a_link_scope_ipv4(netns):
    netns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    netns.ip("addr", "add", "169.254.3.4/16", "dev", "eth0", "scope", "link")
    message = r"^interface eth0 has no global IPv4 or IPv6 address \(only 169.254.3.4/16\)$"
    with pytest.raises(DiscoveryError, match=message):
        discover_in(netns)


def test_interface_without_mac(netns):
    netns.ip("tuntap", "add", "dev", "tun0", "mode", "tun")
    netns.ip("addr", "add", "10.0.0.1/24", "dev", "tun0")
    with pytest.raises(DiscoveryError, match="interface tun0 has no MAC address"):
        discover_in(netns, "tun0")


# --- discovery is a pure function of one snapshot ---------------------------------------------

MAC, OWN_MAC = "02:42:ac:1e:00:02", "02:42:ac:1e:00:99"


def _snapshot(addresses=("172.30.0.2/16",), mac=MAC):
    links = (Link(1, "lo", "00:00:00:00:00:00", 65536, lib.IFF_UP, None, None, None),
             Link(2, "eth0", mac, 1500, lib.IFF_UP, None, "veth", None),
             Link(3, "eth1", "02:00:00:00:00:03", 1500, lib.IFF_UP, None, "veth", None))
    routes = (Route(socket.AF_INET, ip_network("0.0.0.0/0"), IPv4Address("10.0.0.1"), 3),
              Route(socket.AF_INET, ip_network("0.0.0.0/0"), IPv4Address("172.30.0.1"), 2),
              Route(socket.AF_INET6, ip_network("::/0"), IPv6Address("fe80::1"), 2))
    return Snapshot(links, tuple(Address(2, ip_interface(a)) for a in addresses), routes)


def test_config_reads_only_the_snapshot():
    found = config(_snapshot(("172.30.0.2/16", "2001:db8::2/64")), "eth0")
    assert (found.index, found.mac, found.mtu, found.source) == (2, MAC, 1500, "discovered")
    assert found.ipv4 == ip_interface("172.30.0.2/16")
    assert found.gateway4 == IPv4Address("172.30.0.1")  # eth1's default route is not eth0's
    assert found.ipv6 == ip_interface("2001:db8::2/64") and found.gateway6 == IPv6Address("fe80::1")
    assert [r.oif for r in found.routes] == [2, 2]


def _record():
    return Record("eth0", "bridge", "br0", ip_interface("172.30.0.7/24"),
                  IPv4Address("172.30.0.254"), False, MAC, OWN_MAC)


def test_a_record_gives_the_interfaces_own_mac():
    # A bridge wiring gave eth0 a fresh MAC: the record holds the one it had.
    found = config(_snapshot(mac="02:00:00:00:00:42"), "eth0", _record())
    assert (found.mac, found.source, found.ipv4) == (OWN_MAC, "discovered",
                                                    ip_interface("172.30.0.2/16"))


def test_an_interface_an_earlier_run_emptied_is_what_it_recorded():
    record = Record(**dict(vars(_record()), ipv6=ip_interface("2001:db8::7/64"),
                           gateway6=IPv6Address("fe80::1")))
    found = config(_snapshot(addresses=("fe80::42/64",)), "eth0", record)
    assert (found.source, found.mac, found.mtu) == ("recorded", OWN_MAC, 1500)
    assert (found.ipv4, found.gateway4) == (ip_interface("172.30.0.7/24"),
                                            IPv4Address("172.30.0.254"))
    assert (found.ipv6, found.gateway6) == (ip_interface("2001:db8::7/64"),
                                            IPv6Address("fe80::1"))
    assert [str(a.interface) for a in found.addresses] == ["fe80::42/64"]
    assert json.loads(json.dumps(found.to_json()))["source"] == "recorded"
    with pytest.raises(DiscoveryError, match="no global IPv4 or IPv6 address"):
        config(_snapshot(addresses=("fe80::42/64",)), "eth0")


def test_a_missing_interface_in_the_snapshot():
    with pytest.raises(DiscoveryError) as failed:
        config(_snapshot(), "eth9", _record())
    assert failed.value.message == "interface eth9 not found"


def test_discover_reads_the_kernel_once(container, monkeypatch):
    kinds = []
    real = Rtnl._exchange

    def counting(self, type_, *args):
        kinds.append(type_)
        return real(self, type_, *args)

    monkeypatch.setattr(Rtnl, "_exchange", counting)
    with in_netns(container.name):
        found = discover("eth0")
        with Rtnl() as rtnl:
            snapshot = netconf.read(rtnl, ("eth0",))
    # Before one snapshot: a link look-up, the addresses and a route dump per family.
    assert kinds == [lib.RTM_GETLINK, lib.RTM_GETADDR, lib.RTM_GETROUTE] * 2
    assert config(snapshot, "eth0") == found
    assert {r.family for r in snapshot.routes} == {socket.AF_INET, socket.AF_INET6}
