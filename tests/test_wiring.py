"""Wiring plans as data: what each wiring does, in which order, with which undo; MACs; records.

Pure: the kernel is a View built here. What the kernel reports after a real run is checked in
test_runner.py and test_cli.py.
"""
import ipaddress
import json
from dataclasses import dataclass
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ukrun.wiring import (ALIAS_MAX, Record, View, Wanted, parse_mac, plan_steps, random_mac)

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


@dataclass(frozen=True)
class FakeAddress:
    interface: object
    scope: int = 0
    index: int = 2


ADDRS = (FakeAddress(ipaddress.ip_interface("172.30.0.2/16")),
         FakeAddress(ipaddress.ip_interface("172.30.0.9/16")),  # a secondary
         FakeAddress(ipaddress.ip_interface("2001:db8::2/64")),
         FakeAddress(ipaddress.ip_interface("fe80::42:acff:fe1e:2/64"), scope=253))
ROUTES = ("default via 172.30.0.1", "172.30.0.0/16")  # opaque to the planner


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
    return [(s.op, s.args.get("name") or s.args.get("source")
             or str(s.args.get("address").interface)) for s in steps]


def test_tc_plan_from_scratch():
    steps = plan_steps(wanted("tc"), fresh_view())
    assert ops(steps) == [
        ("create_tap", "tap0"), ("set_alias", "tap0"), ("set_mtu", "tap0"),
        ("disable_offloads", "tap0"), ("set_up", "tap0"),
        ("add_ingress", "eth0"), ("add_redirect", "eth0"),
        ("add_ingress", "tap0"), ("add_redirect", "tap0"),
        ("delete_address", "2001:db8::2/64"), ("delete_address", "172.30.0.9/16"),
        ("delete_address", "172.30.0.2/16")]
    by_op = {(s.op, s.args.get("name", s.args.get("source"))): s for s in steps}
    assert by_op[("add_redirect", "eth0")].args == {"source": "eth0", "target": "tap0"}
    assert by_op[("add_redirect", "tap0")].args == {"source": "tap0", "target": "eth0"}
    assert by_op[("set_mtu", "tap0")].args["mtu"] == 1400
    assert [u.op for u in by_op[("create_tap", "tap0")].undo] == ["delete_tap"]
    assert [u.op for u in by_op[("add_ingress", "eth0")].undo] == ["delete_ingress"]


def test_tc_keeps_the_interface_mac():
    assert "set_mac" not in [s.op for s in plan_steps(wanted("tc"), fresh_view())]


def test_flush_takes_ipv4_and_global_ipv6_and_restores_routes_last():
    steps = [s for s in plan_steps(wanted("tc"), fresh_view()) if s.op == "delete_address"]
    moved = [str(s.args["address"].interface) for s in steps]
    assert "fe80::42:acff:fe1e:2/64" not in moved
    # The undo log runs backwards: the first deletion's undo runs last and brings the routes.
    assert steps[0].undo[0].args["routes"] == ROUTES
    assert all(s.undo[0].args["routes"] == () for s in steps[1:])
    undo_order = [str(s.undo[0].args["addresses"][0].interface) for s in reversed(steps)]
    assert undo_order == ["172.30.0.2/16", "172.30.0.9/16", "2001:db8::2/64"]


def test_bridge_plan_reproduces_the_old_runner():
    steps = plan_steps(wanted("bridge"), fresh_view())
    assert ops(steps) == [
        ("create_bridge", "br0"), ("create_tap", "tap0"), ("set_alias", "tap0"),
        ("set_mtu", "tap0"), ("disable_offloads", "tap0"),
        ("enslave", "eth0"), ("enslave", "tap0"),
        ("delete_address", "2001:db8::2/64"), ("delete_address", "172.30.0.9/16"),
        ("delete_address", "172.30.0.2/16"),
        ("set_up", "tap0"), ("set_up", "br0")]
    assert all(s.args["master"] == "br0" for s in steps if s.op == "enslave")
    assert [u.op for u in steps[0].undo] == ["delete_link"]


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
    """What a first run leaves: eth0 without addresses, the tap (and bridge) in place."""
    alias = record(wiring, "br0" if wiring == "bridge" else None).to_alias()
    master = 4 if wiring == "bridge" else None
    links = {"eth0": FakeLink(2, "eth0", NEW_MAC if master else MAC, 1400, master=master),
             "tap0": FakeLink(3, "tap0", "aa:00:00:00:00:03", 1400, alias=alias, master=master,
                              kind="tun")}
    if wiring == "bridge":
        links["br0"] = FakeLink(4, "br0", "aa:00:00:00:00:04", 1400, kind="bridge")
    return View(links=links, addresses=ADDRS[3:], routes=(),
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
    assert [u.op for u in steps[2].undo] == ["create_bridge", "set_up"]
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


# --- MACs ---

@pytest.mark.parametrize("text", ["", "02:42:ac:1e:00", "02:42:ac:1e:00:0g", "0242ac1e0002",
                                  "02-42-ac-1e-00-02", "2:42:ac:1e:00:02", "01:00:5e:00:00:01",
                                  "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00"])
def test_parse_mac_refuses(text):
    with pytest.raises(ValueError):
        parse_mac(text)


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


# --- records ---

def test_record_round_trip_and_size():
    rec = Record("eth0-long-name", "bridge", "br-very-longnm",
                 ipaddress.IPv4Interface("255.255.255.255/32"),
                 ipaddress.IPv4Address("255.255.255.254"), True, "ff:ff:ff:ff:ff:fe",
                 "ff:ff:ff:ff:ff:fe")
    alias = rec.to_alias()
    assert len(alias.encode()) <= ALIAS_MAX
    assert Record.from_alias(alias) == rec
    no_gw = Record("eth0", "tc", None, ipaddress.IPv4Interface("10.0.0.2/8"), None, False,
                   None, MAC)
    assert Record.from_alias(no_gw.to_alias()) == no_gw


GOOD_ALIAS = "ukrun:1 i=eth0 w=tc b= 4=172.30.0.2/16 g=172.30.0.1 o=0 m=%s e=%s" % (MAC, MAC)


def test_record_alias_reads_as_documented():
    rec = Record.from_alias(GOOD_ALIAS)
    assert rec == Record("eth0", "tc", None, ipaddress.IPv4Interface("172.30.0.2/16"),
                         ipaddress.IPv4Address("172.30.0.1"), False, MAC, MAC)
    assert rec.to_alias() == GOOD_ALIAS


@pytest.mark.parametrize("alias", [
    None, "", "my tap", "ukrun:", "ukrun:{", "ukrun:1", GOOD_ALIAS.replace(":1 ", ":2 "),
    GOOD_ALIAS.replace("w=tc", "w=vxlan"), GOOD_ALIAS.replace("4=172.30.0.2/16", "4=nope"),
    GOOD_ALIAS.replace("g=172.30.0.1", "g=300.1.1.1"), GOOD_ALIAS.replace("o=0", "o=yes"),
    GOOD_ALIAS.replace("i=eth0", "i="), GOOD_ALIAS.replace(" e=" + MAC, ""),
    GOOD_ALIAS + " x=1", GOOD_ALIAS + " i=eth1", GOOD_ALIAS.replace(" b= ", " b  "),
    'ukrun:{"v":1,"w":"tc","i":"eth0","4":"172.30.0.2/16","e":"x"}',
])
def test_foreign_or_broken_aliases_are_not_records(alias):
    assert Record.from_alias(alias) is None


def test_a_value_with_white_space_is_refused():
    with pytest.raises(ValueError, match="white space"):
        Record("eth 0", "tc", None, ipaddress.IPv4Interface("10.0.0.2/8"), None, False, None,
               MAC).to_alias()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_any_alias_text_is_a_record_or_none(text):
    for alias in (text, "ukrun:" + text, "ukrun:1 " + text):
        rec = Record.from_alias(alias)
        assert rec is None or Record.from_alias(rec.to_alias()) == rec


_NAMES = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=15)


@settings(max_examples=200, deadline=None)
@given(_NAMES, st.sampled_from(["tc", "bridge"]), st.none() | _NAMES,
       st.integers(0, 2**32 - 1), st.integers(0, 32), st.none() | st.integers(0, 2**32 - 1),
       st.booleans(), st.none() | st.just(MAC))
def test_record_round_trip(interface, wiring, bridge, ip, prefix, gateway, onlink, guest_mac):
    rec = Record(interface, wiring, bridge,
                 ipaddress.IPv4Interface((ip, prefix)),
                 None if gateway is None else ipaddress.IPv4Address(gateway), onlink,
                 guest_mac, MAC)
    assert Record.from_alias(rec.to_alias()) == rec
