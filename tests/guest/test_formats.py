"""ukrun.guest.formats: every family's network words for IPv4-only, dual-stack and IPv6-only
containers, Calico's /32 with an on-link gateway, a link-local IPv6 gateway, no gateway, two
interfaces and 0/1/3 DNS servers; the template language; fuzzing. Pure: no namespace needed."""
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ukrun.errors import UsageError
from ukrun.guest.formats import DNS, FORMATS, KERNEL_PARAMS, GuestNet, build, notes
from ukrun.guest.formats.template import PLACEHOLDERS, check_template

V4 = GuestNet("eth0", "tap0", mac="02:42:ac:11:00:02", mtu=1500,
              ipv4=IPv4Interface("172.17.0.2/16"), gateway4=IPv4Address("172.17.0.1"),
              device="eth0")
DUAL = GuestNet("eth0", "tap0", mac="02:42:ac:11:00:02", mtu=1500,
                ipv4=IPv4Interface("172.17.0.2/16"), gateway4=IPv4Address("172.17.0.1"),
                ipv6=IPv6Interface("2001:db8:1::2/64"), gateway6=IPv6Address("2001:db8:1::1"),
                device="service")
V6 = GuestNet("eth0", "tap0", ipv6=IPv6Interface("fd00:10::5/64"),
              gateway6=IPv6Address("fd00:10::1"), device="eth0")
CALICO = GuestNet("eth0", "tap0", mac="ee:ee:ee:ee:ee:ee", ipv4=IPv4Interface("10.244.1.7/32"),
                  gateway4=IPv4Address("169.254.1.1"), gateway4_onlink=True, device="eth0")
LINK_LOCAL_GW6 = GuestNet("eth0", "tap0", ipv4=IPv4Interface("10.0.0.2/24"),
                          gateway4=IPv4Address("10.0.0.1"), ipv6=IPv6Interface("2001:db8::2/64"),
                          gateway6=IPv6Address("fe80::1%eth0"), device="eth0")
NO_GW = GuestNet("eth0", "tap0", ipv4=IPv4Interface("10.0.0.2/24"), device="eth0")
NET1 = GuestNet("net1", "tap1", mac="02:00:00:00:01:01", mtu=9000,
                ipv4=IPv4Interface("192.168.50.3/24"), gateway4=IPv4Address("192.168.50.1"),
                device="eth1")

DNS0 = DNS()
DNS1 = DNS((IPv4Address("10.96.0.10"),), ("default.svc.cluster.local", "cluster.local"))
DNS3 = DNS((IPv4Address("192.168.1.1"), IPv6Address("2001:4860:4860::8888"),
            IPv4Address("8.8.8.8"), IPv4Address("1.1.1.1")), ("example.com",))


# mirage

def test_mirage_ipv4_only_is_todays_default_exactly():
    assert build("mirage", [V4], DNS3) == ("--ipv4=172.17.0.2/16", "--ipv4-gateway=172.17.0.1")
    assert build("mirage", [CALICO], DNS1) == ("--ipv4=%s" % CALICO.ipv4.with_prefixlen,
                                                "--ipv4-gateway=%s" % CALICO.gateway4)
    assert build("mirage", [NO_GW], DNS1) == ("--ipv4=%s" % NO_GW.ipv4.with_prefixlen,)


def test_mirage_dual_stack():
    assert build("mirage", [DUAL]) == (
        "--ipv4=172.17.0.2/16", "--ipv4-gateway=172.17.0.1", "--ipv6=2001:db8:1::2/64",
        "--ipv6-gateway=2001:db8:1::1", "--accept-router-advertisements=false")


def test_mirage_ipv6_only():
    assert build("mirage", [V6]) == ("--ipv6=fd00:10::5/64", "--ipv6-gateway=fd00:10::1",
                                     "--ipv6-only=true", "--accept-router-advertisements=false")


def test_mirage_calico_and_link_local_gateway_and_no_gateway():
    assert build("mirage", [CALICO]) == ("--ipv4=10.244.1.7/32", "--ipv4-gateway=169.254.1.1")
    assert build("mirage", [LINK_LOCAL_GW6])[2:4] == ("--ipv6=2001:db8::2/64",
                                                       "--ipv6-gateway=fe80::1")
    assert build("mirage", [NO_GW]) == ("--ipv4=10.0.0.2/24",)


def test_mirage_describes_the_first_interface_only():
    assert build("mirage", [V4, NET1]) == build("mirage", [V4])
    assert build("mirage", []) == ()


def test_mirage_dns():
    assert build("mirage-dns", [V4], DNS0) == build("mirage", [V4])
    assert build("mirage-dns", [V4], DNS1)[-1] == "--dns_servers=tcp:10.96.0.10"
    # An IPv4-only guest cannot reach the IPv6 server; a dual-stack one can.
    assert build("mirage-dns", [V4], DNS3)[-1] == (
        "--dns_servers=tcp:192.168.1.1,tcp:8.8.8.8,tcp:1.1.1.1")
    assert build("mirage-dns", [DUAL], DNS3)[-1] == (
        "--dns_servers=tcp:192.168.1.1,tcp:[2001:4860:4860::8888]:53,tcp:8.8.8.8,tcp:1.1.1.1")
    assert build("mirage-dns", [V6], DNS3)[-1] == "--dns_servers=tcp:[2001:4860:4860::8888]:53"
    assert build("mirage-dns", [V6], DNS1) == build("mirage", [V6])


# unikraft

def test_unikraft():
    assert build("unikraft", [V4], DNS0) == ("netdev.ip=172.17.0.2/16:172.17.0.1",)
    assert build("unikraft", [V4], DNS1) == (
        "netdev.ip=172.17.0.2/16:172.17.0.1:10.96.0.10:::default.svc.cluster.local",)
    assert build("unikraft", [V4], DNS3) == (
        "netdev.ip=172.17.0.2/16:172.17.0.1:192.168.1.1:8.8.8.8::example.com",)
    assert build("unikraft", [DUAL], DNS0) == ("netdev.ip=172.17.0.2/16:172.17.0.1",)
    assert build("unikraft", [CALICO]) == ("netdev.ip=10.244.1.7/32:169.254.1.1",)
    assert build("unikraft", [NO_GW]) == ("netdev.ip=10.0.0.2/24",)
    assert build("unikraft", [NO_GW], DNS1) == (
        "netdev.ip=10.0.0.2/24::10.96.0.10:::default.svc.cluster.local",)
    assert build("unikraft", [V6]) == ()


def test_unikraft_one_word_per_interface_in_device_order():
    assert build("unikraft", [V4, NET1], DNS3) == (
        "netdev.ip=172.17.0.2/16:172.17.0.1:192.168.1.1:8.8.8.8::example.com",
        "netdev.ip=192.168.50.3/24:192.168.50.1")
    # An IPv6-only first interface keeps its place for the second.
    assert build("unikraft", [V6, NET1]) == ("netdev.ip=", "netdev.ip=192.168.50.3/24:192.168.50.1")
    assert build("unikraft", [V4, V6]) == ("netdev.ip=172.17.0.2/16:172.17.0.1",)


def test_unikraft_lwip():
    assert build("unikraft-lwip", [V4], DNS3) == (
        "netdev.ipv4_addr=172.17.0.2", "netdev.ipv4_gw_addr=172.17.0.1",
        "netdev.ipv4_subnet_mask=255.255.0.0")
    assert build("unikraft-lwip", [CALICO]) == (
        "netdev.ipv4_addr=10.244.1.7", "netdev.ipv4_gw_addr=169.254.1.1",
        "netdev.ipv4_subnet_mask=255.255.255.255")
    assert build("unikraft-lwip", [NO_GW]) == ("netdev.ipv4_addr=10.0.0.2",
                                               "netdev.ipv4_subnet_mask=255.255.255.0")
    assert build("unikraft-lwip", [DUAL, NET1]) == build("unikraft-lwip", [DUAL])
    assert build("unikraft-lwip", [V6, NET1]) == ()


# linux

def _ip_fields(word):
    """The kernel's reading of an ip= word (nfsroot.rst's field order)."""
    assert word.startswith("ip=")
    names = ("client", "server", "gw", "netmask", "hostname", "device", "autoconf", "dns0",
             "dns1", "ntp0")
    fields = word[3:].split(":")
    return dict(zip(names, fields + [""] * (len(names) - len(fields))))


def test_linux():
    assert build("linux", [V4], DNS0) == ("ip=172.17.0.2::172.17.0.1:255.255.0.0::eth0:off",)
    assert build("linux", [V4], DNS1) == (
        "ip=172.17.0.2::172.17.0.1:255.255.0.0::eth0:off:10.96.0.10",)
    (word,) = build("linux", [V4], DNS3)
    assert word == "ip=172.17.0.2::172.17.0.1:255.255.0.0::eth0:off:192.168.1.1:8.8.8.8"
    assert _ip_fields(word) == {
        "client": "172.17.0.2", "server": "", "gw": "172.17.0.1", "netmask": "255.255.0.0",
        "hostname": "", "device": "eth0", "autoconf": "off", "dns0": "192.168.1.1",
        "dns1": "8.8.8.8", "ntp0": ""}


def test_linux_no_gateway_calico_dual_and_ipv6_only():
    assert build("linux", [NO_GW]) == ("ip=10.0.0.2:::255.255.255.0::eth0:off",)
    assert build("linux", [CALICO]) == ("ip=10.244.1.7::169.254.1.1:255.255.255.255::eth0:off",)
    assert build("linux", [DUAL]) == ("ip=172.17.0.2::172.17.0.1:255.255.0.0::service:off",)
    assert build("linux", [V6], DNS3) == ()
    assert build("linux", [GuestNet("eth0", "tap0", ipv4=IPv4Interface("10.0.0.2/8"))]) == (
        "ip=10.0.0.2:::255.0.0.0:::off",)
    assert build("linux", [V4, NET1]) == build("linux", [V4])


def test_none():
    assert build("none", [DUAL, NET1], DNS3) == ()


# template

def test_template_placeholders():
    template = ("--ip={ipv4} --gw={gateway4} --dns={dns0} --all={dns} --search={search} "
                "--mac={mac} --mtu={mtu} --tap={tap} --if={interface} --dev={device} "
                "--v6={ipv6} --v6a={ipv6_address} --v6p={ipv6_prefix} --gw6={gateway6} "
                "--a={ipv4_address} --p={ipv4_prefix} --m={ipv4_netmask} --s0={search0}")
    assert build("template", [DUAL], DNS3, template) == (
        "--ip=172.17.0.2/16", "--gw=172.17.0.1", "--dns=192.168.1.1",
        "--all=192.168.1.1,2001:4860:4860::8888,8.8.8.8,1.1.1.1", "--search=example.com",
        "--mac=02:42:ac:11:00:02", "--mtu=1500", "--tap=tap0", "--if=eth0", "--dev=service",
        "--v6=2001:db8:1::2/64", "--v6a=2001:db8:1::2", "--v6p=64", "--gw6=2001:db8:1::1",
        "--a=172.17.0.2", "--p=16", "--m=255.255.0.0", "--s0=example.com")


def test_template_words_without_a_value_are_left_out():
    template = "--ip={ipv4} --gw={gateway4} --v6={ipv6} --dns={dns} --dns3={dns3} plain"
    assert build("template", [NO_GW], DNS0, template) == ("--ip=10.0.0.2/24", "plain")
    assert build("template", [NO_GW], DNS3, template) == (
        "--ip=10.0.0.2/24", "--dns=192.168.1.1,2001:4860:4860::8888,8.8.8.8,1.1.1.1",
        "--dns3=1.1.1.1", "plain")


def test_template_optional_placeholder_keeps_the_word():
    template = "ip={ipv4_address}::{gateway4?}:{ipv4_netmask}::{device}:off {mac?}"
    assert build("template", [NO_GW], DNS0, template) == ("ip=10.0.0.2:::255.255.255.0::eth0:off",)
    assert build("template", [V4], DNS0, template) == (
        "ip=172.17.0.2::172.17.0.1:255.255.0.0::eth0:off", "02:42:ac:11:00:02")


def test_template_addresses_each_interface():
    template = "--a={0.ipv4} --b={1.ipv4} --c={2.ipv4} --mtu1={1.mtu} --gw6={gateway6}"
    assert build("template", [LINK_LOCAL_GW6, NET1], DNS0, template) == (
        "--a=10.0.0.2/24", "--b=192.168.50.3/24", "--mtu1=9000", "--gw6=fe80::1")
    assert build("template", [LINK_LOCAL_GW6], DNS0, template) == ("--a=10.0.0.2/24",
                                                                   "--gw6=fe80::1")


def test_template_literal_braces_and_white_space():
    assert build("template", [V4], DNS0, "{{x}} a{{{ipv4_prefix}}}b  \t\n }}") == (
        "{x}", "a{16}b", "}")
    assert build("template", [V4], DNS0, "") == ()
    assert build("template", [V4], DNS0, "{mtu?}{mac?}x") == ("150002:42:ac:11:00:02x",)
    assert build("template", [NO_GW], DNS0, "{mac?}") == ()


@pytest.mark.parametrize("template, message", [
    ("--ip={ipv5}", "word '--ip={ipv5}': unknown placeholder {ipv5}; known: interface"),
    ("{IPV4}", "unknown placeholder {IPV4}"),
    ("{dnsx}", "unknown placeholder {dnsx}"),
    ("{dns01}", "unknown placeholder {dns01}"),
    ("--ip={ipv4", "'{' without its '}': write '{{' for a literal brace"),
    ("{ip{v4}", "'{' without its '}'"),
    ("a}b", "a single '}': write '}}' for a literal brace"),
    ("x{}", "an empty placeholder {}"),
    ("x{?}", "an empty placeholder {}"),
    ("{01.ipv4}", "'01' is not an interface number (0, 1, ...)"),
    ("{x.ipv4}", "'x' is not an interface number"),
    ("{-1.ipv4}", "'-1' is not an interface number"),
    ("{1.dns}", "{dns} is shared by all interfaces: write {dns}"),
    ("{0.search1}", "{search} is shared by all interfaces: write {search1}"),
    ("{ipv4!r}", "unknown placeholder {ipv4!r}"),
    ("{ipv4:>9}", "unknown placeholder {ipv4:>9}"),
    ("a\0b", "the template holds a NUL character"),
])
def test_bad_templates_are_refused_before_anything_runs(template, message):
    with pytest.raises(UsageError, match=None) as caught:
        check_template(template)
    assert message in str(caught.value)
    assert str(caught.value).startswith("--ip-args template: ")
    assert isinstance(caught.value, ValueError)
    with pytest.raises(UsageError):
        build("template", [V4], DNS0, template)


def test_check_template_needs_a_str():
    with pytest.raises(TypeError):
        check_template(b"{ipv4}")


# build, notes, inputs

def test_formats_and_kernel_params():
    assert set(FORMATS) == {"mirage", "mirage-dns", "unikraft", "unikraft-lwip", "linux",
                            "template", "none"}
    assert KERNEL_PARAMS == {"unikraft", "unikraft-lwip", "linux"}


def test_build_refuses_bad_calls():
    with pytest.raises(UsageError, match="'solo5' is not one of mirage, mirage-dns"):
        build("solo5", [V4])
    with pytest.raises(UsageError, match="needs a template"):
        build("template", [V4])
    with pytest.raises(UsageError, match="only it takes one"):
        build("mirage", [V4], None, "{ipv4}")
    with pytest.raises(TypeError, match="not a GuestNet"):
        build("mirage", [{"ipv4": "10.0.0.2/24"}])
    with pytest.raises(TypeError, match="not a DNS"):
        build("mirage", [V4], ("8.8.8.8",))


@pytest.mark.parametrize("kwargs, error", [
    (dict(interface=""), ValueError),
    (dict(interface="eth 0"), ValueError),
    (dict(tap="tap:0"), ValueError),
    (dict(tap=b"tap0"), TypeError),
    (dict(device="eth0\0"), ValueError),
    (dict(mac="02:42:ac:11:00"), ValueError),
    (dict(mac="02:42:ac:11:00:zz"), ValueError),
    (dict(mac="0242ac110002"), ValueError),
    (dict(mtu=0), ValueError),
    (dict(mtu=True), ValueError),
    (dict(mtu="1500"), ValueError),
    (dict(ipv4="10.0.0.2/24"), TypeError),
    (dict(ipv4=IPv4Address("10.0.0.2")), TypeError),
    (dict(gateway4=IPv6Address("::1")), TypeError),
    (dict(ipv6=IPv4Interface("10.0.0.2/24")), TypeError),
    (dict(gateway6="fe80::1"), TypeError),
    (dict(gateway4_onlink=1), TypeError),
])
def test_guest_net_refuses_what_would_break_a_word(kwargs, error):
    fields = dict(interface="eth0", tap="tap0")
    fields.update(kwargs)
    with pytest.raises(error):
        GuestNet(**fields)


def test_dns_refuses_what_would_break_a_word():
    with pytest.raises(TypeError):
        DNS(("8.8.8.8",))
    with pytest.raises(ValueError):
        DNS((), ("bad,domain",))
    with pytest.raises(ValueError):
        DNS((), ("",))


def test_notes_say_what_each_format_leaves_out():
    assert notes("mirage", [V4]) == ()
    assert notes("mirage", [V4, NET1], DNS1) == (
        "--ip-args mirage describes only the first interface (eth0) to the guest",
        "--ip-args mirage passes no DNS servers (mirage-dns adds --dns_servers, for unikernels "
        "built with a DNS client)")
    assert notes("linux", [CALICO], DNS3) == (
        "--ip-args linux takes two IPv4 DNS servers: 2001:4860:4860::8888, 1.1.1.1 left out",
        "--ip-args linux: the gateway 169.254.1.1 is outside 10.244.1.7/32; the kernel's own IP "
        "autoconfiguration sets no default route through it")
    assert notes("unikraft", [V6, NET1]) == (
        "--ip-args unikraft has no IPv6: eth0's fd00:10::5/64 is not passed",
        "--ip-args unikraft: eth0 has no IPv4 address to pass")
    assert notes("unikraft-lwip", [V4], DNS1) == (
        "--ip-args unikraft-lwip has no DNS fields: no DNS servers are passed",)
    assert notes("none", [V4, NET1], DNS3) == notes("template", [V4, NET1], DNS3) == ()


# Fuzzing: builders never raise on valid input; every word is one non-empty word without NUL.

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-@", min_size=1, max_size=15)
MACS = st.binary(min_size=6, max_size=6).map(lambda b: ":".join("%02x" % x for x in b))
V4_IFACES = st.builds(lambda a, n: IPv4Interface((a, n)), st.ip_addresses(v=4),
                      st.integers(0, 32))
V6_IFACES = st.builds(lambda a, n: IPv6Interface((a, n)), st.ip_addresses(v=6),
                      st.integers(0, 128))
ZONED_V6 = st.builds(lambda a, z: IPv6Address("%s%%%s" % (a, z)), st.ip_addresses(v=6),
                     st.text(alphabet="eth0123", min_size=1, max_size=5))
NETS = st.builds(
    GuestNet, NAMES, NAMES, mac=st.none() | MACS, mtu=st.none() | st.integers(68, 65535),
    ipv4=st.none() | V4_IFACES, gateway4=st.none() | st.ip_addresses(v=4),
    gateway4_onlink=st.booleans(), ipv6=st.none() | V6_IFACES,
    gateway6=st.none() | st.ip_addresses(v=6) | ZONED_V6, device=st.none() | NAMES)
DNSES = st.builds(DNS, st.lists(st.ip_addresses(), max_size=5).map(tuple),
                  st.lists(NAMES, max_size=4).map(tuple))


def _is_word(word):
    return (isinstance(word, str) and word and "\0" not in word
            and not any(c.isspace() for c in word))


@settings(max_examples=300)
@given(st.sampled_from(sorted(set(FORMATS) - {"template"})), st.lists(NETS, max_size=4), DNSES)
def test_builders_never_raise_and_give_words(format, nets, dns):
    words = build(format, nets, dns)
    assert all(_is_word(word) for word in words)
    assert all("%" not in word for word in words)  # no zone reaches a guest
    assert all(note.isprintable() for note in notes(format, nets, dns))
    if format == "mirage" and nets and nets[0].ipv4 is not None:
        assert words[0] == "--ipv4=" + nets[0].ipv4.with_prefixlen
    if format == "linux" and words:
        fields = _ip_fields(words[0])
        assert IPv4Address(fields["client"]) == nets[0].ipv4.ip
        assert IPv4Address(fields["netmask"]) == nets[0].ipv4.netmask
        assert fields["autoconf"] == "off" and fields["device"] == (nets[0].device or "")
    if format == "unikraft":
        assert len(words) <= len(nets)
        for word, net in zip(words, nets):
            cidr = word[len("netdev.ip="):].split(":")[0]
            assert cidr == (net.ipv4.with_prefixlen if net.ipv4 else "")


PER_NET = [p for p in PLACEHOLDERS if p not in ("dns", "search", "dnsK", "searchK")]
PLACEHOLDER_TEXT = st.one_of(
    st.builds(lambda i, n, o: "{%s%s%s}" % ("" if i is None else "%d." % i, n, o),
              st.none() | st.integers(0, 4), st.sampled_from(PER_NET), st.sampled_from(["", "?"])),
    st.builds(lambda n, k, o: "{%s%s%s}" % (n, "" if k is None else k, o),
              st.sampled_from(["dns", "search"]), st.none() | st.integers(0, 6),
              st.sampled_from(["", "?"])))
LITERALS = st.text(alphabet=st.characters(blacklist_characters="{}\0"), max_size=8)
TEMPLATES = st.lists(st.one_of(PLACEHOLDER_TEXT, LITERALS, st.sampled_from(["{{", "}}", " "])),
                     max_size=12).map("".join)


@settings(max_examples=300)
@given(TEMPLATES, st.lists(NETS, max_size=3), DNSES)
def test_valid_templates_render_to_words(template, nets, dns):
    check_template(template)
    words = build("template", nets, dns, template)
    assert all(_is_word(word) for word in words)
    assert len(words) <= len(template.split())


IDENTIFIERS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)


@given(IDENTIFIERS, st.none() | st.integers(0, 3))
@example("ipv5", None)
@example("gateway", 0)
def test_unknown_placeholders_are_refused(name, index):
    known = set(PER_NET) | {"dns", "search"}
    shared = any(name.startswith(s) and (name == s or name[len(s):].isdigit())
                 for s in ("dns", "search"))
    if name in known or shared:
        return
    prefix = "" if index is None else "%d." % index
    with pytest.raises(UsageError, match="unknown placeholder"):
        check_template("--x={%s%s}" % (prefix, name))


@settings(max_examples=300)
@given(st.text(), st.lists(NETS, max_size=2), DNSES)
@example("{", [], DNS())
@example("}{", [], DNS())
def test_any_template_renders_or_is_refused_clearly(template, nets, dns):
    try:
        check_template(template)
    except UsageError as error:
        assert str(error).startswith("--ip-args template: ")
        return
    assert all(_is_word(word) for word in build("template", nets, dns, template))
