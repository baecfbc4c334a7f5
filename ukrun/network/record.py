"""The restart record: what a run handed to the guest, kept on the tap's IFLA_IFALIAS so that a
later run in the same network namespace (a container restarted in a kept pod) hands it again.

The alias is input: anything holding CAP_NET_ADMIN in the pod can write it. ``Record.from_alias``
reads only what ``Record.to_alias`` writes for a valid record and checks every field;
anything else that starts "ukrun:" is a RecordError that names the tap and the field.
"""
from __future__ import annotations

from ukrun.kernel import inet, inet_text
from ukrun.kernel.mac import parse_mac
from ukrun.valueclass import value_class

WIRINGS = ("tc", "bridge")
RECORD_PREFIX = "ukrun:"
# Version 1 holds IPv4 alone; version 2 adds the IPv6 address and gateway (6=, h=) and is
# written only when there is IPv6 to record, so an IPv4-only record stays readable by a
# ukrun from before IPv6; version 3 adds how the tap went to the guest (t=fd) and is written
# only for a tap handed over as an fd. Versions 1 and 2 are taps handed over by name.
RECORD_VERSION = "2"
_KEYS_BY_VERSION = {"1": "iwb4gome", "2": "iwb4go6hme", "3": "iwb4go6htme"}
# How the tap went to the guest: as an inherited fd (it has a reader from before the run
# ends), or by name (the guest opens it itself, some time after the run's execve).
HANDED_AS = ("name", "fd")
ALIAS_MAX = 255  # IFALIASZ - 1: the kernel refuses a longer IFLA_IFALIAS


class RecordError(ValueError):
    """An alias that starts like ukrun's record but is not a valid one: damaged or forged
    (anything holding CAP_NET_ADMIN in the namespace can write it).

    ``str(e)`` names the tap and the field ("record on tap0: b='eth0' is the interface itself");
    ``hint`` says how to recover.
    """

    def __init__(self, problem: str, tap: str | None = None):
        super().__init__("record on %s: %s" % (tap, problem) if tap else "record: " + problem)
        self.problem = problem
        self.tap = tap

    @property
    def hint(self) -> str:
        tap = self.tap or "the tap"
        return ("ukrun did not write it: if no guest uses %s, delete it (ip link delete %s) "
                "and start the container again" % (tap, tap))




@value_class(frozen=True)
class Record:
    """What a run handed to the guest, so a later run in the same namespace can hand it again.
    Addresses as ukrun.kernel.inet values (from ``from_alias``) or ipaddress objects."""

    interface: str
    wiring: str
    bridge: str | None
    ipv4: inet.Interface | None
    gateway4: inet.IP | None
    gateway4_onlink: bool
    guest_mac: str | None
    interface_mac: str  # the interface's own MAC before the run (bridge wiring may change it)
    ipv6: inet.Interface | None = None
    gateway6: inet.IP | None = None
    handed_as: str = "name"  # HANDED_AS

    @property
    def version(self) -> str:
        if self.handed_as == "fd":
            return "3"
        return "1" if self.ipv6 is None and self.gateway6 is None else RECORD_VERSION

    # The alias reads "ukrun:1 i=eth0 w=tc b= 4=172.30.0.2/16 g=172.30.0.1 o=0 m=MAC e=MAC"
    # (version 2 adds 6=ADDR/N h=GW after o=, version 3 t=fd after them): words that `ip link` shows as they are, and no
    # json to load on a run's path. No value can hold a space (interface names, addresses and
    # MACs cannot); an empty one is None.
    def to_alias(self) -> str:
        values = {"i": self.interface, "w": self.wiring, "b": self.bridge,
                  "4": None if self.ipv4 is None else self.ipv4.with_prefixlen,
                  "g": self.gateway4, "o": int(self.gateway4_onlink),
                  "6": None if self.ipv6 is None else self.ipv6.with_prefixlen,
                  "h": self.gateway6, "t": self.handed_as, "m": self.guest_mac,
                  "e": self.interface_mac}
        version = self.version
        words = ["%s=%s" % (key, "" if values[key] is None else values[key])
                 for key in _KEYS_BY_VERSION[version]]
        alias = RECORD_PREFIX + " ".join([version] + words)
        if any(word.split() != [word] for word in words):
            raise ValueError("record %r: a value holds white space" % alias)
        if len(alias.encode()) > ALIAS_MAX:  # cannot happen with valid names; keep it honest
            raise ValueError("record %r is longer than %d bytes" % (alias, ALIAS_MAX))
        return alias

    @classmethod
    def from_alias(cls, alias: str | None, tap: str | None = None) -> "Record" | None:
        """The record in ``alias`` (read from tap ``tap``), every field checked.

        None when the alias is not ours (None, empty, or not starting "ukrun:"); RecordError
        when it is but does not hold exactly what ``to_alias`` writes for a valid record.
        """
        if not alias or not alias.startswith(RECORD_PREFIX):
            return None
        return _read_alias(cls, alias, tap)

    def check(self, tap: str | None = None) -> "Record":
        """This record when every field is one a run can hand over; else RecordError."""
        problem = record_problem(self, tap)
        if problem is not None:
            raise RecordError(problem, tap)
        return self


# --- reading it back --------------------------------------------------------------------------

def _read_alias(cls, alias: str, tap: str | None):
    """The ``cls`` (Record) that ``alias``, starting "ukrun:", holds, every field checked;
    RecordError when it does not hold exactly what ``to_alias`` writes for a valid record."""
    if alias.startswith(RECORD_PREFIX + "{"):
        return _from_json(cls, alias[len(RECORD_PREFIX):], tap)
    version, *words = alias[len(RECORD_PREFIX):].split(" ")
    keys = _KEYS_BY_VERSION.get(version)
    if keys is None:
        raise RecordError("version %r is not one of %s" % (
            version, ", ".join(_KEYS_BY_VERSION)), tap)
    data = {}
    for word in words:
        key, equals, value = word.partition("=")
        if not equals or len(key) != 1 or key not in keys:
            raise RecordError("%r is not one of the words %s" % (
                word, " ".join(k + "=" for k in keys)), tap)
        if key in data:
            raise RecordError("%s= comes twice" % key, tap)
        data[key] = value
    missing = [key + "=" for key in keys if key not in data]
    if missing:
        raise RecordError("%s missing" % " ".join(missing), tap)
    record = cls(data["i"], data["w"], data["b"] or None,
                 _ip_word("4", data["4"], 4, tap, True),
                 _ip_word("g", data["g"], 4, tap, False), _onlink_word(data["o"], tap),
                 data["m"] or None, data["e"],
                 _ip_word("6", data.get("6", ""), 6, tap, True),
                 _ip_word("h", data.get("h", ""), 6, tap, False),
                 data.get("t", "name")).check(tap)
    written = record.to_alias()
    if written != alias:  # e.g. 4=10.0.0.2/255.0.0.0 or 4=10.0.0.2, words reordered
        raise RecordError("not written the way ukrun writes it (%r)" % written, tap)
    return record


def _from_json(cls, text: str, tap: str | None):
    """The JSON record ukrun wrote before its words (``{"v":1,"i":"eth0",...}``), still
    found in pods that kept their namespace across an upgrade: read with the same checks,
    then rewritten as words by the run that takes it over."""
    import json  # only for this upgrade path

    try:
        data = json.loads(text)
    except ValueError:
        raise RecordError("not JSON nor words", tap) from None
    keys = set(_KEYS_BY_VERSION["1"]) | {"v"}
    if not isinstance(data, dict) or set(data) != keys or data["v"] != 1:
        raise RecordError("a JSON record, but not the one ukrun wrote (keys %s, v 1)"
                          % " ".join(sorted(keys)), tap)
    texts = [data[key] for key in "iwb4gme"]
    if not all(value is None or isinstance(value, str) for value in texts) or (
            type(data["o"]) is not int):
        raise RecordError("a JSON record with a value of the wrong type", tap)
    return cls(data["i"], data["w"], data["b"],
               _ip_word("4", data["4"] or "", 4, tap, True),
               _ip_word("g", data["g"] or "", 4, tap, False),
               _onlink_word(str(data["o"]), tap),
               data["m"], data["e"]).check(tap)


def _ip_word(key: str, text: str, version: int, tap, prefix: bool):
    """The address (with its prefix when ``prefix``) in word ``key``; None when it is empty."""
    if not text:
        return None
    try:
        return inet_text.interface(text, version) if prefix else inet_text.address(text, version)
    except ValueError:
        raise RecordError("%s=%r is not an IPv%d address%s" % (
            key, text, version, "/prefix" if prefix else ""), tap) from None


def _onlink_word(text: str, tap) -> bool:
    if text not in ("0", "1"):
        raise RecordError("o=%r is neither 0 nor 1" % text, tap)
    return text == "1"


# --- what a valid record holds ------------------------------------------------------------------

def _name_problem(key: str, name) -> str | None:
    from ukrun.kernel.ifname import validate_ifname

    try:
        validate_ifname(name)
        name.encode()
    except UnicodeError:  # the kernel takes any bytes; an alias is UTF-8 text
        return "%s=%r is not UTF-8, which a record cannot hold" % (key, name)
    except (ValueError, TypeError) as e:
        return "%s=%r is no interface name: %s" % (key, name, e)
    if name.split() != [name]:  # the kernel allows some spaces (U+2028, ...); words cannot
        return "%s=%r holds white space, which a record cannot" % (key, name)
    return None


def _mac_problem(key: str, mac) -> str | None:
    try:
        if parse_mac(mac) == mac:
            return None
    except ValueError as e:
        return "%s=%r: %s" % (key, mac, e)
    return "%s=%r is not in lower case" % (key, mac)


# 0.0.0.0/8 is "this network": no host answers for an address in it.
_THIS_NETWORK = inet.Network(inet.IP(bytes(4)), 8)


def _host_problem(key: str, ip, network, link_local_ok: bool) -> str | None:
    """Why ``ip`` cannot be a host's unicast address on ``network``, or None."""
    kind = ("multicast" if ip.is_multicast else "loopback" if ip.is_loopback
            else "reserved or broadcast" if ip.is_reserved
            else "'this network'" if ip in _THIS_NETWORK
            else "link-local" if ip.is_link_local and not link_local_ok else None)
    if kind is not None:
        return "%s=%s is a %s address" % (key, ip, kind)
    # /31 (RFC 3021) and /32 have no network or broadcast address to avoid.
    if ip in network and network.prefixlen <= 30 and ip in (network.network_address,
                                                           network.broadcast_address):
        return "%s=%s is the network or broadcast address of %s" % (key, ip, network)
    return None


def _ipv4_problem(record: Record) -> str | None:
    ipv4, gateway = record.ipv4, record.gateway4
    if ipv4 is None:
        if record.ipv6 is None:
            return "neither 4= nor 6= holds an address"
        return None if gateway is None else "g=%s without 4=" % gateway
    if inet.kind(ipv4) != (inet.INTERFACE, 4):
        return "4=%r is not an IPv4 address/prefix" % (ipv4,)
    if not 1 <= ipv4.network.prefixlen <= 32:
        return "4=%s: the prefix must be 1 to 32" % ipv4.with_prefixlen
    # A guest's own address is never link-local here: CNIs hand out routable ones, and
    # 169.254.0.0/16 is where Calico puts its gateway.
    problem = _host_problem("4", ipv4.ip, ipv4.network, link_local_ok=False)
    if problem is not None or gateway is None:
        return problem
    if inet.kind(gateway) != (inet.ADDRESS, 4):
        return "g=%r is not an IPv4 address" % (gateway,)
    if gateway == ipv4.ip:
        return "g=%s is the address itself" % gateway
    # Outside the prefix is fine: Calico (169.254.1.1) and Cilium reach a /32's gateway through
    # a link-scope route to it, without the onlink flag; the guest is told the gateway alone.
    return _host_problem("g", gateway, ipv4.network, link_local_ok=True)


def _ipv6_problem(record: Record) -> str | None:
    ipv6, gateway = record.ipv6, record.gateway6
    if ipv6 is None:
        return None if gateway is None else "h=%s without 6=" % gateway
    if inet.kind(ipv6) != (inet.INTERFACE, 6):
        return "6=%r is not an IPv6 address/prefix" % (ipv6,)
    if not 1 <= ipv6.network.prefixlen <= 128:
        return "6=%s: the prefix must be 1 to 128" % ipv6.with_prefixlen
    ip = ipv6.ip
    # The guest's own address is a global or unique local one; its gateway may be link-local
    # (a router's fe80::1, Calico's on-link gateway).
    kind = ("multicast" if ip.is_multicast else "loopback" if ip.is_loopback
            else "unspecified" if ip.is_unspecified else "link-local" if ip.is_link_local
            else "IPv4-mapped" if ip.ipv4_mapped is not None else None)
    if kind is not None:
        return "6=%s is a %s address" % (ip, kind)
    if gateway is None:
        return None
    if inet.kind(gateway) != (inet.ADDRESS, 6):
        return "h=%r is not an IPv6 address" % (gateway,)
    kind = ("multicast" if gateway.is_multicast else "loopback" if gateway.is_loopback
            else "unspecified" if gateway.is_unspecified else None)
    if kind is not None:
        return "h=%s is a %s address" % (gateway, kind)
    return "h=%s is the address itself" % gateway if gateway == ip else None


def _problems(r: Record, tap: str | None):
    """Each check's problem or None, lazily: a check runs only when those before it passed."""
    yield _name_problem("i", r.interface)
    yield "i=%r is the tap itself" % r.interface if r.interface == tap else None
    yield None if r.wiring in WIRINGS else "w=%r is not one of %s" % (r.wiring, ", ".join(WIRINGS))
    if r.wiring == "bridge":
        yield None if r.bridge is not None else "w=bridge without b="
        yield _name_problem("b", r.bridge)
        yield "b=%r is the interface itself" % r.bridge if r.bridge == r.interface else None
        yield "b=%r is the tap itself" % r.bridge if r.bridge == tap else None
    else:
        yield None if r.bridge is None else "b=%r is set but w=%s has no bridge" % (r.bridge,
                                                                                  r.wiring)
    yield _ipv4_problem(r)
    yield _ipv6_problem(r)
    yield None if isinstance(r.gateway4_onlink, bool) else "o=%r is not a boolean" % (
        r.gateway4_onlink,)
    yield "o=1 without a gateway" if r.gateway4_onlink and r.gateway4 is None else None
    yield None if r.handed_as in HANDED_AS else "t=%r is not one of %s" % (
        r.handed_as, ", ".join(HANDED_AS))
    yield None if r.guest_mac is None else _mac_problem("m", r.guest_mac)
    yield _mac_problem("e", r.interface_mac)


def record_problem(record: Record, tap: str | None = None) -> str | None:
    """What is wrong with ``record`` (read from ``tap``): the first problem found, or None."""
    return next((p for p in _problems(record, tap) if p is not None), None)
