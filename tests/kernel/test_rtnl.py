"""Route netlink: objects from real kernel bytes, the exchange logic, and every operation
against the kernel inside test namespaces, with `ip -j` / `tc -j` as independent witnesses."""
import errno
import fcntl
import json
import os
import socket
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_interface, ip_network

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from nsutil import in_netns
from sysheaders import lib as hdr
from tree import DATA

from ukrun.kernel.ffi import lib
from ukrun.kernel.netlink import (Attr, Attrs, Message, NetlinkParseError, attr_nested,
                                  attr_scalar, attr_string, encode)
from ukrun.kernel.netlink_bodies import Done, Header, IfInfoMsg, NlMsgErr, TcMsg, parse
from ukrun.kernel.rtnl_objects import Address, Route
from ukrun.kernel.rtnl import NetlinkError, Rtnl
from ukrun.kernel.rtnl_objects import (TunInfo, address_from_message, address_request,
                                       filter_from_message, link_from_message, qdisc_from_message,
                                       redirect_request, route_from_message, route_request,
                                       tun_info)
from ukrun.kernel.mac import format_mac, mac_bytes
from ukrun.valueclass import fields

with open(os.path.join(DATA, "netlink_replies.json")) as _f:
    REPLIES = json.load(_f)


def fixture_bodies(dump, type_):
    return [m.body for h in REPLIES["dumps"][dump] for m in parse(bytes.fromhex(h)) if m.type == type_]


# --- pure: errors, MACs, objects ---------------------------------------------------------

def test_netlink_error_names_the_operation():
    # The words are the C library's (musl says "Not supported" where glibc says "Operation
    # not supported"), so they are compared with its strerror, not with one libc's text.
    exists, unsupported = os.strerror(errno.EEXIST), os.strerror(errno.EOPNOTSUPP)
    e = NetlinkError(errno.EEXIST, "creating bridge br0")
    assert str(e) == "creating bridge br0: [Errno 17] %s" % exists
    assert isinstance(e, OSError)
    assert (e.errno, e.strerror, e.op, e.ext_ack) == (17, exists, "creating bridge br0", None)
    e = NetlinkError(errno.EOPNOTSUPP, "creating link x0", "Unknown device type")
    assert str(e) == "creating link x0: [Errno 95] %s (Unknown device type)" % unsupported


def test_mac_text():
    assert mac_bytes("02:42:AC:1e:00:02") == b"\x02\x42\xac\x1e\x00\x02"
    assert format_mac(b"\x02\x42\xac\x1e\x00\x02") == "02:42:ac:1e:00:02"


@pytest.mark.parametrize("text", ["", "02:42:ac:1e:00", "02:42:ac:1e:00:02:03", "0g:42:ac:1e:00:02",
                                  "2:42:ac:1e:00:002", "02-42-ac-1e-00-02", None])
def test_mac_text_rejected(text):
    with pytest.raises(ValueError):
        mac_bytes(text)


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
    tables = {"main": lib.RT_TABLE_MAIN, "local": hdr.RT_TABLE_LOCAL}
    types = {"unicast": lib.RTN_UNICAST, "local": hdr.RTN_LOCAL, "broadcast": hdr.RTN_BROADCAST,
             "multicast": hdr.RTN_MULTICAST, "anycast": hdr.RTN_ANYCAST}
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
    Address(2, ip_interface("172.30.0.2/16"), flags=hdr.IFA_F_PERMANENT,
            broadcast=IPv4Address("172.30.255.255"), label="eth0"),
    Address(2, ip_interface("172.30.0.9/16"), flags=lib.IFA_F_SECONDARY | hdr.IFA_F_PERMANENT,
            label="eth0:1"),
    Address(3, ip_interface("2001:db8::2/64"), flags=hdr.IFA_F_NODAD | lib.IFA_F_NOPREFIXROUTE),
    Address(4, ip_interface("10.0.0.1/32"), scope=hdr.RT_SCOPE_LINK, peer=IPv4Address("10.0.0.2")),
]
ROUTES = [
    Route(socket.AF_INET, ip_network("0.0.0.0/0"), IPv4Address("172.30.0.1"), 2),
    Route(socket.AF_INET, ip_network("0.0.0.0/0"), IPv4Address("169.254.1.1"), 2, onlink=True, priority=100),
    Route(socket.AF_INET, ip_network("172.30.0.0/16"), None, 2, protocol=hdr.RTPROT_KERNEL,
          scope=hdr.RT_SCOPE_LINK, prefsrc=IPv4Address("172.30.0.2")),
    Route(socket.AF_INET6, ip_network("::/0"), IPv6Address("fe80::1"), 2, table=1000,
          protocol=hdr.RTPROT_STATIC),
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


def link_message(seq, name, flags=hdr.NLM_F_MULTI):
    from ukrun.kernel.netlink_bodies import IfInfoMsg
    body = IfInfoMsg(index=7, attrs=[attr_string(lib.IFLA_IFNAME, name)])
    return Message(lib.RTM_NEWLINK, flags, seq, 0, body)


def test_replies_with_another_seq_are_skipped():
    rtnl = scripted(lambda seq: [encode(link_message(seq - 1, "stale")) + encode(link_message(seq, "lo")),
                                 encode(Message(lib.NLMSG_DONE, hdr.NLM_F_MULTI, seq, 0, Done(0)))])
    assert [l.name for l in rtnl.links()] == ["lo"]


def test_dump_error_in_done_raises_with_ext_ack():
    done = Done(-errno.EMSGSIZE, [attr_string(lib.NLMSGERR_ATTR_MSG, "too big")])
    flags = hdr.NLM_F_MULTI | lib.NLM_F_ACK_TLVS
    rtnl = scripted(lambda seq: [encode(Message(lib.NLMSG_DONE, flags, seq, 0, done))])
    with pytest.raises(NetlinkError) as e:
        rtnl.links()
    assert (e.value.errno, e.value.op, e.value.ext_ack) == (errno.EMSGSIZE, "listing links", "too big")


def test_interrupted_dump_is_retried():
    def answer(name, flags):
        return lambda seq: [encode(link_message(seq, name, flags)),
                            encode(Message(lib.NLMSG_DONE, 0, seq, 0, Done()))]
    rtnl = scripted(answer("old", hdr.NLM_F_MULTI | lib.NLM_F_DUMP_INTR),
                    answer("new", hdr.NLM_F_MULTI))
    assert [l.name for l in rtnl.links()] == ["new"]


def test_error_reply_raises_with_the_operation():
    error = NlMsgErr(-errno.EEXIST, Header(type=lib.RTM_NEWLINK))
    rtnl = scripted(lambda seq: [encode(Message(lib.NLMSG_ERROR, lib.NLM_F_CAPPED, seq, 0, error))])
    with pytest.raises(NetlinkError, match=r"^creating bridge br0: \[Errno 17\] File exists$"):
        rtnl.create_bridge("br0")


@pytest.mark.parametrize("name, error", [
    ("", ValueError), ("x" * 16, ValueError), ("a\0b", ValueError), (5.0, TypeError),
    ("br%d", ValueError), ("a b", ValueError), ("a/b", ValueError), ("a:b", ValueError), (".", ValueError),
    ("a\x0bb", ValueError), ("t\u00e0", ValueError), ("a\ud800", ValueError)],
    ids=["empty", "16 bytes", "nul", "float", "percent-d", "space", "slash", "colon", "dot",
         "vertical tab", "byte a0 (the kernel's isspace)", "lone surrogate"])
def test_bad_names_are_refused_before_any_request(name, error):
    rtnl = scripted()  # no answers: a request would fail differently
    with pytest.raises(error):
        rtnl.create_bridge(name)
    with pytest.raises(error):
        rtnl.link(name)


def old_kernel_reply(error):
    """An NLMSG_ERROR as kernels before 4.12 send an ack, or an error on a NETLINK_CAP_ACK
    socket: the request's header alone, and neither NLM_F_CAPPED nor NLM_F_ACK_TLVS."""
    return lambda seq: [encode(Message(lib.NLMSG_ERROR, 0, seq, 0,
                                       NlMsgErr(error, Header(56, lib.RTM_NEWLINK, 0x605, seq))))]


def test_acks_and_errors_of_kernels_before_4_12():
    rtnl = scripted(old_kernel_reply(0), old_kernel_reply(-errno.EEXIST))
    rtnl.set_mtu(7, 1400)  # acked
    with pytest.raises(NetlinkError, match=r"^creating bridge br0: \[Errno 17\] File exists$"):
        rtnl.create_bridge("br0")


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


def test_bridge_lifecycle(netns, rtnl):
    bridge = rtnl.create_bridge("br0")
    assert (bridge.name, bridge.kind, bridge.up) == ("br0", "bridge", False)
    assert netns.ip_json("-d", "link", "show", "br0")[0]["linkinfo"]["info_kind"] == "bridge"
    with pytest.raises(NetlinkError) as e:
        rtnl.create_bridge("br0")
    assert e.value.errno == errno.EEXIST
    assert str(e.value) == "creating bridge br0: [Errno 17] File exists"
    rtnl.delete_link(bridge.index)
    assert "br0" not in [l["ifname"] for l in netns.ip_json("link", "show")]
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
    v6 = Address(va.index, ip_interface("2001:db8::2/64"), flags=hdr.IFA_F_NODAD)
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
    with pytest.raises(NetlinkError, match=r"^adding route default via 10.1.0.1 dev va: \[Errno 17\]"):
        rtnl.add_route(routes[0])

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
        routes = [r for r in rtnl.routes() if r.oif == eth0.index and r.protocol != hdr.RTPROT_KERNEL]
        for addr in addrs:
            rtnl.delete_address(addr)  # takes its routes with it
        for addr in addrs:
            rtnl.add_address(Address(bridge.index, addr.interface, addr.scope, addr.flags,
                                     addr.broadcast, "br0"))
        for route in routes:
            rtnl.add_route(Route(route.family, route.dst, route.gateway, bridge.index))
        assert container.ip_json("-4", "addr", "show", "eth0") == []
        assert container.ip_json("route", "show", "default")[0]["dev"] == "br0"

        rtnl.delete_link(bridge.index)  # takes the routes through it along
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
    import ukrun.kernel.rtnl
    for n in range(20):
        netns.ip("link", "add", "va%d" % n, "type", "veth", "peer", "name", "vb%d" % n)
    expected = sorted(l["ifname"] for l in netns.ip_json("link", "show"))

    def interrupted(data):
        raise KeyboardInterrupt
    with monkeypatch.context() as patched:
        patched.setattr(ukrun.kernel.rtnl, "split", interrupted)
        with pytest.raises(KeyboardInterrupt):
            rtnl.links()
    assert sorted(l.name for l in rtnl.links()) == expected
    assert rtnl.link("lo").name == "lo"


# --- foreign state: what others put in the namespace never breaks a read ---------------------

def with_attrs(body, attrs):
    """``body`` with other attributes, through bytes, as the kernel would send it."""
    values = {name: getattr(body, name) for name in fields(body)}
    values["attrs"] = Attrs(attrs)
    (message,) = parse(encode(Message(MESSAGE_TYPES[type(body).__name__], body=type(body)(**values))))
    return message.body


MESSAGE_TYPES = {"IfInfoMsg": lib.RTM_NEWLINK, "IfAddrMsg": lib.RTM_NEWADDR, "RtMsg": lib.RTM_NEWROUTE,
                 "TcMsg": lib.RTM_NEWTFILTER}
# Each decoder, the real bodies it is fed, and the attribute types it reads: any other type,
# whatever it holds, must leave its result as it was.
DECODERS = {
    "link": (link_from_message, fixture_bodies("links", lib.RTM_NEWLINK),
             {lib.IFLA_IFNAME, lib.IFLA_IFALIAS, lib.IFLA_ADDRESS, lib.IFLA_MTU, lib.IFLA_MASTER,
              lib.IFLA_LINKINFO, lib.IFLA_PARENT_DEV_NAME, lib.IFLA_PARENT_DEV_BUS_NAME,
              lib.IFLA_AF_SPEC}),  # its IPv6 part holds IFLA_INET6_ADDR_GEN_MODE
    "address": (address_from_message, fixture_bodies("addresses", lib.RTM_NEWADDR),
                {lib.IFA_LOCAL, lib.IFA_ADDRESS, lib.IFA_BROADCAST, lib.IFA_LABEL, lib.IFA_FLAGS}),
    "route": (route_from_message, fixture_bodies("routes4", lib.RTM_NEWROUTE)
              + fixture_bodies("routes6", lib.RTM_NEWROUTE),
              {lib.RTA_DST, lib.RTA_GATEWAY, lib.RTA_OIF, lib.RTA_TABLE, lib.RTA_PRIORITY, lib.RTA_PREFSRC}),
    "qdisc": (qdisc_from_message, fixture_bodies("qdiscs", lib.RTM_NEWQDISC), {lib.TCA_KIND}),
    "filter": (filter_from_message, fixture_bodies("filters", lib.RTM_NEWTFILTER),
               {lib.TCA_KIND, lib.TCA_OPTIONS}),
}
# Text a decoder reads but never fails on: names, labels and kinds are whatever bytes the
# kernel holds (kinds decide nothing unless they are ASCII words ukrun knows).
TEXT = {"link": [lib.IFLA_IFNAME, lib.IFLA_IFALIAS, lib.IFLA_ADDRESS, lib.IFLA_PARENT_DEV_NAME,
                 lib.IFLA_PARENT_DEV_BUS_NAME],
        "address": [lib.IFA_LABEL], "qdisc": [lib.TCA_KIND]}

any_attr = st.builds(Attr, st.integers(0, lib.NLA_TYPE_MASK & 0xFFFF), st.binary(max_size=40),
                     st.sampled_from([0, lib.NLA_F_NESTED, lib.NLA_F_NET_BYTEORDER]))


def _decode(decoder, body):
    try:
        return decoder(body)
    except NetlinkParseError:
        return NetlinkParseError


@given(st.sampled_from(sorted(DECODERS)), st.data())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_attributes_a_decoder_does_not_read_never_change_its_result(name, data):
    decoder, bodies, reads = DECODERS[name]
    body = data.draw(st.sampled_from(bodies))
    extra = data.draw(st.lists(any_attr.filter(lambda a: a.type not in reads), max_size=6))
    attrs = list(body.attrs)
    for attr in extra:
        attrs.insert(data.draw(st.integers(0, len(attrs))), attr)
    assert decoder(with_attrs(body, attrs)) == decoder(body)


@given(st.sampled_from(sorted(TEXT)), st.data())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_odd_text_never_makes_a_decoder_fail(name, data):
    decoder, bodies, _ = DECODERS[name]
    body = data.draw(st.sampled_from(bodies))
    odd = data.draw(st.lists(st.builds(Attr, st.sampled_from(TEXT[name]), st.binary(max_size=40)),
                             min_size=1, max_size=4))
    decoded = decoder(with_attrs(body, list(body.attrs) + odd))
    if name == "link":
        names = [a.data for a in odd if a.type == lib.IFLA_IFNAME]
        if names:  # the name goes back to the kernel as the bytes it came as
            assert decoded.name.encode("utf-8", "surrogateescape") == names[-1].split(b"\0")[0]
        if decoded.alias is not None:
            decoded.alias.encode()  # only UTF-8 text: no record is read from anything else


def test_an_alias_that_is_not_utf8_is_none():
    """lo as `ip link set lo alias $'caf\\xe9'` leaves it: readable, and no record."""
    lo = [b for b in DECODERS["link"][1] if b.attrs.string(lib.IFLA_IFNAME) == "lo"][0]
    link = link_from_message(with_attrs(lo, list(lo.attrs) + [Attr(lib.IFLA_IFALIAS, b"caf\xe9")]))
    assert (link.name, link.alias) == ("lo", None)


@given(st.sampled_from(sorted(DECODERS)), st.data())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_any_attribute_anywhere_raises_nothing_but_netlink_parse_error(name, data):
    decoder, bodies, reads = DECODERS[name]
    body = data.draw(st.sampled_from(bodies))
    read_attr = st.builds(Attr, st.sampled_from(sorted(reads)), st.binary(max_size=40))
    extra = data.draw(st.lists(st.one_of(any_attr, read_attr), min_size=1, max_size=6))
    attrs = list(body.attrs)
    for attr in extra:
        attrs.insert(data.draw(st.integers(0, len(attrs))), attr)
    _decode(decoder, with_attrs(body, attrs))


ETH0 = [b for b in DECODERS["link"][1] if b.attrs.string(lib.IFLA_IFNAME) == "eth0"][0]


@pytest.mark.parametrize("attr, named", [
    (Attr(lib.IFLA_MTU, b"\x05\xdc\0"), "IFLA_MTU"),
    (Attr(lib.IFLA_MASTER, b"\1\0"), "IFLA_MASTER"),
    (Attr(lib.IFLA_LINKINFO, b"\x03\0\1\0"), "IFLA_LINKINFO"),
])
def test_a_malformed_attribute_a_link_needs_is_named(attr, named):
    with pytest.raises(NetlinkParseError, match=r"^link %d: %s: " % (ETH0.index, named)):
        link_from_message(with_attrs(ETH0, list(ETH0.attrs) + [attr]))


def test_a_filter_ukrun_does_not_read_may_hold_anything():
    """Only u32's options are read: a bpf (or any other) classifier's are not even parsed."""
    body = TcMsg(index=3, parent=0xFFFFFFF1, attrs=[attr_string(lib.TCA_KIND, "bpf"),
                                                    Attr(lib.TCA_OPTIONS, b"\x03\0\1\0garbage")])
    filter_ = filter_from_message(with_attrs(body, body.attrs))
    assert (filter_.kind, filter_.redirect_to) == ("bpf", None)


def test_a_parent_device_makes_a_physical_link():
    """What the kernel adds for a NIC on a bus (`ip -d link` shows it as parentbus/parentdev)."""
    assert link_from_message(ETH0).parent_dev is None
    nic = link_from_message(with_attrs(ETH0, list(ETH0.attrs) + [
        attr_string(lib.IFLA_PARENT_DEV_NAME, "0000:00:03.0"),
        attr_string(lib.IFLA_PARENT_DEV_BUS_NAME, "pci")]))
    assert (nic.parent_dev, nic.parent_bus) == ("0000:00:03.0", "pci")
    assert (nic.name, nic.kind) == ("eth0", "veth")


def test_addresses_of_other_links_are_not_decoded():
    from ukrun.kernel.netlink_bodies import IfAddrMsg
    mine = IfAddrMsg(2, 24, 0, 0, 7, [Attr(lib.IFA_LOCAL, b"\x0a\0\0\2")])
    broken = IfAddrMsg(2, 24, 0, 0, 8, [Attr(lib.IFA_LOCAL, b"\x0a\0")])  # 2 bytes: no IPv4 address
    rtnl = scripted(lambda seq: [encode(Message(lib.RTM_NEWADDR, hdr.NLM_F_MULTI, seq, 0, body))
                                 for body in (broken, mine)]
                    + [encode(Message(lib.NLMSG_DONE, hdr.NLM_F_MULTI, seq, 0, Done()))])
    assert [str(a.interface) for a in rtnl.addresses(7)] == ["10.0.0.2/24"]


# --- foreign state, against the kernel -------------------------------------------------------

NOT_UTF8 = "v\udce9"  # the bytes b"v\xe9", as Python holds them (surrogateescape)


def sys_class_net(ns):
    """The link names in the namespace as bytes, from sysfs (ip -j cannot carry them)."""
    return set(ns.exec("ls", "/sys/class/net", text=False).stdout.split())


def test_links_with_names_and_aliases_that_are_not_utf8(netns, rtnl):
    netns.ip("link", "set", "lo", "alias", "caf\udce9")
    netns.ip("link", "add", NOT_UTF8, "type", "veth", "peer", "name", "vb")
    netns.ip("link", "set", "vb", "alias", "ukrun-test")
    assert b"v\xe9" in sys_class_net(netns)
    links = {l.name: l for l in rtnl.links()}
    assert set(links) == {"lo", NOT_UTF8, "vb"}
    assert (links["lo"].alias, links["vb"].alias) == (None, "ukrun-test")
    odd = rtnl.link(NOT_UTF8)  # the name goes back to the kernel as the bytes it came as
    assert odd == links[NOT_UTF8] and odd.kind == "veth"
    rtnl.set_mtu(odd.index, 1400)
    rtnl.set_alias(odd.index, "mine")
    assert rtnl.link(odd.index).mtu == 1400 and rtnl.link(NOT_UTF8).alias == "mine"


def kernel_takes(rtnl, name: bytes) -> bool:
    """Whether the kernel creates a bridge of this name (then removed); no check of ours."""
    kind = attr_nested(lib.IFLA_LINKINFO, [attr_string(lib.IFLA_INFO_KIND, "bridge")])
    body = IfInfoMsg(attrs=[Attr(lib.IFLA_IFNAME, name + b"\0"), kind])
    try:
        rtnl._request(lib.RTM_NEWLINK, body, "creating", lib.NLM_F_CREATE | lib.NLM_F_EXCL)
    except NetlinkError as e:
        return e.errno == errno.EEXIST  # "lo": valid, and taken
    rtnl.delete_link(rtnl.link(name.decode("utf-8", "surrogateescape")).index)
    return True


name_bytes = st.lists(st.one_of(st.sampled_from(list(b"a./: \t\n\v\f\r\xa0\x1c\x7f\x85\xc3\xe9\xff")),
                                st.integers(1, 255)), max_size=17).map(bytes)


@given(name_bytes.filter(lambda b: b"%" not in b and b"\0" not in b))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(b"t\xc3\xa0")  # "tà": its byte A0 is a space to the kernel's isspace()
@example(b"x\xe3\x80\x80")  # U+3000 is a space to Python, not to the kernel
@example(b"x\x1c")
@example(b"lo")
def test_the_name_rule_is_the_kernels(rtnl, name):
    from ukrun.kernel.ifname import validate_ifname
    try:
        ours = validate_ifname(name.decode("utf-8", "surrogateescape")) is not None
    except ValueError:
        ours = False
    assert ours == kernel_takes(rtnl, name), name


def test_foreign_state_breaks_no_discover_inspect_or_run(container, ukrun_exe, tmp_path):
    """Names and aliases someone else left in the container: ukrun reads past them."""
    import ukrun
    container.ip("link", "set", "lo", "alias", "caf\udce9")
    container.ip("link", "add", NOT_UTF8, "type", "veth", "peer", "name", "w\udcff")
    container.ip("link", "set", "w\udcff", "alias", "\udcfe\udcff")
    with in_netns(container.name):
        config = ukrun.discover("eth0")
    assert str(config.ipv4) == "172.30.0.2/16" and config.mac == container.mac
    inspected = container.exec(ukrun_exe, "inspect", check=False)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["ipv4"] == "172.30.0.2/16"
    plan = container.exec(ukrun_exe, "unix", "--dry-run", "/bin/true", check=False)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["network"]["ipv4"] == "172.30.0.2/16"
    run = container.exec(ukrun_exe, "unix", "/bin/true", check=False)
    assert (run.returncode, run.stderr) == (0, "")
    assert "tap0" in {l["ifname"] for l in container.ip_json("link", "show", "type", "tun")}


# --- real NIC or container interface ---------------------------------------------------------

@pytest.mark.parametrize("kind", ["veth", "macvlan", "macvtap", "ipvlan", "netkit", "bridge"])
def test_container_interfaces_have_no_parent_device(netns, rtnl, kind):
    netns.ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
    args = {"veth": [], "bridge": [], "netkit": []}.get(kind, ["link", "va"])
    made = netns.ip("link", "add", *args, "x0", "type", kind, check=False)
    if "Unknown device type" in made.stderr:
        pytest.skip("this kernel has no %s: %s" % (kind, made.stderr.strip()))
    assert made.returncode == 0, made.stderr
    link = rtnl.link("x0")
    assert (link.kind, link.parent_dev, link.parent_bus) == (kind, None, None)
    witness = netns.ip_json("-d", "link", "show", "x0")[0]
    assert "parentdev" not in witness
    assert netns.exec("test", "-e", "/sys/class/net/x0/device", check=False).returncode != 0


def test_physical_nics_of_this_machine_are_physical():
    """The only parented devices here are the machine's own NICs, which no test may move:
    read its namespace (nothing else), and check against sysfs, the kernel's other view."""
    with Rtnl() as rtnl:
        links = rtnl.links()
    checked = 0
    for link in links:
        base = "/sys/class/net/%s" % link.name
        try:
            with open(base + "/ifindex") as f:
                if int(f.read()) != link.index:
                    continue  # this sysfs belongs to another namespace
        except OSError:
            continue
        device = os.path.join(base, "device")
        if os.path.exists(device):
            bus = os.path.basename(os.path.realpath(os.path.join(device, "subsystem")))
            assert (link.parent_dev, link.parent_bus) == \
                (os.path.basename(os.path.realpath(device)), bus), link
            checked += 1
        else:
            assert link.parent_dev is None, link
    if not checked:
        pytest.skip("no interface of this machine sits on a device (/sys/class/net/*/device)")


# --- tun devices: IFLA_LINKINFO > IFLA_INFO_DATA, read only when asked ------------------------

TUN_FIELDS = [("type", lib.IFLA_TUN_TYPE, "u8"), ("pi", lib.IFLA_TUN_PI, "u8"),
              ("persist", lib.IFLA_TUN_PERSIST, "u8"),
              ("multi_queue", lib.IFLA_TUN_MULTI_QUEUE, "u8"),
              ("owner", lib.IFLA_TUN_OWNER, "u32"), ("group", lib.IFLA_TUN_GROUP, "u32")]
# What tun_fill_info also sends and TunInfo leaves out: IFLA_TUN_VNET_HDR, _NUM_QUEUES and
# _NUM_DISABLED_QUEUES come after IFLA_TUN_MULTI_QUEUE; and what a later kernel may add.
OTHER_TUN_ATTRS = sorted(set(range(1, 16)) - {type_ for _, type_, _ in TUN_FIELDS})


def tun_data(info, extra=()):
    """IFLA_INFO_DATA for ``info`` as tun_fill_info lays it out, with ``extra`` attributes."""
    attrs = [attr_scalar(type_, kind, int(getattr(info, field)))
             for field, type_, kind in TUN_FIELDS if getattr(info, field) is not None]
    return Attrs(attrs + list(extra)).pack()


def tun_body(data, kind="tun", index=9):
    linkinfo = [attr_string(lib.IFLA_INFO_KIND, kind)]
    if data is not None:
        linkinfo.append(Attr(lib.IFLA_INFO_DATA, data))
    return with_attrs(IfInfoMsg(index=index), [attr_string(lib.IFLA_IFNAME, "tap0"),
                                               attr_nested(lib.IFLA_LINKINFO, linkinfo)])


tun_infos = st.builds(TunInfo, st.sampled_from([None, lib.IFF_TUN, lib.IFF_TAP, 0, 255]),
                      *[st.one_of(st.none(), st.booleans())] * 3,
                      *[st.one_of(st.none(), st.integers(0, 2 ** 32 - 1))] * 2)


other_tun_attrs = st.builds(Attr, st.sampled_from(OTHER_TUN_ATTRS), st.binary(max_size=12))


@given(tun_infos, st.lists(other_tun_attrs, max_size=4))
@example(TunInfo(lib.IFF_TAP, False, True, False, None, None), [])
def test_tun_info_round_trips_whatever_else_it_holds(info, extra):
    encoded = tun_data(info, extra)
    assert tun_info(encoded) == info
    link = link_from_message(tun_body(encoded))
    assert link.tun == info and link.tun_data == encoded


@given(st.binary(max_size=64))
@example(b"\x05\0\x03\0\x01\0\0\0")  # an IFLA_TUN_TYPE of one byte, unpadded
@example(b"\x08\0\x01\0\0\0")        # IFLA_TUN_OWNER with a rta_len past the end
def test_tun_settings_that_do_not_parse_fail_only_when_read(data):
    link = link_from_message(tun_body(data))
    assert (link.kind, link.tun_data) == ("tun", data)
    try:
        link.tun
    except NetlinkParseError as e:
        assert str(e).startswith("link 9: IFLA_INFO_DATA: ")


@pytest.mark.parametrize("field, type_", [(f, t) for f, t, _ in TUN_FIELDS])
def test_a_tun_attribute_of_the_wrong_size_is_named(field, type_):
    link = link_from_message(tun_body(Attrs([Attr(type_, b"\1\0\0")]).pack()))
    name = {f: "IFLA_TUN_" + f.upper() for f, _, _ in TUN_FIELDS}[field]
    with pytest.raises(NetlinkParseError, match=r"^link 9: IFLA_INFO_DATA: %s: " % name):
        link.tun


def test_only_a_tun_devices_data_is_kept():
    # Another kind's IFLA_INFO_DATA (a bridge's holds timers that change) is not even kept.
    data = tun_data(TunInfo(lib.IFF_TAP, False, True, False, 0, None))
    bridge = link_from_message(tun_body(data, kind="bridge"))
    assert (bridge.kind, bridge.tun_data, bridge.tun) == ("bridge", None, None)
    old = link_from_message(tun_body(None))  # a kernel before 4.15 sends no tun settings
    assert (old.kind, old.tun_data, old.tun) == ("tun", None, None)


def test_tun_settings_agree_with_ip(netns, rtnl):
    netns.ip("tuntap", "add", "tap0", "mode", "tap")
    netns.ip("tuntap", "add", "tun0", "mode", "tun", "multi_queue", "user", "12345")
    netns.ip("tuntap", "add", "tap1", "mode", "tap", "pi", "group", "100")
    netns.ip("tuntap", "add", "tap2", "mode", "tap", "user", "0", "group", "0")
    netns.ip("link", "add", "br0", "type", "bridge")
    types = {"tun": lib.IFF_TUN, "tap": lib.IFF_TAP}
    links = {l.name: l for l in rtnl.links()}
    for link in netns.ip_json("-d", "link", "show"):
        mine = links[link["ifname"]]
        if link.get("linkinfo", {}).get("info_kind") != "tun":
            assert mine.tun is None and mine.tun_data is None
            continue
        data = link["linkinfo"]["info_data"]
        ids = [int(netns.exec("cat", "/sys/class/net/%s/%s" % (mine.name, f)).stdout)
               for f in ("owner", "group")]
        assert mine.tun == TunInfo(types[data["type"]], data["pi"], data["persist"],
                                   data["multi_queue"], *[None if i == -1 else i for i in ids])
    assert links["tun0"].tun.owner == 12345 and links["tap1"].tun.group == 100
    assert links["tap2"].tun.owner == links["tap2"].tun.group == 0
    assert {l.name: l for l in rtnl.links()} == links  # nothing in them changes between dumps
