"""The restart record: what a run handed to the guest, kept on the tap's IFLA_IFALIAS so that a
later run in the same network namespace (a container restarted in a kept pod) hands it again.

The alias is input: anything holding CAP_NET_ADMIN in the pod can write it. ``Record.from_alias``
reads only what ``Record.to_alias`` writes for a valid record and checks every field;
anything else that starts "ukrun:" is a RecordError that names the tap and the field.
"""
from __future__ import annotations

from ukrun import inet
from ukrun.rtnl_objects import format_mac
from ukrun.rtnl_objects import parse_mac as _parse_mac
from ukrun.valueclass import value_class

WIRINGS = ("tc", "bridge")
RECORD_PREFIX = "ukrun:"
# Version 1 holds IPv4 alone; version 2 adds the IPv6 address and gateway (6=, h=) and is
# written only when there is IPv6 to record, so an IPv4-only record stays readable by a
# ukrun from before IPv6.
RECORD_VERSION = "2"
_KEYS_BY_VERSION = {"1": "iwb4gome", "2": "iwb4go6hme"}
ALIAS_MAX = 255  # IFALIASZ - 1: the kernel refuses a longer IFLA_IFALIAS


def parse_mac(text: str) -> str:
    """``text`` as a unicast MAC in lower case; ValueError when it is not one."""
    return format_mac(_parse_mac(text, unicast=True))


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
    Addresses as ukrun.inet values (from ``from_alias``) or ipaddress objects."""

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

    @property
    def version(self) -> str:
        return "1" if self.ipv6 is None and self.gateway6 is None else RECORD_VERSION

    # The alias reads "ukrun:1 i=eth0 w=tc b= 4=172.30.0.2/16 g=172.30.0.1 o=0 m=MAC e=MAC"
    # (version 2 adds 6=ADDR/N h=GW after o=): words that `ip link` shows as they are, and no
    # json to load on a run's path. No value can hold a space (interface names, addresses and
    # MACs cannot); an empty one is None.
    def to_alias(self) -> str:
        values = {"i": self.interface, "w": self.wiring, "b": self.bridge,
                  "4": None if self.ipv4 is None else self.ipv4.with_prefixlen,
                  "g": self.gateway4, "o": int(self.gateway4_onlink),
                  "6": None if self.ipv6 is None else self.ipv6.with_prefixlen,
                  "h": self.gateway6, "m": self.guest_mac, "e": self.interface_mac}
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
        # Reading one is for the runs that find one (a restart): the others never load it.
        from ukrun.record_read import read_alias

        return read_alias(cls, alias, tap)

    def check(self, tap: str | None = None) -> "Record":
        """This record when every field is one a run can hand over; else RecordError."""
        problem = record_problem(self, tap)
        if problem is not None:
            raise RecordError(problem, tap)
        return self


def _name_problem(key: str, name) -> str | None:
    from ukrun.tap import validate_ifname

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
    yield None if r.guest_mac is None else _mac_problem("m", r.guest_mac)
    yield _mac_problem("e", r.interface_mac)


def record_problem(record: Record, tap: str | None = None) -> str | None:
    """What is wrong with ``record`` (read from ``tap``): the first problem found, or None."""
    return next((p for p in _problems(record, tap) if p is not None), None)
