"""Wiring plans as data: what each wiring does, in which order, with which undo; MACs; records.

Pure: the kernel is a View built here. What the kernel reports after a real run is checked in
test_runner.py and test_cli.py.
"""
import ipaddress
import json
import socket
from dataclasses import dataclass
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ukrun.network.record import Record, RecordError
from ukrun.network.wiring import View, Wanted, bridge_mark, plan_steps
from ukrun.kernel.mac import parse_mac, random_mac

MAC = "02:42:ac:1e:00:02"
NEW_MAC = "0a:00:00:00:00:01"


@dataclass(frozen=True)
class FakeLink:  # the fields of rtnl.Link the planner reads
    index: int
    name: str
    mac: Optional[str] = None
    mtu: int = 1500
    master: Optional[int] = None
    alias: Optional[str] = None
    up: bool = True
    kind: Optional[str] = None
    addr_gen_mode: Optional[int] = 0  # IN6_ADDR_GEN_MODE_EUI64, the kernel's default


@dataclass(frozen=True)
class FakeRoute:
    family: int
    dst: str
    gateway: Optional[str] = None


@dataclass(frozen=True)
class FakeAddress:
    interface: object
    scope: int = 0
    index: int = 2


ADDRS = (FakeAddress(ipaddress.ip_interface("172.30.0.2/16")),
         FakeAddress(ipaddress.ip_interface("172.30.0.9/16")),  # a secondary
         FakeAddress(ipaddress.ip_interface("2001:db8::2/64")),
         FakeAddress(ipaddress.ip_interface("fe80::42:acff:fe1e:2/64"), scope=253))
ROUTES = (FakeRoute(socket.AF_INET, "0.0.0.0/0", "172.30.0.1"),
          FakeRoute(socket.AF_INET, "172.30.0.0/16"),
          FakeRoute(socket.AF_INET6, "2001:db8::/64"),
          FakeRoute(socket.AF_INET6, "::/0", "fe80::1"))


def record(wiring="tc", bridge=None):
    return Record("eth0", wiring, bridge, ipaddress.IPv4Interface("172.30.0.2/16"),
                  ipaddress.IPv4Address("172.30.0.1"), False, MAC, MAC)


def wanted(wiring="tc", interface_mac=None, hold_tap=False, mtu=1400):
    bridge = "br0" if wiring == "bridge" else None
    return Wanted(wiring, "eth0", "tap0", "br0", mtu, record(wiring, bridge), interface_mac,
                  hold_tap)


def fresh_view(mtu=1400):
    eth0 = FakeLink(2, "eth0", MAC, mtu=mtu, kind="veth")
    return View(links={"eth0": eth0}, addresses=ADDRS, routes=ROUTES, names={2: "eth0"})


def ops(steps):
    """(op, what it works on) per step; a bridge made under a passing name is shown by the
    name it is renamed to."""
    final = {s.args["name"]: s.args["to"] for s in steps if s.op == "rename"}

    def what(step):
        if "route" in step.args:
            return step.args["route"].dst
        name = (step.args.get("name") or step.args.get("source")
                or str(step.args.get("address").interface))
        return final.get(name, name)
    return [(s.op, what(s)) for s in steps]


def test_tc_plan_from_scratch():
    steps = plan_steps(wanted("tc"), fresh_view())
    assert ops(steps) == [
        ("create_tap", "tap0"), ("set_alias", "tap0"), ("persist_tap", "tap0"),
        ("set_mtu", "tap0"), ("disable_offloads", "tap0"), ("set_addr_gen_mode", "tap0"),
        ("set_up", "tap0"),
        ("add_ingress", "eth0"), ("add_redirect", "eth0"),
        ("add_ingress", "tap0"), ("add_redirect", "tap0"),
        ("delete_route", "::/0"), ("set_addr_gen_mode", "eth0"),
        ("delete_address", "2001:db8::2/64"), ("delete_address", "fe80::42:acff:fe1e:2/64"),
        ("delete_address", "172.30.0.9/16"), ("delete_address", "172.30.0.2/16")]
    by_op = {(s.op, s.args.get("name", s.args.get("source"))): s for s in steps}
    assert by_op[("add_redirect", "eth0")].args == {"source": "eth0", "target": "tap0"}
    assert by_op[("add_redirect", "tap0")].args == {"source": "tap0", "target": "eth0"}
    assert by_op[("set_mtu", "tap0")].args["mtu"] == 1400
    assert [u.op for u in by_op[("create_tap", "tap0")].undo] == ["delete_tap"]
    assert [u.op for u in by_op[("add_ingress", "eth0")].undo] == ["delete_ingress"]


def test_tc_keeps_the_interface_mac():
    assert "set_mac" not in [s.op for s in plan_steps(wanted("tc"), fresh_view())]


def test_flush_takes_every_address_and_restores_routes_last():
    steps = [s for s in plan_steps(wanted("tc"), fresh_view()) if s.op == "delete_address"]
    # The undo log runs backwards: the first deletion's undo runs last and brings the routes.
    assert steps[0].undo[0].args["routes"] == ROUTES
    assert all(s.undo[0].args["routes"] == () for s in steps[1:])
    undo_order = [str(s.undo[0].args["addresses"][0].interface) for s in reversed(steps)]
    assert undo_order == ["172.30.0.2/16", "172.30.0.9/16", "fe80::42:acff:fe1e:2/64",
                          "2001:db8::2/64"]


def test_ipv6_stays_off_the_wire_and_its_gateway_route_goes():
    steps = plan_steps(wanted("tc"), fresh_view())
    modes = {s.args["name"]: s for s in steps if s.op == "set_addr_gen_mode"}
    assert {name: s.args["mode"] for name, s in modes.items()} == {"tap0": 1, "eth0": 1}
    assert modes["tap0"].undo == ()  # a new tap goes on undo anyway
    assert [u.args["mode"] for u in modes["eth0"].undo] == [0]
    names = [s.op for s in steps]
    # No link-local address comes back once the mode is NONE: the mode goes first.
    assert names.index("set_addr_gen_mode", names.index("delete_route")) < names.index(
        "delete_address")
    route = next(s for s in steps if s.op == "delete_route")
    assert route.args["route"].gateway == "fe80::1"
    assert route.undo[0].args["routes"] == (route.args["route"],)


def test_an_interface_without_ipv6_gets_no_ipv6_steps():
    view = fresh_view()
    eth0 = FakeLink(2, "eth0", MAC, mtu=1400, kind="veth", addr_gen_mode=None)
    view = View(links={"eth0": eth0}, addresses=ADDRS[:2], routes=ROUTES[:2], names={2: "eth0"})
    steps = plan_steps(wanted("tc"), view)
    assert not [s for s in steps if s.op in ("delete_route",) or s.args.get("name") == "eth0"
                and s.op == "set_addr_gen_mode"]


def test_bridge_plan_reproduces_the_old_runner():
    steps = plan_steps(wanted("bridge"), fresh_view())
    assert ops(steps) == [
        ("create_bridge", "br0"), ("set_alias", "br0"), ("rename", "br0"),
        ("create_tap", "tap0"), ("set_alias", "tap0"), ("persist_tap", "tap0"),
        ("set_mtu", "tap0"), ("disable_offloads", "tap0"),
        ("enslave", "eth0"), ("enslave", "tap0"),
        ("delete_route", "::/0"), ("set_addr_gen_mode", "eth0"),
        ("delete_address", "2001:db8::2/64"), ("delete_address", "fe80::42:acff:fe1e:2/64"),
        ("delete_address", "172.30.0.9/16"), ("delete_address", "172.30.0.2/16"),
        ("set_addr_gen_mode", "tap0"), ("set_addr_gen_mode", "br0"),
        ("set_up", "tap0"), ("set_up", "br0")]
    assert all(s.args["master"] == "br0" for s in steps if s.op == "enslave")
    # Made under a passing name, marked, then named: a run killed in between leaves no
    # unmarked br0 behind.
    passing = steps[0].args["name"]
    assert passing != "br0" and steps[2].args == {"name": passing, "to": "br0"}
    assert [u.op for u in steps[0].undo] == ["delete_link"]
    assert steps[2].undo[0].args == {"name": "br0", "to": passing}
    # The mark is what lets a later run take this bridge down again (and nothing else).
    assert steps[1].args == {"name": passing, "alias": bridge_mark("tap0")}


def test_bridge_with_inherited_mac_moves_the_interface_to_a_new_mac_first():
    steps = plan_steps(wanted("bridge", interface_mac=NEW_MAC), fresh_view())
    names = [s.op for s in steps]
    assert names.index("set_mac") < names.index("enslave")
    set_mac = steps[names.index("set_mac")]
    assert set_mac.args == {"name": "eth0", "mac": NEW_MAC}
    assert set_mac.undo[0].args == {"name": "eth0", "mac": MAC}


def test_hold_tap_for_an_fd():
    steps = plan_steps(wanted("tc", hold_tap=True), fresh_view())
    hold = [s for s in steps if s.op == "hold_tap"]
    assert len(hold) == 1 and hold[0].undo[0].op == "close_tap"


def restarted_view(wiring):
    """What a first run leaves: eth0 without addresses and quiet on IPv6, the tap (and
    bridge) in place."""
    alias = record(wiring, "br0" if wiring == "bridge" else None).to_alias()
    master = 4 if wiring == "bridge" else None
    links = {"eth0": FakeLink(2, "eth0", NEW_MAC if master else MAC, 1400, master=master,
                              addr_gen_mode=1),
             "tap0": FakeLink(3, "tap0", "aa:00:00:00:00:03", 1400, alias=alias, master=master,
                              kind="tun", addr_gen_mode=1)}
    if wiring == "bridge":
        links["br0"] = FakeLink(4, "br0", "aa:00:00:00:00:04", 1400, kind="bridge",
                                alias=bridge_mark("tap0"), addr_gen_mode=1)
    return View(links=links, addresses=(), routes=(),
                ingress=frozenset({"eth0", "tap0"}) if wiring == "tc" else frozenset(),
                redirects=(frozenset({("eth0", "tap0"), ("tap0", "eth0")})
                           if wiring == "tc" else frozenset()),
                previous=Record.from_alias(alias), names={2: "eth0", 3: "tap0", 4: "br0"})


@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_restart_reuses_what_is_there(wiring):
    steps = plan_steps(wanted(wiring), restarted_view(wiring))
    assert [s.op for s in steps] == ["disable_offloads"]


def test_restart_rebuilds_what_is_missing():
    view = restarted_view("tc")
    view = View(**{**view.__dict__, "ingress": frozenset({"eth0"}),
                   "redirects": frozenset({("eth0", "tap0")})})
    steps = plan_steps(wanted("tc"), view)
    assert ops(steps) == [("disable_offloads", "tap0"), ("add_ingress", "tap0"),
                          ("add_redirect", "tap0")]


def test_switching_tc_to_bridge_tears_tc_down_first():
    steps = plan_steps(wanted("bridge"), restarted_view("tc"))
    assert ops(steps)[:2] == [("delete_ingress", "eth0"), ("delete_ingress", "tap0")]
    assert [u.op for u in steps[0].undo] == ["add_ingress", "add_redirect"]
    assert ("create_bridge", "br0") in ops(steps) and ("enslave", "eth0") in ops(steps)


def test_switching_bridge_to_tc_releases_and_deletes_the_bridge():
    steps = plan_steps(wanted("tc"), restarted_view("bridge"))
    assert ops(steps)[:4] == [("release", "eth0"), ("release", "tap0"),
                              ("delete_link", "br0"), ("set_mac", "eth0")]
    assert steps[3].args["mac"] == MAC  # the interface gets its own MAC back
    assert [u.op for u in steps[2].undo] == ["create_bridge", "set_alias", "set_up"]
    assert steps[2].undo[1].args["alias"] == bridge_mark("tap0")
    assert ("add_redirect", "eth0") in ops(steps)


def test_moving_to_another_bridge_keeps_the_fresh_mac():
    want = Wanted("bridge", "eth0", "tap0", "br1", 1400, record("bridge", "br1"))
    steps = plan_steps(want, restarted_view("bridge"))
    assert ops(steps)[:3] == [("release", "eth0"), ("release", "tap0"), ("delete_link", "br0")]
    assert "set_mac" not in [s.op for s in steps]  # eth0 keeps the MAC the first run gave it
    assert ("create_bridge", "br1") in ops(steps)
    assert [s.args["master"] for s in steps if s.op == "enslave"] == ["br1", "br1"]


def test_steps_are_json():
    steps = plan_steps(wanted("bridge", interface_mac=NEW_MAC), fresh_view())
    text = json.dumps([s.to_json() for s in steps])
    assert "172.30.0.2/16" in text and "remove 172.30.0.2/16 from eth0" in text


def test_unknown_wiring():
    with pytest.raises(ValueError):
        plan_steps(wanted("vxlan"), fresh_view())


# --- ukrun only takes down what it marked as its own ---

def _with(view, **links):
    names = {**view.names, **{link.index: link.name for link in links.values()}}
    return View(**{**view.__dict__, "links": {**view.links, **links}, "names": names})


def _touched(steps):
    return {s.args.get(key) for s in steps for s in (s, *s.undo)
            for key in ("name", "source", "target", "master")} - {None}


@pytest.mark.parametrize("br0", [
    FakeLink(4, "br0", kind="bridge"),  # no mark: an older ukrun's, or someone else's
    FakeLink(4, "br0", kind="bridge", alias=bridge_mark("tap9")),  # another tap's wiring
    FakeLink(4, "br0", kind="veth", alias=bridge_mark("tap0")),  # the mark on a non-bridge
], ids=["unmarked", "another tap's", "not a bridge"])
@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_a_record_naming_a_link_ukrun_did_not_mark_is_refused(br0, wiring):
    view = _with(restarted_view("bridge"), br0=br0)
    with pytest.raises(RecordError, match=r"^record on tap0: b='br0' names br0, which ukrun "
                                          r"did not make"):
        plan_steps(wanted(wiring), view)


def test_a_recorded_bridge_that_is_gone_is_not_taken_down():
    view = restarted_view("bridge")
    view = View(**{**view.__dict__, "links": {k: v for k, v in view.links.items() if k != "br0"}})
    steps = plan_steps(wanted("tc"), view)
    assert "br0" not in _touched(steps)
    assert ("set_mac", "eth0") in ops(steps)  # eth0 still gets its own MAC back


def test_a_marked_bridge_with_someone_elses_port_is_released_from_but_kept():
    view = _with(restarted_view("bridge"), eth1=FakeLink(5, "eth1", master=4, kind="veth"))
    steps = plan_steps(wanted("tc"), view)
    assert ops(steps)[:2] == [("release", "eth0"), ("release", "tap0")]
    assert "delete_link" not in [s.op for s in steps]
    assert "eth1" not in _touched(steps)


def test_a_wanted_bridge_taken_by_someone_else_is_not_used():
    view = _with(fresh_view(), br0=FakeLink(4, "br0", kind="bridge"))
    with pytest.raises(ValueError, match="br0 exists and was not made by ukrun"):
        plan_steps(wanted("bridge"), view)


# --- MACs ---

@pytest.mark.parametrize("text", ["", "02:42:ac:1e:00", "02:42:ac:1e:00:0g", "0242ac1e0002",
                                  "02-42-ac-1e-00-02", "2:42:ac:1e:00:02", "01:00:5e:00:00:01",
                                  "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00",
                                  # what int(x, 16) takes but a MAC is not
                                  " a:bb:cc:dd:ee:ff", "+a:bb:cc:dd:ee:ff", "0_:bb:cc:dd:ee:ff",
                                  "0x:bb:cc:dd:ee:ff", "\u0660a:bb:cc:dd:ee:ff",
                                  "02:00:00:00:00:01,romfile=/etc/shadow", MAC + "\n", MAC + " "])
def test_parse_mac_refuses(text):
    with pytest.raises(ValueError):
        parse_mac(text)


@pytest.mark.parametrize("text, message", [
    ("01:00:5e:00:00:01", "multicast"), ("ff:ff:ff:ff:ff:ff", "multicast"),
    ("00:00:00:00:00:00", "not a usable MAC"), ("+a:bb:cc:dd:ee:ff", "not a MAC address like"),
])
def test_parse_mac_says_why(text, message):
    with pytest.raises(ValueError, match=message):
        parse_mac(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20))
def test_parse_mac_takes_only_six_pairs_of_hex_digits(text):
    import re

    try:
        mac = parse_mac(text)
    except ValueError:
        assert not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", text) or (
            int(text[:2], 16) & 1 or text.strip("0:") == "")
    else:
        assert re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", mac) and mac == text.lower()


def test_parse_mac_normalises():
    assert parse_mac("02:42:AC:1E:00:02") == MAC


def test_random_mac_is_locally_administered_unicast():
    for raw in (bytes(6), b"\xff" * 6, b"\x01\x02\x03\x04\x05\x06"):
        mac = random_mac(raw)
        first = int(mac[:2], 16)
        assert first & 0x02 and not first & 0x01
        assert mac[3:] == ":".join("%02x" % b for b in raw[1:])
    macs = {random_mac() for _ in range(50)}
    assert len(macs) == 50
    assert all(parse_mac(m) == m for m in macs)


# --- several interfaces: each plan touches its own links alone ------------------------------

@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_each_interfaces_plan_touches_its_own_links_alone(wiring):
    """The runner plans each interface from one snapshot and undoes them one after the other
    (ukrun.runner._undo): that holds only if no two plans touch the same link or address."""
    net1 = FakeLink(5, "net1", NEW_MAC, kind="veth")
    view = _with(fresh_view(), net1=net1)
    addresses1 = (FakeAddress(ipaddress.ip_interface("10.0.0.2/24"), index=5),
                  FakeAddress(ipaddress.ip_interface("fe80::8:ff:fe00:1/64"), scope=253,
                              index=5))
    routes1 = (FakeRoute(socket.AF_INET, "10.0.0.0/24"),)
    view1 = View(**{**view.__dict__, "addresses": addresses1, "routes": routes1})
    record1 = Record("net1", wiring, "br1" if wiring == "bridge" else None,
                     ipaddress.IPv4Interface("10.0.0.2/24"), None, False, NEW_MAC, NEW_MAC)
    plans = [plan_steps(wanted(wiring), view),
             plan_steps(Wanted(wiring, "net1", "tap1", "br1", 1500, record1), view1)]
    touched = []
    for steps, index in zip(plans, (2, 5)):
        final = {s.args["name"]: s.args["to"] for s in steps if s.op == "rename"}
        names = {final.get(n, n) for n in _touched(steps)}
        names |= {s.args["interface"] for step in steps for s in (step, *step.undo)
                  if "interface" in s.args}
        assert {s.args["address"].index for s in steps if "address" in s.args} == {index}
        touched.append(names)
    assert touched[0] & touched[1] == set()
    assert touched[1] == ({"net1", "tap1", "br1"} if wiring == "bridge" else {"net1", "tap1"})
