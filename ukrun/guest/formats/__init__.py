"""What a guest is told about its network (``--ip-args FORMAT``), as pure functions of what was
discovered: one ``GuestNet`` per interface, in order, and the ``DNS`` servers and search domains
all interfaces share. ``build(format, nets, dns, template)`` returns a tuple of words, each
non-empty, with no white space and no NUL; ``notes(format, nets, dns)`` says what the words
leave out, one line each (for -v, --dry-run and inspect).

One table, ``FORMATS``, names every format, the family module that writes its words and what a
run must know of them beforehand; ``KERNEL_PARAMS`` (words that are kernel parameters: on a
kernel command line they must come before a ``--``, after which Unikraft hands the rest to the
application and Linux to init) and ``TAKES_DNS`` (words that may name DNS servers or search
domains, for which a run reads resolv.conf) are derived from it. One module per family, each
with its words and its ``notes(format, nets, dns)``, documents its formats:

- ``mirage``: mirage (the default, ukrun's since the old C runner) and mirage-dns;
- ``unikraft``: unikraft (>= 0.16, every interface) and unikraft-lwip (older);
- ``linux``: the kernel's ``ip=``;
- ``template``: a user's words (``--ip-template``), with ``check_template``;
- ``none``: no words.

What more than one family's words and notes are made of is ukrun.guest.formats.shared's. No
family module imports this one, so this one can load them: a new format is one row here and,
for a new family, one module. Only the format asked for is loaded: a run with the default loads
this module, ukrun.guest.formats.shared and ukrun.guest.formats.mirage.
"""
from __future__ import annotations

import sys

from ukrun.errors import UsageError
from ukrun.kernel import inet
from ukrun.kernel.mac import mac_bytes
from ukrun.valueclass import value_class


def _check_name(what: str, value, optional: bool = False):
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise TypeError("%s must be a str, not %s" % (what, type(value).__name__))
    # These go into words and into colon-separated fields (Unikraft, Linux).
    if not value or any(c.isspace() or c in "\0:/," or not c.isprintable() for c in value):
        raise ValueError("%s %r: not a name (empty, or white space, control, ':', '/' or ',')"
                         % (what, value))


# What each address of a GuestNet must be (ukrun.kernel.inet.kind: an inet value or the ipaddress
# object named here).
_KINDS = {"ipv4": ((inet.INTERFACE, 4), "IPv4Interface"),
          "gateway4": ((inet.ADDRESS, 4), "IPv4Address"),
          "ipv6": ((inet.INTERFACE, 6), "IPv6Interface"),
          "gateway6": ((inet.ADDRESS, 6), "IPv6Address")}


def _check_type(what: str, value):
    wanted, name = _KINDS[what]
    if value is not None and inet.kind(value) != wanted:
        raise TypeError("%s must be %s or None, not %s"
                        % (what, name, type(value).__name__))


@value_class(frozen=True)
class GuestNet:
    """One interface as the guest gets it. ``interface``: the container's name for it (eth0);
    ``tap``: the tap the guest is attached to; ``device``: the guest's own name for it (the
    Solo5 net name, ``eth0`` in a Linux guest), None when it has none. Addresses are
    ukrun.kernel.inet values or the ipaddress objects of the same kind."""

    interface: str
    tap: str
    mac: str | None = None
    mtu: int | None = None
    ipv4: inet.Interface | None = None
    gateway4: inet.IP | None = None
    gateway4_onlink: bool = False
    ipv6: inet.Interface | None = None
    gateway6: inet.IP | None = None
    device: str | None = None

    def __post_init__(self):
        _check_name("interface", self.interface)
        _check_name("tap", self.tap)
        _check_name("device", self.device, optional=True)
        if self.mac is not None:
            try:
                mac_bytes(self.mac)
            except ValueError:
                raise ValueError("mac %r: not xx:xx:xx:xx:xx:xx" % (self.mac,)) from None
        if self.mtu is not None and (type(self.mtu) is not int or not 0 < self.mtu < 1 << 32):
            raise ValueError("mtu %r: not a positive 32-bit integer" % (self.mtu,))
        for what in _KINDS:
            _check_type(what, getattr(self, what))
        if type(self.gateway4_onlink) is not bool:
            raise TypeError("gateway4_onlink must be a bool")


@value_class(frozen=True)
class DNS:
    """The nameservers (addresses: ukrun.kernel.inet values or ipaddress objects; usable ones, in
    order, see ``ukrun.network.resolv.usable_nameservers``) and search domains every interface
    shares."""

    servers: tuple = ()
    search: tuple = ()

    def __post_init__(self):
        for server in self.servers:
            found = inet.kind(server)
            if found is None or found[0] != inet.ADDRESS:
                raise TypeError("DNS server %r is not an IPv4 or IPv6 address" % (server,))
        for domain in self.search:
            _check_name("search domain", domain)


NO_DNS = DNS()


@value_class(frozen=True)
class Format:
    """One format of the guest's network words: which family's module writes them, with which
    of its functions, and what a run must know of them before it asks."""

    family: str  # the module of ukrun.guest.formats that writes its words and notes
    words: str  # that module's function: (nets, dns, template) -> tuple of words
    kernel_params: bool = False  # kernel parameters: before a "--" on a kernel command line
    takes_dns: bool = False  # its words may name DNS servers or search domains
    takes_template: bool = False  # its words are --ip-template's (and it alone takes one)


FORMATS = {
    "mirage": Format("mirage", "mirage"),
    "mirage-dns": Format("mirage", "mirage_dns", takes_dns=True),
    "unikraft": Format("unikraft", "unikraft", kernel_params=True, takes_dns=True),
    "unikraft-lwip": Format("unikraft", "unikraft_lwip", kernel_params=True),
    "linux": Format("linux", "linux", kernel_params=True, takes_dns=True),
    "template": Format("template", "from_template", takes_dns=True, takes_template=True),
    "none": Format("none", "none"),
}

KERNEL_PARAMS = frozenset(name for name, f in FORMATS.items() if f.kernel_params)
TAKES_DNS = frozenset(name for name, f in FORMATS.items() if f.takes_dns)


def _format(name: str) -> Format:
    found = FORMATS.get(name)
    if found is None:
        raise UsageError("--ip-args: %r is not one of %s" % (name, ", ".join(FORMATS)))
    return found


def _family(format: Format):
    """The module that writes ``format``'s words, imported now (the others stay unloaded). It
    does not import this module, so loading it here makes no cycle."""
    name = "%s.%s" % (__name__, format.family)
    # __import__ rather than importlib.import_module: importlib is not loaded on a run's start
    # (python -S), and this needs nothing of it.
    __import__(name)
    return sys.modules[name]


def build(format: str, nets, dns: DNS | None = None, template: str | None = None) -> tuple:
    """The guest's words for ``format``; ``template`` is given with ``template`` and only then.
    Raises UsageError for an unknown format or a bad template, TypeError for wrong inputs."""
    found = _format(format)
    if (template is None) == found.takes_template:
        raise UsageError("--ip-args template needs a template, and only it takes one")
    nets = tuple(nets)
    for net in nets:
        if not isinstance(net, GuestNet):
            raise TypeError("not a GuestNet: %r" % (net,))
    dns = NO_DNS if dns is None else dns
    if not isinstance(dns, DNS):
        raise TypeError("not a DNS: %r" % (dns,))
    return getattr(_family(found), found.words)(nets, dns, template)


def notes(format: str, nets, dns: DNS | None = None) -> tuple:
    """What ``format`` leaves out of what was discovered, one line each (for -v, --dry-run
    and inspect). Raises UsageError for an unknown format."""
    found = _format(format)
    nets, dns = tuple(nets), NO_DNS if dns is None else dns
    if not nets:
        return ()
    return tuple(_family(found).notes(format, nets, dns))

