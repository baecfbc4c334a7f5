"""Route netlink: objects from real kernel bytes, the exchange logic, and every operation
against the kernel inside test namespaces, with `ip -j` / `tc -j` as independent witnesses."""
import errno
import fcntl
import json
import os
import socket
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_interface, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nsutil import in_netns

from ukrun._ffi import lib
from ukrun.netlink import Done, Header, Message, NlMsgErr, attr_string, encode, parse
from ukrun.rtnl import Address, NetlinkError, Route, Rtnl
from ukrun.rtnl_objects import (address_from_message, address_request, filter_from_message, format_mac,
                                link_from_message, parse_mac, qdisc_from_message, redirect_request,
                                route_from_message, route_request)

with open(os.path.join(os.path.dirname(__file__), "data", "netlink_replies.json")) as _f:
    REPLIES = json.load(_f)


def fixture_bodies(dump, type_):
    return [m.body for h in REPLIES["dumps"][dump] for m in parse(bytes.fromhex(h)) if m.type == type_]


# --- pure: errors, MACs, objects ---------------------------------------------------------

def test_netlink_error_names_the_operation():
    e = NetlinkError(errno.EEXIST, "creating bridge br0")
    assert str(e) == "creating bridge br0: [Errno 17] File exists"
    assert isinstance(e, OSError)
    assert (e.errno, e.strerror, e.op, e.ext_ack) == (17, "File exists", "creating bridge br0", None)
    e = NetlinkError(errno.EOPNOTSUPP, "creating link x0", "Unknown device type")
    assert str(e) == "creating link x0: [Errno 95] Operation not supported (Unknown device type)"


def test_mac_text():
    assert parse_mac("02:42:AC:1e:00:02") == b"\x02\x42\xac\x1e\x00\x02"
    assert format_mac(b"\x02\x42\xac\x1e\x00\x02") == "02:42:ac:1e:00:02"


@pytest.mark.parametrize("text", ["", "02:42:ac:1e:00", "02:42:ac:1e:00:02:03", "0g:42:ac:1e:00:02",
                                  "2:42:ac:1e:00:002", "02-42-ac-1e-00-02", None])
def test_mac_text_rejected(text):
    with pytest.raises(ValueError):
        parse_mac(text)


def test_links_from_real_bytes():
    links = [link_from_message(b) for b in fixture_bodies("links", lib.RTM_NEWLINK)]
    assert [dict(index=l.index, name=l.name, mac=l.mac, mtu=l.mtu, kind=l.kind, alias=l.alias,
                 master=l.master, up=l.up) for l in links] == REPLIES["expect"]["links"]


def test_addresses_from_real_bytes():
    addrs = [address_from_message(b) for b in fixture_bodies("addresses", lib.RTM_NEWADDR)]
    ours = [dict(index=a.index, address=str(a.interface), scope=a.scope, label=a.label,
                 secondary=bool(a.flags & lib.IFA_F_SECONDARY)) for a in addrs]
    by_place = lambda a: (a["index"], a["address"])  # noqa: E731 (ip groups by link, the dump by family)
    assert sorted(ours, key=by_place) == sorted(REPLIES["expect"]["addresses"], key=by_place)


@pytest.mark.parametrize("dump", ["routes4", "routes6"])
def test_routes_from_real_bytes(dump):
    tables = {"main": lib.RT_TABLE_MAIN, "local": lib.RT_TABLE_LOCAL}
    types = {"unicast": lib.RTN_UNICAST, "local": lib.RTN_LOCAL, "broadcast": lib.RTN_BROADCAST,
             "multicast": lib.RTN_MULTICAST, "anycast": lib.RTN_ANYCAST}
    bodies = fixture_bodies(dump, lib.RTM_NEWROUTE)
    routes = sorted(((r.table, str(r.dst), r.oif), r) for r in map(route_from_message, bodies))
    expect = sorted(((tables[e["table"]], e["dst"], e["oif"]), e) for e in REPLIES["expect"][dump])
    assert [key for key, _ in routes] == [key for key, _ in expect]
    for (_, route), (_, e) in zip(routes, expect):
        assert route.gateway == (None if e["gateway"] is None else ip_address(e["gateway"]))
        assert (route.type, route.onlink) == (types[e["type"]], e["onlink"])


def test_qdiscs_and_filters_from_real_bytes():
    qdiscs = [qdisc_from_message(b) for b in fixture_bodies("qdiscs", lib.RTM_NEWQDISC)]
    assert [dict(index=q.index, kind=q.kind) for q in qdiscs] == REPLIES["expect"]["qdiscs"]
    ingress = [q for q in qdiscs if q.kind == "ingress"][0]
    assert (ingress.handle, ingress.parent) == (0xFFFF0000, lib.TC_H_INGRESS)
    filters = [f for f in map(filter_from_message, fixture_bodies("filters", lib.RTM_NEWTFILTER)) if f]
    assert [(f.kind, f.redirect_to) for f in filters] == [("u32", REPLIES["index"]["br0"])]
    assert filters[0].protocol == lib.ETH_P_ALL


def test_redirect_request_is_what_tc_sends():
    tc = REPLIES["tc_redirect_request"]
    (sent,) = parse(bytes.fromhex(tc["hex"]))
    ours = Message(lib.RTM_NEWTFILTER, sent.flags, sent.seq, sent.pid, redirect_request(tc["from"], tc["to"]))
    assert encode(ours).hex() == tc["hex"]


ADDRESSES = [
    Address(2, ip_interface("172.30.0.2/16"), flags=lib.IFA_F_PERMANENT,
            broadcast=IPv4Address("172.30.255.255"), label="eth0"),
    Address(2, ip_interface("172.30.0.9/16"), flags=lib.IFA_F_SECONDARY | lib.IFA_F_PERMANENT,
            label="eth0:1"),
    Address(3, ip_interface("2001:db8::2/64"), flags=lib.IFA_F_NODAD | lib.IFA_F_NOPREFIXROUTE),
    Address(4, ip_interface("10.0.0.1/32"), scope=lib.RT_SCOPE_LINK, peer=IPv4Address("10.0.0.2")),
]
ROUTES = [
    Route(socket.AF_INET, ip_network("0.0.0.0/0"), IPv4Address("172.30.0.1"), 2),
    Route(socket.AF_INET, ip_network("0.0.0.0/0"), IPv4Address("169.254.1.1"), 2, onlink=True, priority=100),
    Route(socket.AF_INET, ip_network("172.30.0.0/16"), None, 2, protocol=lib.RTPROT_KERNEL,
          scope=lib.RT_SCOPE_LINK, prefsrc=IPv4Address("172.30.0.2")),
    Route(socket.AF_INET6, ip_network("::/0"), IPv6Address("fe80::1"), 2, table=1000,
          protocol=lib.RTPROT_STATIC),
]


def through_bytes(type_, body):
    (message,) = parse(encode(Message(type_, body=body)))
    return message.body


@pytest.mark.parametrize("addr", ADDRESSES, ids=str)
def test_address_request_round_trip(addr):
    assert address_from_message(through_bytes(lib.RTM_NEWADDR, address_request(addr))) == addr


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_route_request_round_trip(route):
    assert route_from_message(through_bytes(lib.RTM_NEWROUTE, route_request(route))) == route


@given(st.integers(1, 2 ** 31 - 1), st.ip_addresses(), st.integers(0, 128), st.integers(0, 255),
       st.integers(0, 2 ** 32 - 1),
       st.none() | st.text(min_size=1, max_size=15).filter(lambda s: "\0" not in s))
def test_address_round_trip_fuzzed(index, ip, prefixlen, scope, flags, label):
    interface = ip_interface((ip, min(prefixlen, ip.max_prefixlen)))
    addr = Address(index, interface, scope, flags, label=label)
    assert address_from_message(through_bytes(lib.RTM_NEWADDR, address_request(addr))) == addr


# --- the exchange, against a scripted kernel ---------------------------------------------

class ScriptedKernel:
    """Stands in for the socket: answers each request with datagrams made from its seq."""

    def __init__(self, *answers):
        self.answers = list(answers)  # each: function(seq) -> list of datagrams
        self.pending = []

    def send(self, data):
        seq = parse(data)[0].seq
        self.pending.extend(self.answers.pop(0)(seq))

    def recv_into(self, buffer, nbytes, flags):
        return len(self.pending[0])

    def recv(self, size):
        return self.pending.pop(0)

    def close(self):
        pass


def scripted(*answers):
    rtnl = Rtnl.__new__(Rtnl)
    rtnl._sock, rtnl._seq, rtnl._peek, rtnl._abandoned = ScriptedKernel(*answers), 0, bytearray(1), False
    return rtnl


def link_message(seq, name, flags=lib.NLM_F_MULTI):
    from ukrun.netlink import IfInfoMsg
    body = IfInfoMsg(index=7, attrs=[attr_string(lib.IFLA_IFNAME, name)])
    return Message(lib.RTM_NEWLINK, flags, seq, 0, body)


def test_replies_with_another_seq_are_skipped():
    rtnl = scripted(lambda seq: [encode(link_message(seq - 1, "stale")) + encode(link_message(seq, "lo")),
                                 encode(Message(lib.NLMSG_DONE, lib.NLM_F_MULTI, seq, 0, Done(0)))])
    assert [l.name for l in rtnl.links()] == ["lo"]


def test_dump_error_in_done_raises_with_ext_ack():
    done = Done(-errno.EMSGSIZE, [attr_string(lib.NLMSGERR_ATTR_MSG, "too big")])
    flags = lib.NLM_F_MULTI | lib.NLM_F_ACK_TLVS
    rtnl = scripted(lambda seq: [encode(Message(lib.NLMSG_DONE, flags, seq, 0, done))])
    with pytest.raises(NetlinkError) as e:
        rtnl.links()
    assert (e.value.errno, e.value.op, e.value.ext_ack) == (errno.EMSGSIZE, "listing links", "too big")


def test_interrupted_dump_is_retried():
    def answer(name, flags):
        return lambda seq: [encode(link_message(seq, name, flags)),
                            encode(Message(lib.NLMSG_DONE, 0, seq, 0, Done()))]
    rtnl = scripted(answer("old", lib.NLM_F_MULTI | lib.NLM_F_DUMP_INTR), answer("new", lib.NLM_F_MULTI))
    assert [l.name for l in rtnl.links()] == ["new"]


def test_error_reply_raises_with_the_operation():
    error = NlMsgErr(-errno.EEXIST, Header(type=lib.RTM_NEWLINK))
    rtnl = scripted(lambda seq: [encode(Message(lib.NLMSG_ERROR, lib.NLM_F_CAPPED, seq, 0, error))])
    with pytest.raises(NetlinkError, match=r"^creating bridge br0: \[Errno 17\] File exists$"):
        rtnl.create_bridge("br0")


@pytest.mark.parametrize("name", ["", "x" * 16, "a\0b", 5.0])
def test_bad_names_are_refused_before_any_request(name):
    rtnl = scripted()  # no answers: a request would fail differently
    with pytest.raises(ValueError):
        rtnl.create_bridge(name)


# --- against the kernel, in test namespaces ---------------------------------------------

@pytest.fixture
def rtnl(netns):
    with in_netns(netns.name):
        sock = Rtnl()
    yield sock
    sock.close()


def test_socket_is_close_on_exec(rtnl):
    assert fcntl.fcntl(rtnl.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC


def test_links_agree_with_ip(netns, rtnl):
    netns.ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
    ours = {l.name: l for l in rtnl.links()}
    for link in netns.ip_json("-d", "link", "show"):
        mine = ours[link["ifname"]]
        assert (mine.index, mine.mac, mine.mtu) == (link["ifindex"], link["address"], link["mtu"])
        assert mine.kind == link.get("linkinfo", {}).get("info_kind")
    assert rtnl.link("va") == ours["va"] == rtnl.link(ours["va"].index)


def test_missing_link(rtnl):
    with pytest.raises(NetlinkError) as e:
        rtnl.link("nosuch0")
    assert e.value.errno == errno.ENODEV and "looking up link nosuch0" in str(e.value)
    assert rtnl.find_link("nosuch0") is None


def test_bridge_lifecycle(netns, rtnl):
    bridge = rtnl.create_bridge("br0")
    assert (bridge.name, bridge.kind, bridge.up) == ("br0", "bridge", False)
    assert netns.ip_json("-d", "link", "show", "br0")[0]["linkinfo"]["info_kind"] == "bridge"
    with pytest.raises(NetlinkError) as e:
        rtnl.create_bridge("br0")
    assert e.value.errno == errno.EEXIST
    assert str(e.value) == "creating bridge br0: [Errno 17] File exists"
    rtnl.delete_link(bridge.index)
    assert rtnl.find_link("br0") is None and netns.ip_json("link", "show") and \
        "br0" not in [l["ifname"] for l in netns.ip_json("link", "show")]
    with pytest.raises(NetlinkError, match="deleting link ifindex %d" % bridge.index):
        rtnl.delete_link(bridge.index)


def test_enslave_up_mac_mtu_alias(netns, rtnl):
    netns.ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
    bridge, va = rtnl.create_bridge("br0"), rtnl.link("va")
    rtnl.set_master(va.index, bridge.index)
    rtnl.set_up(bridge.index)
    rtnl.set_mac(va.index, "02:00:00:AA:BB:CC")
    rtnl.set_mtu(va.index, 1400)
    rtnl.set_alias(va.index, "ukrun: moved 172.30.0.2/16")
    link = rtnl.link("va")
    assert (link.master, link.mac, link.mtu, link.alias) == \
        (bridge.index, "02:00:00:aa:bb:cc", 1400, "ukrun: moved 172.30.0.2/16")
    assert rtnl.link("br0").up
    witness = netns.ip_json("-d", "link", "show", "va")[0]
    assert (witness["master"], witness["address"], witness["mtu"], witness["ifalias"]) == \
        ("br0", "02:00:00:aa:bb:cc", 1400, "ukrun: moved 172.30.0.2/16")
    assert "UP" in netns.ip_json("link", "show", "br0")[0]["flags"]
    rtnl.set_alias(va.index, "")
    rtnl.set_master(va.index, None)
    rtnl.set_up(bridge.index, False)
    link = rtnl.link("va")
    assert (link.alias, link.master, rtnl.link("br0").up) == (None, None, False)
    assert "ifalias" not in netns.ip_json("-d", "link", "show", "va")[0]
    with pytest.raises(NetlinkError, match=r"^setting the MTU of va to 10: \[Errno 22\]"):
        rtnl.set_mtu(va.index, 10)
    with pytest.raises(ValueError):
        rtnl.set_mac(va.index, "not a mac")


def test_addresses_and_routes(netns, rtnl):
    netns.ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
    va = rtnl.link("va")
    rtnl.set_up(va.index)
    primary = Address(va.index, ip_interface("10.1.0.2/24"), broadcast=IPv4Address("10.1.0.255"), label="va")
    v6 = Address(va.index, ip_interface("2001:db8::2/64"), flags=lib.IFA_F_NODAD)
    for addr in (primary, v6):
        rtnl.add_address(addr)
    with pytest.raises(NetlinkError, match=r"^adding address 10.1.0.2/24 to va: \[Errno 17\] File exists"):
        rtnl.add_address(primary)
    got = {a.interface: a for a in rtnl.addresses(va.index)}
    assert got[primary.interface].broadcast == IPv4Address("10.1.0.255")
    assert got[primary.interface].label == "va"
    assert v6.interface in got and rtnl.addresses(va.index, socket.AF_INET) == [got[primary.interface]]
    witness = {(a["local"], a["prefixlen"]) for a in netns.ip_json("addr", "show", "va")[0]["addr_info"]}
    assert {("10.1.0.2", 24), ("2001:db8::2", 64)} <= witness

    routes = [Route(socket.AF_INET, ip_network("0.0.0.0/0"), IPv4Address("10.1.0.1"), va.index),
              Route(socket.AF_INET, ip_network("10.9.0.0/16"), IPv4Address("169.254.1.1"), va.index,
                    onlink=True),
              Route(socket.AF_INET6, ip_network("::/0"), IPv6Address("2001:db8::1"), va.index, priority=1024)]
    for route in routes:
        rtnl.add_route(route)
    listed = rtnl.routes(socket.AF_UNSPEC)
    for route in routes:
        assert route in listed
    witness4 = {r["dst"]: r for r in netns.ip_json("-4", "route", "show")}
    assert witness4["default"]["gateway"] == "10.1.0.1"
    assert witness4["10.9.0.0/16"]["gateway"] == "169.254.1.1"
    assert "onlink" in witness4["10.9.0.0/16"]["flags"]
    assert netns.ip_json("-6", "route", "show", "default")[0]["gateway"] == "2001:db8::1"
    for route in routes:
        rtnl.delete_route(route)
    assert not [r for r in rtnl.routes(socket.AF_UNSPEC) if r.gateway is not None]
    assert netns.ip_json("-4", "route", "show", "default") == []
    with pytest.raises(NetlinkError, match=r"^deleting route default via 10.1.0.1 dev va: \[Errno 3\]"):
        rtnl.delete_route(routes[0])

    for addr in (primary, v6):
        rtnl.delete_address(addr)
    assert not {primary.interface, v6.interface} & {a.interface for a in rtnl.addresses(va.index)}
    shown = json.dumps(netns.ip_json("addr", "show", "va"))
    assert "10.1.0.2" not in shown and "2001:db8::2" not in shown


def test_move_addresses_and_routes_and_back(container):
    """What bridge wiring does to eth0, then its undo: the kernel ends where it began."""
    before = (container.ip_json("addr", "show"), container.ip_json("route", "show", "table", "main"))
    with in_netns(container.name):
        rtnl = Rtnl()
    with rtnl:
        eth0, bridge = rtnl.link("eth0"), rtnl.create_bridge("br0")
        rtnl.set_up(bridge.index)
        addrs = rtnl.addresses(eth0.index, socket.AF_INET)
        routes = [r for r in rtnl.routes() if r.oif == eth0.index and r.protocol != lib.RTPROT_KERNEL]
        for addr in addrs:
            rtnl.delete_address(addr)  # takes its routes with it
        for addr in addrs:
            rtnl.add_address(Address(bridge.index, addr.interface, addr.scope, addr.flags,
                                     addr.broadcast, "br0"))
        for route in routes:
            rtnl.add_route(Route(route.family, route.dst, route.gateway, bridge.index))
        assert container.ip_json("-4", "addr", "show", "eth0") == []
        assert container.ip_json("route", "show", "default")[0]["dev"] == "br0"

        for route in routes:
            rtnl.delete_route(Route(route.family, route.dst, route.gateway, bridge.index))
        rtnl.delete_link(bridge.index)
        for addr in addrs:
            rtnl.add_address(addr)
        for route in routes:
            rtnl.add_route(route)
    assert (container.ip_json("addr", "show"), container.ip_json("route", "show", "table", "main")) == before
    assert "1 received" in container.exec("ping", "-c", "1", "-W", "2", container.gateway).stdout


def test_tc_redirect_both_ways(netns, rtnl):
    netns.ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
    va, vb = rtnl.link("va"), rtnl.link("vb")
    with pytest.raises(NetlinkError, match="redirecting ingress of va to vb"):
        rtnl.add_redirect(va.index, vb.index)  # no ingress qdisc yet
    for a, b in ((va, vb), (vb, va)):
        rtnl.add_ingress_qdisc(a.index)
        rtnl.add_redirect(a.index, b.index)
    with pytest.raises(NetlinkError, match=r"^adding an ingress qdisc to va: \[Errno 17\]"):
        rtnl.add_ingress_qdisc(va.index)
    for a, b in ((va, vb), (vb, va)):
        assert [(q.kind, q.handle, q.parent) for q in rtnl.qdiscs(a.index) if q.kind == "ingress"] == \
            [("ingress", 0xFFFF0000, lib.TC_H_INGRESS)]
        assert [(f.kind, f.redirect_to, f.protocol) for f in rtnl.filters(a.index)] == \
            [("u32", b.index, lib.ETH_P_ALL)]
        shown = netns.tc_json("filter", "show", "dev", a.name, "ingress")
        (rule,) = [f for f in shown if "match" in f.get("options", {})]  # not the headers
        assert rule["protocol"] == "all" and rule["options"]["match"]["mask"] == "0"
        (action,) = rule["options"]["actions"]
        assert (action["kind"], action["mirred_action"], action["direction"], action["to_dev"],
                action["control_action"]["type"]) == ("mirred", "redirect", "egress", b.name, "stolen")
    for a in (va, vb):
        rtnl.delete_ingress_qdisc(a.index)
        assert rtnl.filters(a.index) == [] and not [q for q in rtnl.qdiscs(a.index) if q.kind == "ingress"]
    assert not [q for q in netns.tc_json("qdisc", "show") if q["kind"] == "ingress"]
    with pytest.raises(NetlinkError, match="deleting the ingress qdisc of va"):
        rtnl.delete_ingress_qdisc(va.index)


def test_tc_redirect_carries_traffic(docker_host, container, netns):
    """eth0 <-> uk0 redirected both ways: a namespace behind uk0 (standing in for the
    unikernel) holds the container's address and reaches the Docker host through eth0."""
    container.ip("addr", "flush", "dev", "eth0")
    container.ip("link", "add", "uk0", "type", "veth", "peer", "name", "uk1", "netns", netns.name)
    netns.ip("link", "set", "uk1", "address", container.mac, "up")
    netns.ip("addr", "add", "%s/%d" % (container.ip4, container.prefix), "dev", "uk1")
    with in_netns(container.name):
        rtnl = Rtnl()
    with rtnl:
        eth0, uk0 = rtnl.link("eth0"), rtnl.link("uk0")
        rtnl.set_up(uk0.index)
        for a, b in ((eth0, uk0), (uk0, eth0)):
            rtnl.add_ingress_qdisc(a.index)
            rtnl.add_redirect(a.index, b.index)
    assert "1 received" in netns.exec("ping", "-c", "1", "-W", "2", container.gateway).stdout
    assert "1 received" in docker_host.exec("ping", "-c", "1", "-W", "2", container.ip4).stdout


def test_a_dump_cut_short_does_not_wedge_the_socket(netns, rtnl, monkeypatch):
    """Ctrl-C in the middle of a dump: the next request still works (the kernel would
    answer EBUSY to a new dump while the old one is unread)."""
    import ukrun.rtnl
    for n in range(20):
        netns.ip("link", "add", "va%d" % n, "type", "veth", "peer", "name", "vb%d" % n)
    expected = sorted(l["ifname"] for l in netns.ip_json("link", "show"))

    def interrupted(data):
        raise KeyboardInterrupt
    with monkeypatch.context() as patched:
        patched.setattr(ukrun.rtnl, "parse", interrupted)
        with pytest.raises(KeyboardInterrupt):
            rtnl.links()
    assert sorted(l.name for l in rtnl.links()) == expected
    assert rtnl.link("lo").name == "lo"
