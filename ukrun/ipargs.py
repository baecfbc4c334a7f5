"""The words that tell a guest its network configuration (``--ip-args FORMAT``), as pure
functions of what was discovered: one ``GuestNet`` per interface, in order, and the ``DNS``
servers and search domains all interfaces share. ``build(format, nets, dns, template)``
returns a tuple of words, each non-empty, with no white space and no NUL.

Formats (``FORMATS``):

mirage
    MirageOS 4 runtime arguments (mirage ``lib_runtime/mirage/mirage_runtime_network.ml``),
    from the first interface. IPv4 only: exactly ``--ipv4=ADDR/N --ipv4-gateway=GW`` (the
    gateway left out when there is none), ukrun's default since the old C runner. With IPv6
    ``--ipv6=ADDR/N --ipv6-gateway=GW`` follow, and ``--accept-router-advertisements=false``:
    the container platform assigned the address statically, and a guest that also took router
    advertisements would add a SLAAC address (from eth0's MAC, which it inherits) and maybe a
    default router the platform never gave it. IPv6 only: ``--ipv6-only=true`` and no
    ``--ipv4``; mirage's ``--ipv4`` then keeps its default 10.0.0.2/24, which is harmless
    because ``--ipv6-only=true`` makes mirage connect the IPv4 layer with ``no_init`` (no
    address given to ARP, none answered or announced). No DNS words: a MirageOS unikernel
    rejects every runtime argument it was not built with, and ``--dns_servers`` exists only in
    those with a DNS client device, so adding it would break the others.
mirage-dns
    ``mirage``, then ``--dns_servers=tcp:A,tcp:[B]:53`` when there are servers the first
    interface can reach (its address families). The list syntax is ocaml-dns's
    ``nameserver_of_string`` (``udp:``/``tcp:``/``tls:``, IPv6 in brackets with a port).
    ``tcp:`` because dns-client's UDP mode queries a single server of the list, while TCP
    connects to them in turn (happy eyeballs) and fails over; it is also what MirageOS makes
    of servers learnt by DHCP (it hands over ``udp:`` and ``tcp:`` for each, and the client
    keeps the TCP ones).
unikraft
    Unikraft >= 0.16 ``netdev.ip=CIDR[:GW[:DNS0[:DNS1[:HOSTNAME[:DOMAIN]]]]]`` (uknetdev with
    ``CONFIG_LIBUKNETDEV_EINFO_LIBPARAM``), one word per interface in device order: uklibparam
    appends each repetition of an array parameter to the next device. IPv4 only; trailing empty
    fields are left out; DNS (the first two IPv4 servers) and DOMAIN (the first search domain)
    go to the first interface's entry; an interface without IPv4 before one with it gets an
    empty ``netdev.ip=`` so the following ones keep their device.
unikraft-lwip
    The older ``netdev.ipv4_addr=A netdev.ipv4_gw_addr=GW netdev.ipv4_subnet_mask=M`` (before
    0.16). First interface only: several devices need space-separated values in one word.
linux
    The kernel's ``ip=CLIENT::GW:NETMASK::DEVICE:off:DNS0:DNS1`` (admin-guide/nfs/nfsroot.rst):
    empty server and hostname (the kernel then uses the address as host name), ``off``: a
    static configuration, no DHCP/BOOTP/RARP; up to two IPv4 DNS servers, exported in
    /proc/net/pnp. First interface only, IPv4 only (``ip=`` has no IPv6). A gateway outside
    the prefix (Calico's /32 with 169.254.1.1) is written as is, but the kernel's own
    autoconfiguration refuses it ("IP-Config: Gateway not on directly connected network") and
    sets no default route; an init script that parses the word can add it on-link.
template
    A user's words (``--ip-args-template``); see below.
none
    No words.

``KERNEL_PARAMS`` names the formats whose words are kernel parameters: on a kernel command line
they must come before a ``--`` (Unikraft hands what follows to the application, Linux to init).

Template syntax. The template is split on white space into words, and each word is rendered on
its own. ``{NAME}`` is replaced by the first interface's value, ``{N.NAME}`` by interface N's
(counting from 0, in ``--interface`` order); ``{{`` and ``}}`` are literal braces. A word with
a placeholder that has no value (no gateway, no IPv6, no interface N, fewer DNS servers) is
left out entirely; ``{NAME?}`` instead renders as nothing and keeps the word; a word that
renders empty is left out. Per interface: ``interface`` (the container's name, eth0),
``device`` (the guest's name for it), ``tap``, ``mac``, ``mtu``, ``ipv4`` (ADDR/N),
``ipv4_address``, ``ipv4_prefix``, ``ipv4_netmask``, ``gateway4``, ``ipv6`` (ADDR/N),
``ipv6_address``, ``ipv6_prefix``, ``gateway6``. Shared: ``dns`` (all servers, comma
separated), ``dnsK`` (server K from 0), ``search`` (all search domains, comma separated),
``searchK``. Examples::

    --ip={ipv4} --gw={gateway4} --dns={dns0}       -> --ip=10.0.0.2/24 --gw=10.0.0.1 --dns=8.8.8.8
    ip={ipv4_address}::{gateway4?}:{ipv4_netmask}::{device}:off
    --net1={1.ipv4} --mtu={mtu}                     -> --net1=... only with a second interface
    {{literal}}                                     -> {literal}
"""
from __future__ import annotations

from ukrun.errors import UsageError
# The values and the default format live in ukrun.guestnet, which a run loads without this
# module; they are this module's too, as every format's.
from ukrun.guestnet import (DNS, KERNEL_PARAMS, NO_DNS, TAKES_DNS, GuestNet,  # noqa: F401
                            mirage, plain, with_prefix)


def _servers(dns, version: int, limit: int | None = None) -> list:
    found = [plain(s) for s in dns.servers if s.version == version]
    return found if limit is None else found[:limit]


def _strip_empty(fields: list) -> list:
    while fields and fields[-1] == "":
        fields.pop()
    return fields


def _mirage_nameserver(address) -> str:
    return ("tcp:%s" if address.version == 4 else "tcp:[%s]:53") % plain(address)


def mirage_dns(nets, dns, template=None) -> tuple:
    words = mirage(nets, dns)
    if not nets:
        return words
    families = {4} if nets[0].ipv4 is not None else set()
    families |= {6} if nets[0].ipv6 is not None else set()
    servers = [_mirage_nameserver(s) for s in dns.servers if s.version in families]
    return words + (("--dns_servers=" + ",".join(servers),) if servers else ())


def unikraft(nets, dns, template=None) -> tuple:
    words = []
    for index, net in enumerate(nets):
        fields = ["", ""]
        if net.ipv4 is not None:
            fields = [net.ipv4.with_prefixlen,
                      "" if net.gateway4 is None else str(net.gateway4)]
        if index == 0:
            servers = _servers(dns, 4, 2) + ["", ""]
            fields += servers[:2] + ["", dns.search[0] if dns.search else ""]
        words.append("netdev.ip=" + ":".join(_strip_empty(fields)))
    return tuple(_strip_empty_words(words))


def _strip_empty_words(words: list) -> list:
    # An empty entry only holds a later device's place; at the end it says nothing.
    while words and words[-1] == "netdev.ip=":
        words.pop()
    return words


def unikraft_lwip(nets, dns, template=None) -> tuple:
    if not nets or nets[0].ipv4 is None:
        return ()
    net = nets[0]
    words = ["netdev.ipv4_addr=%s" % net.ipv4.ip]
    if net.gateway4 is not None:
        words.append("netdev.ipv4_gw_addr=%s" % net.gateway4)
    words.append("netdev.ipv4_subnet_mask=%s" % net.ipv4.netmask)
    return tuple(words)


def linux(nets, dns, template=None) -> tuple:
    if not nets or nets[0].ipv4 is None:
        return ()
    net = nets[0]
    fields = [str(net.ipv4.ip), "", "" if net.gateway4 is None else str(net.gateway4),
              str(net.ipv4.netmask), "", net.device or "", "off"] + _servers(dns, 4, 2)
    return ("ip=" + ":".join(_strip_empty(fields)),)


def none(nets, dns, template=None) -> tuple:
    return ()


# Template placeholders: per interface (``{N.name}`` picks one) and shared (``{nameK}`` picks
# item K of the list).
_NET_VALUES = {
    "interface": lambda net: net.interface,
    "device": lambda net: net.device,
    "tap": lambda net: net.tap,
    "mac": lambda net: net.mac,
    "mtu": lambda net: None if net.mtu is None else str(net.mtu),
    "ipv4": lambda net: net.ipv4 and net.ipv4.with_prefixlen,
    "ipv4_address": lambda net: net.ipv4 and str(net.ipv4.ip),
    "ipv4_prefix": lambda net: net.ipv4 and str(net.ipv4.network.prefixlen),
    "ipv4_netmask": lambda net: net.ipv4 and str(net.ipv4.netmask),
    "gateway4": lambda net: net.gateway4 and str(net.gateway4),
    "ipv6": lambda net: net.ipv6 and with_prefix(net.ipv6),
    "ipv6_address": lambda net: net.ipv6 and plain(net.ipv6.ip),
    "ipv6_prefix": lambda net: net.ipv6 and str(net.ipv6.network.prefixlen),
    "gateway6": lambda net: net.gateway6 and plain(net.gateway6),
}
_SHARED = ("dns", "search")
PLACEHOLDERS = tuple(_NET_VALUES) + _SHARED + ("dnsK", "searchK")


def _number(text: str):
    """A decimal index as written in a template (no sign, no leading zero), or None."""
    if text.isdigit() and text.isascii() and (text == "0" or text[0] != "0"):
        return int(text)
    return None


def _template_error(word: str, why: str) -> UsageError:
    return UsageError("--ip-args template: word %r: %s" % (word, why))


def _placeholder(body: str, word: str) -> tuple:
    """``(name, index, optional)``: ``index`` is the interface for a per-interface name, the
    list item (None: all) for a shared one."""
    optional = body.endswith("?")
    body = body[:-1] if optional else body
    index = None
    if "." in body:
        prefix, body = body.split(".", 1)
        index = _number(prefix)
        if index is None:
            raise _template_error(word, "%r is not an interface number (0, 1, ...)" % prefix)
    if body in _NET_VALUES:
        return body, index or 0, optional
    for shared in _SHARED:
        item = body[len(shared):]
        if body.startswith(shared) and (not item or _number(item) is not None):
            if index is not None:
                raise _template_error(word, "{%s} is shared by all interfaces: write {%s}"
                                      % (shared, body))
            return shared, _number(item) if item else None, optional
    raise _template_error(word, "unknown placeholder {%s}; known: %s"
                          % (body, ", ".join(PLACEHOLDERS)))


def _parse_word(word: str) -> tuple:
    """The word as literal strings and placeholder tuples."""
    parts, literal, at = [], [], 0
    while at < len(word):
        char = word[at]
        if char in "{}" and word.startswith(char * 2, at):
            literal.append(char)
            at += 2
        elif char == "}":
            raise _template_error(word, "a single '}': write '}}' for a literal brace")
        elif char == "{":
            end = word.find("}", at)
            body = word[at + 1:end]
            if end < 0 or "{" in body:
                raise _template_error(word, "'{' without its '}': write '{{' for a literal brace")
            if not body or body == "?":
                raise _template_error(word, "an empty placeholder {}")
            parts += ["".join(literal), _placeholder(body, word)]
            literal, at = [], end + 1
        else:
            literal.append(char)
            at += 1
    return tuple(p for p in parts + ["".join(literal)] if p != "")


def check_template(template: str) -> tuple:
    """Check ``template``'s syntax and names (before anything runs) and return it parsed;
    raise UsageError (a ValueError) saying what is wrong and how to write it."""
    if not isinstance(template, str):
        raise TypeError("a template must be a str, not %s" % type(template).__name__)
    if "\0" in template:
        raise UsageError("--ip-args template: the template holds a NUL character")
    return tuple(_parse_word(word) for word in template.split())


def _value(placeholder: tuple, nets: tuple, dns: DNS):
    name, index, _optional = placeholder
    if name in _SHARED:
        items = [plain(s) for s in dns.servers] if name == "dns" else list(dns.search)
        if index is None:
            return ",".join(items) or None
        return items[index] if index < len(items) else None
    return _NET_VALUES[name](nets[index]) if index < len(nets) else None


def _render(parts: tuple, nets: tuple, dns: DNS):
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = _value(part, nets, dns)
        if value is None and not part[2]:
            return None
        out.append(value or "")
    return "".join(out) or None


def from_template(nets, dns, template=None) -> tuple:
    words = (_render(parts, nets, dns) for parts in check_template(template))
    return tuple(word for word in words if word is not None)


FORMATS = {
    "mirage": mirage,
    "mirage-dns": mirage_dns,
    "unikraft": unikraft,
    "unikraft-lwip": unikraft_lwip,
    "linux": linux,
    "template": from_template,
    "none": none,
}


def build(format: str, nets, dns: DNS | None = None, template: str | None = None) -> tuple:
    """The guest's words for ``format``; ``template`` is given with ``template`` and only then.
    Raises UsageError for an unknown format or a bad template, TypeError for wrong inputs."""
    builder = FORMATS.get(format)
    if builder is None:
        raise UsageError("--ip-args: %r is not one of %s" % (format, ", ".join(FORMATS)))
    if (template is None) == (format == "template"):
        raise UsageError("--ip-args template needs a template, and only it takes one")
    nets = tuple(nets)
    for net in nets:
        if not isinstance(net, GuestNet):
            raise TypeError("not a GuestNet: %r" % (net,))
    dns = NO_DNS if dns is None else dns
    if not isinstance(dns, DNS):
        raise TypeError("not a DNS: %r" % (dns,))
    return builder(nets, dns, template)


def _onlink_elsewhere(net: GuestNet) -> bool:
    return net.gateway4 is not None and net.gateway4 not in net.ipv4.network


def notes(format: str, nets, dns: DNS | None = None) -> tuple:
    """What ``format`` leaves out of what was discovered, one line each (for -v, --dry-run
    and inspect)."""
    nets, dns = tuple(nets), NO_DNS if dns is None else dns
    if format in ("none", "template") or not nets:
        return ()
    out, first = [], nets[0]
    if format != "unikraft" and len(nets) > 1:
        out.append("--ip-args %s describes only the first interface (%s) to the guest"
                   % (format, first.interface))
    described = nets if format == "unikraft" else nets[:1]
    if format in KERNEL_PARAMS:
        out += ["--ip-args %s has no IPv6: %s's %s is not passed" % (format, n.interface, n.ipv6)
                for n in described if n.ipv6 is not None]
        out += ["--ip-args %s: %s has no IPv4 address to pass" % (format, n.interface)
                for n in described if n.ipv4 is None]
    if format == "mirage" and dns.servers:
        out.append("--ip-args mirage passes no DNS servers (mirage-dns adds --dns_servers, "
                   "for unikernels built with a DNS client)")
    if format == "unikraft-lwip" and dns.servers:
        out.append("--ip-args unikraft-lwip has no DNS fields: no DNS servers are passed")
    if format in ("unikraft", "linux"):
        left = [s for s in dns.servers if s.version == 6] + _servers(dns, 4)[2:]
        if left:
            out.append("--ip-args %s takes two IPv4 DNS servers: %s left out"
                       % (format, ", ".join(str(s) for s in left)))
    if format == "linux" and first.ipv4 is not None and _onlink_elsewhere(first):
        out.append("--ip-args linux: the gateway %s is outside %s; the kernel's own IP "
                   "autoconfiguration sets no default route through it"
                   % (first.gateway4, first.ipv4))
    return tuple(out)
