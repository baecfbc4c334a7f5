"""ukrun.kernel.inet against ipaddress, its model: the same text both ways, the same properties, equal
and hashed alike (so the two mix in sets and dicts), public() gives ipaddress's own objects."""
import ipaddress
import subprocess
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ukrun.kernel import inet, inet_text
from ukrun.kernel.rtnl_objects import Address, Route
from ukrun.valueclass import value_class

ZONES = st.text(alphabet="abcdefghij0123456789-", min_size=1, max_size=8)
PROPERTIES = ("is_loopback", "is_unspecified", "is_multicast", "is_link_local", "is_reserved")


def ours(address):
    """The inet value of an ipaddress address."""
    return inet.IP(address.packed, getattr(address, "scope_id", None))


def addresses():
    # Beside uniform ones, the corners: zero runs of every length, IPv4-mapped, the ranges
    # the properties name.
    groups = st.sampled_from([0, 0, 0, 1, 0xFFFF, 0xFE80, 0xFF02]) | st.integers(0, 0xFFFF)
    v6 = st.lists(groups, min_size=8, max_size=8).map(
        lambda gs: ipaddress.IPv6Address(sum(g << (112 - 16 * i) for i, g in enumerate(gs))))
    mapped = st.ip_addresses(v=4).map(lambda a: ipaddress.IPv6Address("::ffff:%s" % a))
    return st.ip_addresses() | v6 | mapped


@given(addresses())
@example(ipaddress.IPv6Address("1:0:0:2:0:0:3:4"))  # two equal runs: the first is "::"
@example(ipaddress.IPv6Address("1:0:2:3:4:5:6:7"))  # a single zero group stays "0"
@example(ipaddress.IPv6Address("::ffff:127.0.0.1"))
def test_an_address_is_ipaddress_s(address):
    mine = ours(address)
    assert str(mine) == str(address) and int(mine) == int(address)
    assert mine.version == address.version and mine.max_prefixlen == address.max_prefixlen
    assert mine == address and address == mine and not mine != address
    assert hash(mine) == hash(address)
    for name in PROPERTIES:
        assert getattr(mine, name) == getattr(address, name), name
    if address.version == 6:
        assert mine.ipv4_mapped == address.ipv4_mapped
    assert inet_text.address(str(address)) == address
    assert inet.public(mine) == address and type(inet.public(mine)) is type(address)


@given(st.ip_addresses(v=6), ZONES)
def test_a_zone_is_kept_written_and_compared(address, zone):
    zoned = ipaddress.IPv6Address("%s%%%s" % (address, zone))
    mine = inet_text.address(str(zoned))
    assert mine.scope_id == zone and str(mine) == str(zoned) and hash(mine) == hash(zoned)
    assert mine == zoned and mine != ours(address)
    assert inet.unzoned(mine) == address and inet.unzoned(zoned) == address
    assert inet.public(mine) == zoned


@given(addresses(), st.integers(0, 128))
def test_an_interface_and_its_network_are_ipaddress_s(address, prefixlen):
    prefixlen = min(prefixlen, address.max_prefixlen)
    theirs = ipaddress.ip_interface((address, prefixlen))
    mine = inet.Interface(ours(address), prefixlen)
    assert str(mine) == str(theirs) and mine.with_prefixlen == theirs.with_prefixlen
    assert mine == theirs and theirs == mine and hash(mine) == hash(theirs)
    assert mine.ip == theirs.ip and mine.packed == theirs.packed
    assert mine.netmask == theirs.netmask and str(mine.netmask) == str(theirs.netmask)
    network = mine.network
    assert network == theirs.network and theirs.network == network
    assert hash(network) == hash(theirs.network) and str(network) == str(theirs.network)
    assert network.with_prefixlen == theirs.network.with_prefixlen
    assert network.broadcast_address == theirs.network.broadcast_address
    assert (mine.ip in network) and (address in network)
    assert inet.public(mine) == theirs and type(inet.public(mine)) is type(theirs)
    assert inet.public(network) == theirs.network
    assert inet_text.interface(theirs.with_prefixlen, address.version) == theirs


@given(addresses(), addresses(), st.integers(0, 128))
def test_network_membership_is_ipaddress_s(address, other, prefixlen):
    prefixlen = min(prefixlen, address.max_prefixlen)
    theirs = ipaddress.ip_network((address, prefixlen), strict=False)
    mine = inet.Network(ours(address), prefixlen, strict=False)
    assert (ours(other) in mine) == (other in theirs) == (other in mine)


def _parsed(parse, text):
    try:
        return parse(text)
    except ValueError:
        return None


TEXT = st.text(alphabet="0123456789abcdefABCDEF:.%/ xg+-\u0663", max_size=16)
MANGLED = st.builds(lambda a, cut, extra: str(a)[:cut] + extra + str(a)[cut:], addresses(),
                    st.integers(0, 40), st.sampled_from(["", ":", "::", ".", "0", "/", "%",
                                                         "/24", "/255.255.0.0", "/0.0.0.255",
                                                         "/033", "/", "%z"]))


@settings(max_examples=1500)
@given(TEXT | MANGLED)
@example("01.2.3.4")  # leading zeros: refused, as glibc's inet_pton
@example("1.2.3.4/255.255.0.0")  # a netmask
@example("1.2.3.4/0.0.255.255")  # a hostmask
@example("::1.2.3.4")
@example("fe80::1%")
@example("1:2:3:4:5:6:7::")
def test_text_is_read_as_ipaddress_reads_it(text):
    for parse, model in ((inet_text.address, ipaddress.ip_address),
                         (lambda t: inet_text.address(t, 4), ipaddress.IPv4Address),
                         (lambda t: inet_text.address(t, 6), ipaddress.IPv6Address),
                         (lambda t: inet_text.interface(t, 4), ipaddress.IPv4Interface),
                         (lambda t: inet_text.interface(t, 6), ipaddress.IPv6Interface)):
        mine, theirs = _parsed(parse, text), _parsed(model, text)
        assert (mine is None) == (theirs is None), (text, mine, theirs)
        if mine is not None:
            assert mine == theirs and str(mine) == str(theirs)


def test_values_mix_with_ipaddress_s_in_sets_and_dicts():
    theirs = [ipaddress.ip_address("10.0.0.1"), ipaddress.ip_interface("2001:db8::2/64"),
              ipaddress.ip_network("10.0.0.0/8")]
    mine = [inet_text.address("10.0.0.1"), inet_text.interface("2001:db8::2/64", 6),
            inet.Network(inet_text.address("10.0.0.0"), 8)]
    assert set(mine) == set(theirs) and len(set(mine) | set(theirs)) == 3
    assert {key: True for key in mine}[theirs[1]]
    # Kinds stay apart, as ipaddress's networks and interfaces do.
    assert inet_text.address("10.0.0.1") != inet_text.interface("10.0.0.1/32", 4)
    assert inet.Network(inet_text.address("10.0.0.1"), 32) != inet_text.interface("10.0.0.1/32", 4)
    assert inet_text.address("10.0.0.1") != "10.0.0.1"


def test_kind_names_both_families_of_value():
    assert inet.kind(inet_text.address("::1")) == (inet.ADDRESS, 6)
    assert inet.kind(ipaddress.ip_interface("10.0.0.1/8")) == (inet.INTERFACE, 4)
    assert inet.kind(ipaddress.ip_network("::/0")) == (inet.NETWORK, 6)
    assert inet.kind("10.0.0.1") is None and inet.kind(None) is None


def test_values_are_immutable_and_checked():
    ip = inet_text.address("10.0.0.1")
    with pytest.raises(AttributeError):
        ip.packed = b"\0" * 4
    with pytest.raises(ValueError):
        inet.IP(b"\0" * 5)
    with pytest.raises(ValueError):
        inet.IP(bytes(4), "eth0")  # a zone is IPv6's
    with pytest.raises(ValueError):
        inet.Interface(ip, 33)
    with pytest.raises(ValueError):
        inet.Network(ip, 8)  # host bits set
    with pytest.raises(TypeError):
        inet_text.address(b"10.0.0.1")
    with pytest.raises(AttributeError):
        ip.ipv4_mapped  # noqa: B018 (IPv6 only, as in ipaddress)


@value_class(frozen=True)
class Holder:
    address: object
    more: tuple = ()


def test_public_rebuilds_containers_and_value_classes():
    route = Route(2, inet.Network(inet_text.address("0.0.0.0"), 0), inet_text.address("172.30.0.1"), 3)
    address = Address(3, inet_text.interface("172.30.0.2/16", 4))
    made = inet.public(Holder(address, (route, [inet_text.address("::1")], {"k": route}, "text")))
    assert type(made.address.interface) is ipaddress.IPv4Interface
    assert made.address == address and made.more[0] == route
    assert type(made.more[0].dst) is ipaddress.IPv4Network
    assert type(made.more[1][0]) is ipaddress.IPv6Address
    assert type(made.more[2]["k"].gateway) is ipaddress.IPv4Address and made.more[3] == "text"


def test_reading_and_writing_addresses_imports_no_ipaddress():
    code = ("import sys, ukrun.kernel.inet as i, ukrun.kernel.inet_text as t\n"
            "a = t.interface('172.30.0.2/16', 4); n = a.network; g = t.address('fe80::1%eth0')\n"
            "s = {a, n, g}; assert a in s and g in s and '172.30.0.2' in str(a) and i.kind(a)\n"
            "print('ipaddress' in sys.modules)")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": ":".join(sys.path)}, check=True).stdout
    assert out.strip() == "False"


def test_the_library_hands_out_ipaddress_objects(container):
    # What discover() and plan() return is ipaddress's, every address in it; the run path
    # carries inet's (plan_for_run), and --dry-run prints the same text from either.
    import ukrun
    from nsutil import in_netns
    from ukrun import planning

    with in_netns(container.name):
        config = ukrun.discover("eth0")
        plan = ukrun.plan(ukrun.Options("unix", "/bin/true", ["x"]))
        internal = planning.plan_for_run(ukrun.Options("unix", "/bin/true", ["x"]))
    assert type(config.ipv4) is ipaddress.IPv4Interface
    assert type(config.gateway4) is ipaddress.IPv4Address
    assert {type(a.interface) for a in config.addresses} <= {ipaddress.IPv4Interface,
                                                             ipaddress.IPv6Interface}
    assert {type(r.dst) for r in config.routes} <= {ipaddress.IPv4Network, ipaddress.IPv6Network}
    network = plan.handovers[0].network
    assert type(network.ipv4) is ipaddress.IPv4Interface and network == config
    assert all(type(s) in (ipaddress.IPv4Address, ipaddress.IPv6Address)
               for s in plan.dns.servers)
    assert type(internal.handovers[0].network.ipv4) is inet.Interface
    assert internal.handovers[0].network == config
    assert internal.to_json() == plan.to_json() and internal.argv == plan.argv
