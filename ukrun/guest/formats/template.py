"""The ``template`` format: a user's words (``--ip-template``), with this module's placeholders
filled in from what was discovered; ``check_template`` checks one before anything runs.

The template is split on white space into words, and each word is rendered on its own.
``{NAME}`` is replaced by the first interface's value, ``{N.NAME}`` by interface N's (counting
from 0, in ``--interface`` order); ``{{`` and ``}}`` are literal braces. A word with a
placeholder that has no value (no gateway, no IPv6, no interface N, fewer DNS servers) is left
out entirely; ``{NAME?}`` instead renders as nothing and keeps the word; a word that renders
empty is left out. Per interface: ``interface`` (the container's name, eth0), ``device`` (the
guest's name for it), ``tap``, ``mac``, ``mtu``, ``ipv4`` (ADDR/N), ``ipv4_address``,
``ipv4_prefix``, ``ipv4_netmask``, ``gateway4``, ``ipv6`` (ADDR/N), ``ipv6_address``,
``ipv6_prefix``, ``gateway6``. Shared: ``dns`` (all servers, comma separated), ``dnsK``
(server K from 0), ``search`` (all search domains, comma separated), ``searchK``. Examples::

    --ip={ipv4} --gw={gateway4} --dns={dns0}       -> --ip=10.0.0.2/24 --gw=10.0.0.1 --dns=8.8.8.8
    ip={ipv4_address}::{gateway4?}:{ipv4_netmask}::{device}:off
    --net1={1.ipv4} --mtu={mtu}                     -> --net1=... only with a second interface
    {{literal}}                                     -> {literal}
"""
from __future__ import annotations

from ukrun.errors import UsageError
from ukrun.guest.formats.shared import plain, with_prefix

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


def _value(placeholder: tuple, nets: tuple, dns):
    name, index, _optional = placeholder
    if name in _SHARED:
        items = [plain(s) for s in dns.servers] if name == "dns" else list(dns.search)
        if index is None:
            return ",".join(items) or None
        return items[index] if index < len(items) else None
    return _NET_VALUES[name](nets[index]) if index < len(nets) else None


def _render(parts: tuple, nets: tuple, dns):
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


def notes(format: str, nets: tuple, dns) -> list:
    return []  # the words are the user's: what they leave out was chosen
