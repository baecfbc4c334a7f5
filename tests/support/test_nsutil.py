"""The test harness itself: a docker-like container is what Docker would make."""
import os

from nsutil import in_netns


def test_container_looks_like_docker(container):
    link = container.ip_json("link", "show", "eth0")[0]
    assert link["address"] == container.mac
    assert link["mtu"] == container.mtu
    addrs = container.ip_json("-4", "addr", "show", "eth0")[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in addrs] == [(container.ip4, 16)]
    routes = container.ip_json("route", "show", "default")
    assert routes[0]["gateway"] == container.gateway
    ping = container.exec("ping", "-c", "1", "-W", "2", container.gateway)
    assert "1 received" in ping.stdout


def test_in_netns_switches_back(netns):
    before = os.readlink("/proc/thread-self/ns/net")
    with in_netns(netns.name):
        inside = os.readlink("/proc/thread-self/ns/net")
    assert inside != before
    assert os.readlink("/proc/thread-self/ns/net") == before
