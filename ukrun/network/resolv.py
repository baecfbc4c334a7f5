"""A container's resolv.conf, read for a guest: which nameservers it can actually reach.

Pure: functions of the text they are given, nothing read from disk. ``parse_resolv_conf``
never raises on content (unknown keywords, bad addresses, binary junk are skipped or kept in
``Resolv.invalid``); ``usable_nameservers`` then says which servers a guest on the container's
network can use, and why the others were left out.

Why servers get dropped: the guest has its own IP stack on the container's wire, not the
container's loopback, so a nameserver on 127.0.0.0/8 or ::1 is out of its reach. That is the
common case, not a corner: Docker puts its embedded resolver 127.0.0.11 in every container on a
user-defined network, and a systemd host's stub is 127.0.0.53.

Docker 25 and later record the servers the embedded resolver forwards to in a trailing comment
of the same file (moby ``libnetwork/internal/resolvconf``, ``Generate``)::

    nameserver 127.0.0.11
    options ndots:0

    # Based on host file: '/etc/resolv.conf' (internal resolver)
    # ExtServers: [host(192.168.1.1) 10.0.0.53]
    # Overrides: []

The list is Go's ``%v`` of a slice: ``[`` entries separated by one space ``]``. An entry
``host(ADDR)`` is queried by Docker from the host's network namespace (since Docker 26 every
server taken from the host's file; in 25 only loopback ones and IPv6 ones the network cannot
carry), a bare ``ADDR`` (from ``--dns``) from the container's. A non-loopback ``host()`` server
is normally reachable from the container as well (it is what a default-bridge container is
given directly); a loopback one is the host's own and is not. Docker 20.10 to 24 wrote no such
comment: there only IPv6 upstream servers appear, as plain ``nameserver`` lines next to
127.0.0.11, and the IPv4 ones are known to the daemon alone.

Addresses are read as ``ipaddress.ip_address`` reads them, into ukrun.kernel.inet values (which
compare equal to ipaddress's; a run does not import it); a zone (``fe80::1%eth0``) is kept as
``scope_id`` so it can be reported, and such servers are not usable (the zone names a
container interface the guest does not have).
"""
from __future__ import annotations

from ukrun.kernel import inet, inet_text
from ukrun.valueclass import value_class

DOCKER_EMBEDDED = inet_text.address("127.0.0.11")
SYSTEMD_STUB = inet_text.address("127.0.0.53")

# What a search domain may hold here: host-name characters. Anything else (a ':' would break
# Unikraft's and Linux's colon-separated fields, controls would break a guest's command line) is
# refused rather than passed on.
_DOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_EXT_PREFIX = "ExtServers:"


@value_class(frozen=True)
class ExtServer:
    """One entry of Docker's ``# ExtServers:`` comment; ``host_ns``: written ``host(ADDR)``,
    that is, Docker sends to it from the host's network namespace."""

    address: inet.IP
    host_ns: bool = False

    def __str__(self):
        return "host(%s)" % self.address if self.host_ns else str(self.address)


@value_class(frozen=True)
class Resolv:
    """What a resolv.conf says, as glibc and Docker read it.

    ``nameservers``: every ``nameserver`` line's address, in file order (glibc uses the first
    three; all are kept so a caller can tell what was skipped). ``search``: the last
    ``search``/``domain`` line's domains. ``options``: every ``options`` token, in order.
    ``ext_servers``: Docker's ``# ExtServers:`` entries (the last such comment), or ().
    ``invalid``: what was refused, as ``"KEYWORD TOKEN"`` strings, e.g. ``"nameserver foo"``.
    """

    nameservers: tuple = ()
    search: tuple = ()
    options: tuple = ()
    ext_servers: tuple = ()
    invalid: tuple = ()


def _address(token: str):
    """``token`` as an IP address (a zone allowed), or None."""
    try:
        return inet_text.address(token)
    except ValueError:
        return None


def _words(line: str) -> list:
    """The line's tokens up to an inline comment (a token starting with '#' or ';')."""
    words = []
    for word in line.split():
        if word[0] in "#;":
            break
        words.append(word)
    return words


def _is_domain(token: str) -> bool:
    return bool(token) and all(c in _DOMAIN_CHARS for c in token)


def parse_ext_servers(comment: str):
    """The entries of a ``ExtServers: [...]`` comment body (without the '#'), and the refused
    tokens; None when ``comment`` is not that comment."""
    body = comment.strip()
    if not body.startswith(_EXT_PREFIX):
        return None
    body = body[len(_EXT_PREFIX):].strip()
    if not (body.startswith("[") and body.endswith("]")):
        return None
    servers, invalid = [], []
    for token in body[1:-1].split():
        host_ns = token.startswith("host(") and token.endswith(")")
        address = _address(token[5:-1] if host_ns else token)
        if address is None:
            invalid.append("ExtServers " + token)
        else:
            servers.append(ExtServer(address, host_ns))
    return tuple(servers), tuple(invalid)


def parse_resolv_conf(text) -> Resolv:
    """Parse resolv.conf ``text`` (str, or bytes read as UTF-8). Never raises on content."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    nameservers, search, options, ext_servers, invalid = [], (), [], (), []
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped[0] in "#;":
            found = parse_ext_servers(stripped[1:])
            if found is not None:
                ext_servers, refused = found
                invalid.extend(refused)
            continue
        words = _words(stripped)
        if len(words) < 2:
            continue
        keyword, values = words[0], words[1:]
        if keyword == "nameserver":
            address = _address(values[0])
            if address is None:
                invalid.append("nameserver " + values[0])
            else:
                nameservers.append(address)
        elif keyword in ("search", "domain"):
            # glibc: the last search or domain line wins; domain names one domain.
            values = values[:1] if keyword == "domain" else values
            search = tuple(v for v in values if _is_domain(v))
            invalid.extend("%s %s" % (keyword, v) for v in values if not _is_domain(v))
        elif keyword == "options":
            options.extend(values)
    return Resolv(tuple(nameservers), search, tuple(options), ext_servers, tuple(invalid))


def format_resolv_conf(resolv: Resolv) -> str:
    """resolv.conf text for ``resolv`` (its ``invalid`` entries left out), in the layout Docker
    writes: ``parse_resolv_conf(format_resolv_conf(r))`` gives ``r`` back."""
    lines = ["nameserver %s" % address for address in resolv.nameservers]
    if resolv.search:
        lines.append("search " + " ".join(resolv.search))
    if resolv.options:
        lines.append("options " + " ".join(resolv.options))
    if resolv.ext_servers:
        lines += ["", "# ExtServers: [%s]" % " ".join(str(s) for s in resolv.ext_servers)]
    return "".join(line + "\n" for line in lines)


def _unscoped(address):
    """``address`` without a zone: what a guest is given."""
    return inet.unzoned(address)


def _loopback_why(address) -> str:
    if address == DOCKER_EMBEDDED:
        return "is Docker's embedded resolver, on the container's loopback"
    if address == SYSTEMD_STUB:
        return "is systemd-resolved's stub, on the container's loopback"
    return "is on the container's loopback"


def _unusable(address, ipv4: bool, ipv6: bool) -> str | None:
    """Why the guest cannot use ``address`` as a nameserver, or None when it can."""
    if address.is_loopback or address.is_unspecified:
        return "%s: the guest cannot reach it" % _loopback_why(address)
    if getattr(address, "scope_id", None):
        return ("has a zone (%%%s), a container interface the guest does not have"
                % address.scope_id)
    if address.is_multicast:
        return "is a multicast address"
    if address.version == 4 and not ipv4:
        return "is IPv4 and the guest has no IPv4 address"
    if address.version == 6 and not ipv6:
        return "is IPv6 and the guest has no IPv6 address"
    return None


def _ext_unusable(server: ExtServer, ipv4: bool, ipv6: bool) -> str | None:
    if server.host_ns and (server.address.is_loopback or server.address.is_unspecified):
        return "is on the Docker host's loopback: the guest cannot reach it"
    if server.host_ns and getattr(server.address, "scope_id", None):
        return "is link-local on a Docker host interface: the guest cannot reach it"
    return _unusable(server.address, ipv4, ipv6)


def usable_nameservers(resolv: Resolv, *, ipv4: bool = True, ipv6: bool = True):
    """``(servers, notes)``: the nameservers a guest can use, in order and without duplicates
    (addresses, zones removed), and one line per server left out and why,
    one saying where the servers came from when that is not the ``nameserver`` lines, and one
    when nothing is left. ``ipv4``/``ipv6``: whether the guest has an address of that family
    (a server of a family it lacks is left out).

    The listed servers come first; only when none of them is usable are Docker's upstream
    servers (``# ExtServers:``) used instead, as Docker's embedded resolver would use them.
    """
    servers, notes = [], []
    for token in resolv.invalid:
        if token.startswith(("nameserver ", "ExtServers ")):
            notes.append("%s is not an IP address: left out" % token)
    for address in resolv.nameservers:
        why = _unusable(address, ipv4, ipv6)
        if why is None:
            servers.append(_unscoped(address))
        else:
            notes.append("nameserver %s %s" % (address, why))
    if not servers and resolv.ext_servers:
        for server in resolv.ext_servers:
            why = _ext_unusable(server, ipv4, ipv6)
            if why is None:
                servers.append(_unscoped(server.address))
            else:
                notes.append("ExtServers %s %s" % (server, why))
        if servers:
            notes.append("using Docker's upstream servers from ExtServers: %s"
                         % ", ".join(str(s) for s in _unique(servers)))
    servers = _unique(servers)
    if not servers:
        if not resolv.nameservers and not resolv.ext_servers:
            notes.append("resolv.conf lists no nameserver: the guest gets no DNS servers")
        elif DOCKER_EMBEDDED in resolv.nameservers and not resolv.ext_servers:
            notes.append("no usable nameserver for the guest: Docker before 25.0 keeps its "
                         "upstream servers out of resolv.conf, so the guest gets no DNS servers")
        else:
            notes.append("no usable nameserver for the guest: it gets no DNS servers")
    return tuple(servers), tuple(_printable(note) for note in notes)


def _printable(text: str) -> str:
    # Zones and refused tokens come from the file: keep a terminal safe from what they hold.
    return "".join(c if c.isprintable() else "?" for c in text)


def _unique(items) -> list:
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out
