"""The restart record on the tap's alias is input: anything holding CAP_NET_ADMIN in the pod can
write it. Every field is checked; a record never makes ukrun touch a link it
did not make, and never puts an unchecked word on a command line.

Pure first (tables and hypothesis, with independent validity checks), then real namespaces:
a forged record on tap0 leaves eth1 and a foreign bridge alone.
"""
import ipaddress
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ukrun.kernel.ffi import lib
from ukrun.kernel.rtnl_objects import Link
from ukrun.guest.formats import GuestNet, build
from ukrun.guest.targets import TARGETS, Launch
from ukrun.network.record import ALIAS_MAX, Record, RecordError
from ukrun.network.wiring import View, Wanted, bridge_mark, check_record_against, plan_steps

MAC = "02:42:ac:1e:00:02"
GOOD = "ukrun:1 i=eth0 w=tc b= 4=172.30.0.2/16 g=172.30.0.1 o=0 m=%s e=%s" % (MAC, MAC)
BRIDGED = GOOD.replace("w=tc b=", "w=bridge b=br0")
SHADOW = "02:00:00:00:00:01,romfile=/etc/shadow"


def record(**fields):
    base = dict(interface="eth0", wiring="tc", bridge=None,
                ipv4=ipaddress.IPv4Interface("172.30.0.2/16"),
                gateway4=ipaddress.IPv4Address("172.30.0.1"), gateway4_onlink=False,
                guest_mac=MAC, interface_mac=MAC)
    return Record(**{**base, **fields})


# --- what a valid record is, checked independently of ukrun.network.wiring ------------------------

_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def valid_name(name):
    try:
        size = len(name.encode())
    except (AttributeError, UnicodeError):
        return False
    return (0 < size < 16 and name not in (".", "..")
            and not any(c in "/:%\0" or c.isspace() for c in name))


def valid_mac(mac):
    return (isinstance(mac, str) and _MAC_RE.fullmatch(mac) is not None
            and not int(mac[:2], 16) & 1 and mac != "00:00:00:00:00:00")


def valid_host(ip, network, link_local_ok):
    if (ip.is_multicast or ip.is_loopback or ip.is_reserved or ip.packed[0] == 0
            or (ip.is_link_local and not link_local_ok)):
        return False
    return not (network.prefixlen <= 30 and ip in network
                and ip in (network.network_address, network.broadcast_address))


def assert_valid(rec, tap="tap0"):
    assert isinstance(rec, Record)
    names = [n for n in (rec.interface, rec.bridge, tap) if n is not None]
    assert all(valid_name(n) for n in names) and len(set(names)) == len(names)
    assert rec.wiring in ("tc", "bridge") and (rec.bridge is None) == (rec.wiring == "tc")
    assert ipaddress.IPv4Interface(str(rec.ipv4)) == rec.ipv4 and 1 <= rec.ipv4.network.prefixlen
    assert valid_host(rec.ipv4.ip, rec.ipv4.network, link_local_ok=False)
    if rec.gateway4 is not None:
        assert ipaddress.IPv4Address(str(rec.gateway4)) == rec.gateway4 != rec.ipv4.ip
        assert valid_host(rec.gateway4, rec.ipv4.network, link_local_ok=True)
    assert rec.gateway4_onlink in (False, True) and (rec.gateway4 or not rec.gateway4_onlink)
    assert rec.guest_mac is None or valid_mac(rec.guest_mac)
    assert valid_mac(rec.interface_mac)


# --- tables -------------------------------------------------------------------------------

def test_a_record_reads_as_documented_and_writes_back_the_same():
    rec = Record.from_alias(GOOD, tap="tap0")
    assert rec == record()
    assert rec.to_alias() == GOOD


@pytest.mark.parametrize("rec", [
    record(),
    record(gateway4=None, guest_mac=None),
    record(wiring="bridge", bridge="br0"),
    # Calico: a /32 and a link-local gateway, reached on the link with or without onlink.
    record(ipv4=ipaddress.IPv4Interface("10.244.1.7/32"),
           gateway4=ipaddress.IPv4Address("169.254.1.1"), gateway4_onlink=True),
    record(ipv4=ipaddress.IPv4Interface("10.244.1.7/32"),
           gateway4=ipaddress.IPv4Address("169.254.1.1")),
    # Cilium: a /32 and a gateway of another prefix, behind a link-scope route.
    record(ipv4=ipaddress.IPv4Interface("10.0.1.7/32"),
           gateway4=ipaddress.IPv4Address("10.0.1.213")),
    record(ipv4=ipaddress.IPv4Interface("10.0.0.0/31"), gateway4=ipaddress.IPv4Address("10.0.0.1")),
    record(interface="eth0-long-name", wiring="bridge", bridge="br-very-longnm",
           ipv4=ipaddress.IPv4Interface("223.255.255.254/31"),
           gateway4=ipaddress.IPv4Address("223.255.255.255"), gateway4_onlink=True,
           guest_mac="fe:ff:ff:ff:ff:ff", interface_mac="fe:ff:ff:ff:ff:ff"),
], ids=["docker", "no gateway or guest MAC", "bridge", "calico onlink", "calico link route",
        "cilium", "/31", "longest"])
def test_valid_records_round_trip(rec):
    alias = rec.to_alias()
    assert len(alias.encode()) <= ALIAS_MAX
    assert Record.from_alias(alias, tap="tap0") == rec
    assert rec.check("tap0") is rec


def test_a_tap_handed_over_as_an_fd_is_recorded_as_such():
    rec = Record.from_alias(GOOD, tap="tap0")
    assert rec.handed_as == "name" and rec.version == "1"
    by_fd = Record(*[getattr(rec, f) for f in ("interface", "wiring", "bridge", "ipv4",
                                               "gateway4", "gateway4_onlink", "guest_mac",
                                               "interface_mac", "ipv6", "gateway6")],
                   handed_as="fd")
    alias = by_fd.to_alias()
    assert alias.startswith("ukrun:3 ") and " 6= h= t=fd " in alias
    assert Record.from_alias(alias, tap="tap0") == by_fd


@pytest.mark.parametrize("alias", [None, "", "my tap", "ukrun", "UKRUN:1", " ukrun:1"])
def test_an_alias_that_is_not_ours_is_no_record(alias):
    assert Record.from_alias(alias, tap="tap0") is None


def _bad(old, new):
    assert old in GOOD or old in BRIDGED
    return (GOOD if old in GOOD else BRIDGED).replace(old, new, 1)


# One case per check: the alias, and what the message must say after "record on tap0: ".
BAD = {
    "empty": ("ukrun:", "version '' is not one of 1, 2, 3"),
    "json": ('ukrun:{"v":1,"i":"eth0"}', "a JSON record, but not the one ukrun wrote"),
    "json junk": ('ukrun:{"v":1', "not JSON nor words"),
    "version": (_bad("ukrun:1 ", "ukrun:4 "), "version '4' is not one of 1, 2, 3"),
    "version 2 without its words": (_bad("ukrun:1 ", "ukrun:2 "), "6= h= missing"),
    # How the tap went to the guest: a forged form is refused, and so is the by-name form
    # under version 3 (ukrun writes that one as version 1 or 2).
    "handed as": (_bad("ukrun:1 i=eth0", "ukrun:3 i=eth0").replace(" o=0 ", " o=0 6= h= t=pipe "),
                  "t='pipe' is not one of name, fd"),
    "handed by name as version 3": (
        _bad("ukrun:1 i=eth0", "ukrun:3 i=eth0").replace(" o=0 ", " o=0 6= h= t=name "),
        "not written the way ukrun writes it"),
    "version 1 with the fd word": (_bad("o=0", "o=0 t=fd"), "'t=fd' is not one of the words"),
    "version 1 with a v2 word": (_bad("o=0", "o=0 6=2001:db8::2/64"), "'6=2001:db8::2/64' is"
                                 " not one of the words"),
    "only a version": ("ukrun:1", "i= w= b= 4= g= o= m= e= missing"),
    "missing": (_bad(" e=" + MAC, ""), "e= missing"),
    "unknown": (GOOD + " x=1", "'x=1' is not one of the words i= w="),
    "no equals": (GOOD + " eth1", "'eth1' is not one of the words"),
    "two spaces": (_bad(" b= ", " b=  "), "'' is not one of the words"),
    "twice": (GOOD + " i=eth1", "i= comes twice"),
    "order": (_bad("i=eth0 w=tc", "w=tc i=eth0"), "not written the way ukrun writes it"),
    "no interface": (_bad("i=eth0", "i="), "i='' is no interface name: interface name is empty"),
    "interface name": (_bad("i=eth0", "i=eth0:1"), "i='eth0:1' is no interface name"),
    "interface too long": (_bad("i=eth0", "i=" + "e" * 16), "is no interface name"),
    "interface is tap": (_bad("i=eth0", "i=tap0"), "i='tap0' is the tap itself"),
    "wiring": (_bad("w=tc", "w=vxlan"), "w='vxlan' is not one of tc, bridge"),
    "bridge without b": (_bad("w=tc", "w=bridge"), "w=bridge without b="),
    "b with tc": (_bad("b= ", "b=eth1 "), "b='eth1' is set but w=tc has no bridge"),
    "b is the interface": (_bad("b=br0", "b=eth0"), "b='eth0' is the interface itself"),
    "b is the tap": (_bad("b=br0", "b=tap0"), "b='tap0' is the tap itself"),
    "b name": (_bad("b=br0", "b=br/0"), "b='br/0' is no interface name"),
    "b percent": (_bad("b=br0", "b=br%d"), "b='br%d' is no interface name"),
    "b not utf-8": (_bad("b=br0", "b=br\udcff"), "b='br\\udcff' is not UTF-8"),
    "b unicode space": (_bad("b=br0", "b=br\u2028x"), "b='br\\u2028x' holds white space"),
    "address": (_bad("4=172.30.0.2/16", "4=nope"), "4='nope' is not an IPv4 address/prefix"),
    "v6 address": (_bad("4=172.30.0.2/16", "4=2001:db8::2/64"), "is not an IPv4 address/prefix"),
    "netmask form": (_bad("4=172.30.0.2/16", "4=172.30.0.2/255.255.0.0"),
                     "not written the way ukrun writes it"),
    "no prefix": (_bad("4=172.30.0.2/16", "4=172.30.0.2"), "not written the way ukrun"),
    "prefix 0": (_bad("4=172.30.0.2/16", "4=172.30.0.2/0"), "the prefix must be 1 to 32"),
    "prefix 33": (_bad("4=172.30.0.2/16", "4=172.30.0.2/33"), "not an IPv4 address/prefix"),
    "multicast": (_bad("4=172.30.0.2/16", "4=224.0.0.1/4"), "4=224.0.0.1 is a multicast"),
    "loopback": (_bad("4=172.30.0.2/16", "4=127.0.0.2/8"), "4=127.0.0.2 is a loopback"),
    "unspecified": (_bad("4=172.30.0.2/16", "4=0.0.0.0/8"), "4=0.0.0.0 is a 'this network'"),
    "this network": (_bad("4=172.30.0.2/16", "4=0.1.2.3/8"), "4=0.1.2.3 is a 'this network'"),
    "broadcast": (_bad("4=172.30.0.2/16", "4=255.255.255.255/32"),
                  "4=255.255.255.255 is a reserved or broadcast"),
    "class e": (_bad("4=172.30.0.2/16", "4=240.0.0.2/8"), "4=240.0.0.2 is a reserved"),
    "link-local": (_bad("4=172.30.0.2/16", "4=169.254.3.4/16"), "4=169.254.3.4 is a link-local"),
    "network address": (_bad("4=172.30.0.2/16", "4=172.30.0.0/16"),
                        "4=172.30.0.0 is the network or broadcast address of 172.30.0.0/16"),
    "broadcast address": (_bad("4=172.30.0.2/16", "4=172.30.255.255/16"),
                          "4=172.30.255.255 is the network or broadcast address"),
    "gateway": (_bad("g=172.30.0.1", "g=300.1.1.1"), "g='300.1.1.1' is not an IPv4 address"),
    "gateway is the address": (_bad("g=172.30.0.1", "g=172.30.0.2"),
                               "g=172.30.0.2 is the address itself"),
    "gateway multicast": (_bad("g=172.30.0.1", "g=239.1.1.1"), "g=239.1.1.1 is a multicast"),
    "gateway loopback": (_bad("g=172.30.0.1", "g=127.0.0.1"), "g=127.0.0.1 is a loopback"),
    "gateway unspecified": (_bad("g=172.30.0.1", "g=0.0.0.0"), "g=0.0.0.0 is a 'this network'"),
    "gateway broadcast": (_bad("g=172.30.0.1", "g=172.30.255.255"),
                          "g=172.30.255.255 is the network or broadcast address"),
    "onlink": (_bad("o=0", "o=yes"), "o='yes' is neither 0 nor 1"),
    "onlink without gateway": (_bad("g=172.30.0.1 o=0", "g= o=1"), "o=1 without a gateway"),
    "guest mac suffix": (_bad("m=" + MAC, "m=" + SHADOW), "m='%s': '%s' is not a MAC" % (
        SHADOW, SHADOW)),
    "guest mac space": (_bad("m=" + MAC, "m=\t2:42:ac:1e:00:02"), "is not a MAC address"),
    "guest mac plus": (_bad("m=" + MAC, "m=+2:42:ac:1e:00:02"), "is not a MAC address"),
    "guest mac multicast": (_bad("m=" + MAC, "m=01:00:5e:00:00:01"), "is a multicast MAC"),
    "guest mac zero": (_bad("m=" + MAC, "m=00:00:00:00:00:00"), "not a usable MAC address"),
    "guest mac case": (_bad("m=" + MAC, "m=02:42:AC:1E:00:02"),
                       "m='02:42:AC:1E:00:02' is not in lower case"),
    "no interface mac": (_bad("e=" + MAC, "e="), "e='': '' is not a MAC address"),
    "interface mac": (_bad("e=" + MAC, "e=ff:ff:ff:ff:ff:ff"), "is a multicast MAC"),
}


@pytest.mark.parametrize("alias, message", BAD.values(), ids=BAD.keys())
def test_each_bad_field_is_named(alias, message):
    with pytest.raises(RecordError) as failed:
        Record.from_alias(alias, tap="tap0")
    assert str(failed.value).startswith("record on tap0: ") and message in str(failed.value)
    assert isinstance(failed.value, ValueError)
    assert "ip link delete tap0" in failed.value.hint


def test_without_a_tap_the_message_says_record():
    with pytest.raises(RecordError, match=r"^record: b='eth0' is the interface itself$"):
        Record.from_alias(_bad("b=br0", "b=eth0"))


@pytest.mark.parametrize("fields, message", [
    (dict(ipv4="172.30.0.2/16"), "4='172.30.0.2/16' is not an IPv4 address/prefix"),
    (dict(gateway4="172.30.0.1"), "g='172.30.0.1' is not an IPv4 address"),
    (dict(gateway4_onlink=1), "o=1 is not a boolean"),
    (dict(interface=None), "i=None is no interface name"),
    (dict(guest_mac=b"\x02" * 6), "is not a MAC address"),
])
def test_check_refuses_records_of_the_wrong_types(fields, message):
    with pytest.raises(RecordError) as failed:
        record(**fields).check()
    assert str(failed.value).startswith("record: ") and message in str(failed.value)


# --- hypothesis: from_alias -----------------------------------------------------------------

NAMES = ["eth0", "eth1", "tap0", "br0", "docker0", "lo", "", "e" * 15, "e" * 16, "\u00e9" * 8,
         "e th", "a:b", "a/b", "br%d", ".", "..", "x\0", "x\t", "\uff45\uff54\uff48\uff10",
         "br0,x", "a=b", "\udcff"]
MACS = [MAC, MAC.upper(), SHADOW, " 2:42:ac:1e:00:02", "+2:42:ac:1e:00:02", "01:00:5e:00:00:01",
        "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", MAC + "\n", "\u0660" + MAC[1:], "", MAC + ","]
IPS = ["172.30.0.2/16", "10.244.1.7/32", "0.0.0.0/0", "172.30.0.0/16", "172.30.255.255/16",
       "224.0.0.1/4", "127.0.0.1/8", "169.254.3.4/16", "255.255.255.255/32", "172.30.0.2/0",
       "172.30.0.2/33", "172.30.0.2/255.255.0.0", "172.30.0.2", "::1/128", "nope", "",
       "172.30.0.2/16,x", "172.30.0.02/16", "\u0661.2.3.4/8"]
GATEWAYS = ["", "172.30.0.1", "169.254.1.1", "172.30.0.2", "224.0.0.1", "0.0.0.0", "10.9.9.9",
            "172.30.255.255", "garbage", "1.2.3.4/8"]
HOSTILE = {"i": NAMES, "w": ["tc", "bridge", "vxlan", "", "TC"], "b": NAMES, "4": IPS,
           "g": GATEWAYS, "o": ["0", "1", "2", "", "true"], "m": MACS, "e": MACS}
KEYS = "iwb4gome"


def _hostile(key):
    return st.sampled_from(HOSTILE[key]) | st.text(max_size=20)


def _host(draw):
    """A unicast host address: not 0/8, loopback, link-local, multicast or class E."""
    first = draw(st.sampled_from([o for o in range(1, 224) if o != 127]))
    rest = draw(st.integers(0, 2**24 - 1))
    if first == 169 and rest >> 16 == 254:
        rest ^= 1 << 16
    return ipaddress.IPv4Address(first << 24 | rest)


def _not_edge(ip, network):
    if network.prefixlen <= 30 and ip == network.network_address:
        return ip + 1
    if network.prefixlen <= 30 and ip == network.broadcast_address:
        return ip - 1
    return ip


@st.composite
def valid_records(draw):
    names = ["eth0", "eth1", "net0", "e" * 15, "\u00e9th0"]
    interface = draw(st.sampled_from(names))
    wiring = draw(st.sampled_from(["tc", "bridge"]))
    bridge = (draw(st.sampled_from([n for n in names if n != interface]))
              if wiring == "bridge" else None)
    prefix = draw(st.integers(1, 32))
    host = _host(draw)
    network = ipaddress.IPv4Network((host, prefix), strict=False)
    ip = ipaddress.IPv4Interface((_not_edge(host, network), prefix))
    kind = draw(st.sampled_from(["none", "calico", "inside", "outside"]))
    gateway = {"none": None, "calico": ipaddress.IPv4Address("169.254.1.1"),
               "inside": _not_edge(network.network_address + draw(
                   st.integers(0, network.num_addresses - 1)), network),
               "outside": _host(draw)}[kind]
    if gateway is not None and (gateway == ip.ip or not valid_host(gateway, network, True)):
        gateway = None  # e.g. a /32's only address, or a /31's other end that is 0.0.0.0
    mac = st.binary(min_size=6, max_size=6).map(
        lambda b: ":".join("%02x" % x for x in bytes([b[0] & 0xFE | 0x02]) + b[1:]))
    return Record(interface, wiring, bridge, ip, gateway,
                  gateway is not None and draw(st.booleans()), draw(st.none() | mac), draw(mac))


@st.composite
def forged_aliases(draw):
    """A valid record's alias with a few of its words made hostile, reordered or repeated."""
    words = dict(w.split("=", 1) for w in draw(valid_records()).to_alias().split(" ")[1:])
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=3, unique=True)):
        words[key] = draw(_hostile(key))
    items = list(words.items())
    if draw(st.integers(0, 9)) == 0:
        items = draw(st.permutations(items))
    if draw(st.integers(0, 9)) == 0:
        items.append((draw(st.sampled_from(KEYS + "x=")), draw(st.text(max_size=5))))
    version = draw(st.sampled_from(["1"] * 8 + ["2", "", "01", "1 "]))
    return "ukrun:" + " ".join([version] + ["%s=%s" % kv for kv in items])


def from_alias_or_error(alias, tap="tap0"):
    """The record, or None for RecordError: no other exception may escape."""
    try:
        return Record.from_alias(alias, tap=tap)
    except RecordError as e:
        assert str(e).startswith("record on %s: " % tap) and "\n" not in str(e)
        return None


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=150) | forged_aliases())
@example("ukrun:1 i=eth0 w=bridge b=eth1 4=172.30.0.2/16 g=172.30.0.1 o=0 m=%s e=%s" % (MAC, MAC))
@example(GOOD.replace("m=" + MAC, "m=" + SHADOW))
def test_any_alias_is_a_valid_record_or_a_record_error(text):
    for alias in (text, "ukrun:" + text, "ukrun:1 " + text):
        rec = from_alias_or_error(alias)
        if rec is not None:
            assert_valid(rec)
            assert rec.to_alias() == alias  # only the form ukrun writes is read


@settings(max_examples=300, deadline=None)
@given(valid_records())
def test_valid_records_always_round_trip(rec):
    alias = rec.to_alias()
    assert Record.from_alias(alias, tap="tap0") == rec
    assert Record.from_alias(alias, tap="tap0").to_alias() == alias


# --- hypothesis: a plan never touches a foreign link, an argv holds only checked words --------

def link(index, name, kind, master=None, alias=None, mac="aa:00:00:00:00:%02x"):
    return Link(index, name, mac % index if "%" in mac else mac, 1500, lib.IFF_UP, master,
                kind, alias)


@st.composite
def hostile_views(draw, previous, alias):
    """eth0 and tap0 (carrying ``alias``), plus what a pod neighbour may have made: eth1, a
    foreign bridge with eth1 in it, a link of the recorded bridge's name without ukrun's mark
    (or with it, on a non-bridge), and sometimes a bridge ukrun did make."""
    links = [link(2, "eth0", "veth", mac=MAC), link(3, "tap0", "tun", alias=alias)]
    links.append(link(5, "eth1", draw(st.sampled_from(["veth", "dummy"])),
                      master=6 if draw(st.booleans()) else None))
    links.append(link(6, "brx", "bridge", alias=draw(st.sampled_from(
        [None, "ukrun bridge", bridge_mark("tap1"), bridge_mark("tap0") + " "]))))
    taken = {l.name for l in links}
    if previous is not None and previous.bridge is not None and previous.bridge not in taken:
        kind, alias = draw(st.sampled_from([("bridge", bridge_mark("tap0")), ("bridge", None),
                                            ("dummy", bridge_mark("tap0")), (None, None)]))
        if kind is not None:
            links.append(link(7, previous.bridge, kind, alias=alias))
    if draw(st.booleans()) and "br0" not in taken | {l.name for l in links}:
        links.append(link(8, "br0", "bridge", alias=bridge_mark("tap0")))
    by_name = {l.name: l for l in links}
    masters = [None] + [l.index for l in links if l.kind == "bridge"]
    for name in ("eth0", "tap0"):  # as an earlier bridge run left them, or not
        old = by_name[name]
        by_name[name] = Link(old.index, name, old.mac, old.mtu, old.flags,
                             draw(st.sampled_from(masters)), old.kind, old.alias)
    return View(links=by_name, previous=previous,
                ingress=frozenset(draw(st.sets(st.sampled_from(["eth0", "tap0", "eth1"])))),
                names={l.index: l.name for l in by_name.values()})


def _named(step):
    for s in (step, *step.undo):
        for key in ("name", "source", "target", "master", "interface"):
            if s.args.get(key) is not None:
                yield s.args[key]
        if "address" in s.args:
            assert s.args["address"].index == 2  # an address of eth0


def assert_touches_only_ours(steps, view, want):
    ours = {"eth0", "tap0"} | {name for name, l in view.links.items()
                               if l.kind == "bridge" and l.alias == bridge_mark("tap0")}
    if want.wiring == "bridge" and want.bridge not in view.links:
        ours.add(want.bridge)  # the plan makes it (under a passing name, marked, renamed)
        ours |= {s.args["name"] for s in steps if s.op == "rename" and s.args["to"] == want.bridge}
    touched = {name for step in steps for name in _named(step)}
    assert touched <= ours, "foreign links touched: %s" % (touched - ours)


def typed_records():
    """Records built without from_alias, their fields valid or not."""
    ips = st.sampled_from(IPS[:10]).map(lambda t: ipaddress.IPv4Interface(t)
                                        if "/" in t and ":" not in t else t)
    return st.builds(Record, st.sampled_from(NAMES), st.sampled_from(["tc", "bridge", "x"]),
                     st.none() | st.sampled_from(NAMES), ips,
                     st.none() | st.sampled_from(["172.30.0.1", "169.254.1.1", "224.0.0.1"]).map(
                         ipaddress.IPv4Address),
                     st.booleans(), st.none() | st.sampled_from(MACS), st.sampled_from(MACS))


@settings(max_examples=400, deadline=None)
@given(st.data(), forged_aliases() | valid_records().map(Record.to_alias), st.booleans())
def test_a_plan_touches_only_the_interface_the_tap_and_ukruns_bridges(data, alias, typed):
    previous = data.draw(typed_records()) if typed else from_alias_or_error(alias)
    view = data.draw(hostile_views(previous, alias))
    wiring = data.draw(st.sampled_from(["tc", "bridge"]))
    bridge = data.draw(st.sampled_from(["br0", "br1", "brx", "eth1"] + (
        [previous.bridge] if previous is not None and valid_name(previous.bridge) else [])))
    want = Wanted(wiring, "eth0", "tap0", bridge, 1500, record(wiring=wiring, bridge=(
        bridge if wiring == "bridge" else None)))
    try:
        steps = plan_steps(want, view)
    except RecordError as e:
        assert str(e).startswith("record on tap0: ")
        return
    except ValueError as e:  # the wanted bridge is someone else's
        assert str(e) == "%s exists and was not made by ukrun" % bridge
        return
    assert_touches_only_ours(steps, view, want)
    if previous is not None:
        check_record_against(previous, view, "tap0")  # what planned must have passed it
        assert_valid(previous)


@settings(max_examples=300, deadline=None)
@given(forged_aliases(), st.sampled_from(["hvt", "spt", "qemu", "kvm"]), st.booleans())
@example(GOOD.replace("m=" + MAC, "m=" + SHADOW), "qemu", False)
def test_a_records_mac_and_address_reach_the_argv_only_checked(alias, target, tap_fd):
    rec = from_alias_or_error(alias)
    if rec is None:
        return
    launch = Launch(unikernel="k", tender="t", tap_fd=3 if tap_fd else None,
                    mac=rec.guest_mac or rec.interface_mac,  # as the runner picks it
                    ip_args=build("mirage", [GuestNet("eth0", "tap0", ipv4=rec.ipv4,
                                                      gateway4=rec.gateway4)]))
    argv = TARGETS[target].build(launch)
    if target in ("qemu", "kvm"):
        device = argv[argv.index("-device") + 1]
        head, mac = device.split(",mac=")
        assert head == "virtio-net-pci,netdev=n0"
        words = argv[argv.index("-append") + 1].split(" ")
    else:
        (mac,) = [w.split("=", 1)[1] for w in argv if w.startswith("--net-mac:")]
        words = argv[argv.index("--") + 2:]
    assert valid_mac(mac)
    ip_word = re.compile(r"--ipv4=(\d{1,3}\.){3}\d{1,3}/\d{1,2}|--ipv4-gateway=(\d{1,3}\.){3}\d{1,3}")
    assert words and all(ip_word.fullmatch(w) for w in words)


# --- real namespaces: a forged record on tap0 -------------------------------------------------

def options(programs, target="spt", **kw):
    from ukrun.planning import Options

    exe, kernel = programs
    tender = dict(qemu=exe) if target in ("qemu", "kvm") else dict(tender=exe)
    return Options(target=target, unikernel=kernel, **tender, **kw)


@pytest.fixture
def neighbour(container):
    """A container whose pod neighbour has eth1 in a bridge br9 of its own."""
    container.ip("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
    container.ip("link", "add", "br9", "type", "bridge")
    container.ip("link", "set", "eth1", "master", "br9", "up")
    container.ip("link", "set", "br9", "up")
    return container


def forge(ns, alias):
    ns.ip("link", "set", "tap0", "alias", alias)


def refused(ns, opts):
    """The error a plan/apply on a forged record raises; nothing may have changed."""
    from nsutil import in_netns
    from snapshots import snapshot
    from ukrun.errors import UkrunError
    from ukrun.runner import apply
    from ukrun.planning import plan

    before = snapshot(ns)
    with in_netns(ns.name), pytest.raises((RecordError, UkrunError)) as failed:
        apply(plan(opts))
    assert snapshot(ns) == before
    assert ns.ip_json("link", "show", "eth1") and ns.ip_json("link", "show", "br9")
    assert ns.ip_json("link", "show", "eth1")[0]["master"] == "br9"
    message = str(failed.value)
    assert "record" in message and "tap0" in message and "\n" not in message
    return message


def first_run(ns, programs, **kw):
    from nsutil import in_netns
    from ukrun.runner import apply
    from ukrun.planning import plan

    with in_netns(ns.name):
        apply(plan(options(programs, **kw))).close()
    return ns.ip_json("-d", "link", "show", "tap0")[0]["ifalias"]


@pytest.mark.parametrize("forged, wiring, message", [
    ("w=bridge b=eth1", "tc", "b='eth1' names eth1, which ukrun did not make"),
    ("w=bridge b=br9", "tc", "b='br9' names br9, which ukrun did not make"),
    ("w=bridge b=br9", "bridge", "b='br9' names br9, which ukrun did not make"),
    ("w=bridge b=eth0", "tc", "b='eth0' is the interface itself"),
    ("w=bridge b=tap0", "tc", "b='tap0' is the tap itself"),
], ids=["eth1", "foreign bridge, tc", "foreign bridge, bridge", "eth0", "tap0"])
def test_a_forged_bridge_in_the_record_touches_nothing(forged, wiring, message, neighbour,
                                                         programs):
    alias = first_run(neighbour, programs)
    forge(neighbour, alias.replace("w=tc b=", forged))
    error = refused(neighbour, options(programs, wiring=wiring,
                                       bridge="br9" if wiring == "bridge" else "br0"))
    assert message in error


def test_the_mark_on_a_foreign_link_does_not_make_it_ukruns(neighbour, programs):
    alias = first_run(neighbour, programs)
    neighbour.ip("link", "set", "eth1", "alias", bridge_mark("tap0"))  # eth1 is no bridge
    forge(neighbour, alias.replace("w=tc b=", "w=bridge b=eth1"))
    assert "b='eth1' names eth1, which ukrun did not make" in refused(neighbour,
                                                                       options(programs))


@pytest.mark.parametrize("target", ["qemu", "spt"])
def test_a_forged_guest_mac_never_reaches_the_command_line(target, neighbour, programs):
    alias = first_run(neighbour, programs, target=target)
    forge(neighbour, re.sub(r"m=\S+", "m=" + SHADOW, alias))
    error = refused(neighbour, options(programs, target=target))
    assert "m='%s': " % SHADOW in error


def test_a_bridge_ukrun_made_is_marked_and_taken_down_only_while_marked(neighbour, programs):
    from nsutil import in_netns
    from ukrun.runner import apply
    from ukrun.planning import plan

    first_run(neighbour, programs, wiring="bridge")
    assert neighbour.ip_json("-d", "link", "show", "br0")[0]["ifalias"] == bridge_mark("tap0")
    neighbour.ip("link", "set", "br0", "alias", "")  # the mark gone: no longer provably ours
    error = refused(neighbour, options(programs, wiring="tc"))
    assert "b='br0' names br0, which ukrun did not make" in error
    neighbour.ip("link", "set", "br0", "alias", bridge_mark("tap0"))
    with in_netns(neighbour.name):
        apply(plan(options(programs, wiring="tc"))).close()
    names = [link["ifname"] for link in neighbour.ip_json("link", "show")]
    assert "br0" not in names and "br9" in names
    assert neighbour.ip_json("link", "show", "eth1")[0]["master"] == "br9"


# --- version 2: IPv6 ---------------------------------------------------------------------------

V2 = ("ukrun:2 i=eth0 w=tc b= 4=172.30.0.2/16 g=172.30.0.1 o=0 6=2001:db8::2/64 h=fe80::1 "
      "m=%s e=%s" % (MAC, MAC))
V6_ONLY = "ukrun:2 i=eth0 w=tc b= 4= g= o=0 6=fd00::2/64 h=fd00::1 m=%s e=%s" % (MAC, MAC)


@pytest.mark.parametrize("alias", [V2, V6_ONLY], ids=["dual stack", "IPv6 only"])
def test_a_version_2_record_round_trips(alias):
    record = Record.from_alias(alias, tap="tap0")
    assert record.to_alias() == alias and record.version == "2"
    assert record.ipv6 is not None and record.gateway6 is not None


def test_an_ipv4_only_record_is_still_written_as_version_1():
    # Older ukruns read it: a downgrade in a kept pod keeps working.
    alias = Record.from_alias(V2, tap="tap0").__class__(
        "eth0", "tc", None, ipaddress.IPv4Interface("172.30.0.2/16"),
        ipaddress.IPv4Address("172.30.0.1"), False, MAC, MAC).to_alias()
    assert alias.startswith("ukrun:1 ") and " 6=" not in alias


BAD_V6 = {
    "no address at all": (V6_ONLY.replace("6=fd00::2/64 h=fd00::1", "6= h="),
                          "neither 4= nor 6= holds an address"),
    "v6 link-local": (V2.replace("6=2001:db8::2/64", "6=fe80::2/64"), "6=fe80::2 is a link-local"),
    "v6 multicast": (V2.replace("6=2001:db8::2/64", "6=ff02::1/64"), "6=ff02::1 is a multicast"),
    "v6 mapped": (V2.replace("6=2001:db8::2/64", "6=::ffff:1.2.3.4/96"), "IPv4-mapped"),
    "v6 junk": (V2.replace("6=2001:db8::2/64", "6=2001:db8::2/64,romfile=x"),
                "is not an IPv6 address/prefix"),
    "v6 gateway multicast": (V2.replace("h=fe80::1", "h=ff02::2"), "h=ff02::2 is a multicast"),
    "v6 gateway is the address": (V2.replace("h=fe80::1", "h=2001:db8::2"),
                                  "h=2001:db8::2 is the address itself"),
    "v6 gateway without address": (V2.replace("6=2001:db8::2/64", "6="),
                                   "h=fe80::1 without 6="),
    "v4 gateway without address": (V6_ONLY.replace("g=", "g=10.0.0.1"), "g=10.0.0.1 without 4="),
}


@pytest.mark.parametrize("alias, message", BAD_V6.values(), ids=BAD_V6.keys())
def test_each_bad_ipv6_field_is_named(alias, message):
    with pytest.raises(RecordError) as failed:
        Record.from_alias(alias, tap="tap0")
    assert message in str(failed.value)
