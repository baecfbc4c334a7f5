"""IPv6 in docker-like containers: eth0's own IPv6 stack leaves the wire to the guest
(no link-local address, so no DAD, router solicitations or MLD from it), its IPv6 routes move
with its addresses, and all of it comes back on undo.
"""
import pytest

from nsutil import in_netns
from snapshots import snapshot
from ukrun.planning import Options, plan
from ukrun.runner import apply


@pytest.fixture
def dual(container):
    """A dual-stack container: eth0 also has 2001:db8::2/64 and a default route via fe80::1."""
    container.ip("-6", "addr", "add", "2001:db8::2/64", "dev", "eth0", "nodad")
    container.ip("-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0")
    return container


def link(ns, name):
    return ns.ip_json("-d", "link", "show", name)[0]


def ipv6_state(ns, name):
    return {"mode": link(ns, name).get("inet6_addr_gen_mode"),
            "addresses": [a["local"] for a in ns.ip_json("-6", "addr", "show", "dev", name)
                          for a in a.get("addr_info", [])],
            "gateways": [r.get("gateway") for r in ns.ip_json("-6", "route", "show", "dev", name)
                         if r.get("gateway")]}


@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_the_interface_leaves_ipv6_to_the_guest_and_gets_it_back(wiring, dual, programs):
    exe, kernel = programs
    before = snapshot(dual)
    assert ipv6_state(dual, "eth0")["mode"] == "eui64"
    with in_netns(dual.name):
        applied = apply(plan(Options("spt", kernel, tender=exe, wiring=wiring)))
        wired = {name: ipv6_state(dual, name) for name in ("eth0", "tap0")}
        applied.undo()
    assert wired["eth0"] == {"mode": "none", "addresses": [], "gateways": []}
    assert wired["tap0"]["mode"] == "none" and wired["tap0"]["addresses"] == []
    after = ipv6_state(dual, "eth0")
    assert after["mode"] == "eui64" and after["gateways"] == ["fe80::1"]
    assert "2001:db8::2" in after["addresses"]
    assert any(a.startswith("fe80::") for a in after["addresses"])
    assert snapshot(dual) == before
