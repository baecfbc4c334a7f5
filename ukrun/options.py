"""The options of ``ukrun TARGET``, as data: one table (``OPTIONS``) that every other place
derives from. Each ``Option`` says how the command line spells it, which targets take it, its
default, how the command line's text becomes its value (``convert``) and what a value must be
(``choices``, ``check``). From it:

- ukrun.parser builds the argparse parser (--help, the man page, every error message);
- ``fast_parse`` parses a well-formed run command line alone;
- ``runner.Options`` has one field per option a run reads (``field``), with its default, and
  ``field_values`` hands it a parsed command line;
- ukrun.preflight refuses an option the target does not take and checks every value, for the
  command line and the library alike;
- ``per_interface`` pairs the options that take one value per interface (``Option.nth``)
  with the interfaces (--interface, repeatable), by position.

A run is on every unikernel container's start path, and argparse is slow to load there: with
the ``re`` and ``enum`` it brings, ~10 ms on this kind of machine, more than ukrun's own work.
So a well-formed run command line is parsed here, without argparse; anything else (--help, an
unknown or misspelt option, a bad value) goes to argparse, which parses it the same way and
words the error. tests/test_cli.py checks that both agree wherever ``fast_parse`` answers.
"""
from __future__ import annotations

from ukrun.errors import UsageError
from ukrun.guest.targets import IP_ARG_FORMATS, QEMU_CPU, QEMU_MEM, TARGETS

DESCRIPTION = ("Run a unikernel as a container's main process: hand it the container's network "
               "(eth0's address, gateway and MAC) through a tap device, drop capabilities and "
               "exec it.")

TARGET_HELP = {
    "unix": "MirageOS unix target: run UNIKERNEL itself on the tap",
    "hvt": "Solo5 hvt (KVM): solo5-hvt --net:NAME=TAP -- UNIKERNEL",
    "spt": "Solo5 spt (seccomp): solo5-spt --net:NAME=TAP -- UNIKERNEL",
    "ukvm": "the old Solo5 ukvm tender: /unikernel/ukvm --net=@FD -- UNIKERNEL",
    "qemu": "QEMU with software emulation: -kernel UNIKERNEL -append ARGS",
    "kvm": "QEMU/KVM: -enable-kvm -kernel UNIKERNEL -append ARGS",
}


def _check_ip_template(template) -> None:
    from ukrun.guest.formats.template import check_template  # only when one is given

    check_template(template)


class Option:
    """One option of the table.

    ``flags``: its spellings, the last one used in messages (``flag``); ``dest``: its name in
    a parsed namespace and in ``runner.Options``; ``default``: the value a run gets when it is
    not given; ``targets``: the names of the targets that take it (None: every one);
    ``field``: whether ``runner.Options`` has it (``--dry-run`` is the command's, not a run's);
    ``convert``: the command line's text to a value (ValueError saying why not); ``choices``
    and ``check`` (a function raising ValueError or TypeError saying why) what a value must be,
    checked by the preflight; ``hint``: what to do when it is not; ``help``: a str, or a
    function of the Target for text that depends on it. ``nth``: for an option that takes one
    value per interface (repeatable, paired with --interface by position), the default of
    interface N (``default`` is then the first interface's alone).
    """

    __slots__ = ("flags", "dest", "action", "default", "choices", "convert", "check", "hint",
                 "targets", "field", "metavar", "help", "nth")

    def __init__(self, *flags, action="store", default=None, choices=None, convert=None,
                 check=None, hint=None, targets=None, field=True, dest=None, metavar=None,
                 help=None, nth=None):
        self.flags = flags
        self.dest = dest or flags[-1].lstrip("-").replace("-", "_")
        self.action, self.default, self.choices = action, default, choices
        self.convert, self.check, self.hint = convert, check, hint
        self.targets, self.field, self.metavar, self.help = targets, field, metavar, help
        self.nth = nth

    @property
    def flag(self) -> str:
        return self.flags[-1]

    @property
    def takes_value(self) -> bool:
        return self.action != "store_true"

    @property
    def cli_default(self):
        """The default in a parsed namespace: a repeatable option collects into a list, and
        one with a default value is None until given (argparse would add to the default: a
        given value must replace it); ``field_values`` then gives the default."""
        if self.action == "append" and self.default is not None:
            return None if self.default else []
        return self.default

    def takes(self, target_name: str) -> bool:
        return self.targets is None or target_name in self.targets

    def help_for(self, target) -> str | None:
        return self.help(target) if callable(self.help) else self.help

    def is_set(self, value) -> bool:
        """Whether ``value`` differs from the default (a repeatable one given as any sequence,
        or as one value alone)."""
        if self.action == "append" and value is not None and self.default is not None:
            return items(value) != tuple(self.default)
        return value != self.default


def items(value) -> tuple:
    """A repeatable option's value as a tuple: the library may give a single value alone
    (``interface="eth1"``)."""
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


# --- conversions and checks (ValueError or TypeError saying why) -------------------------

def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("%r is not a number" % text) from None


def _positive_mb(value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("%r is not a positive number of MB" % (value,))


def _interface_name(value) -> None:
    from ukrun.kernel.ifname import validate_ifname  # its limits come through cffi: on a run only

    validate_ifname(value)


def _mac(value) -> None:
    if not isinstance(value, str):
        raise TypeError("%r is not a MAC address" % (value,))
    if value not in ("inherit", "random"):
        from ukrun.kernel.mac import parse_mac

        parse_mac(value)


def _device_name(value) -> None:
    # Solo5 reads --net:NAME=TAP: NAME cannot hold '=' or ':' and must not be empty.
    if (not isinstance(value, str) or not value or any(c in value for c in "=:,")
            or any(c.isspace() for c in value)):
        raise ValueError("%r is not a device name" % (value,))


def _strings(values) -> None:
    if not all(isinstance(v, str) for v in values):
        raise TypeError("arguments must be strings")


def _each(check):
    """``check`` for every value of an option that takes one per interface."""
    def check_each(values) -> None:
        for value in items(values):
            check(value)
    return check_each


# --- the table ----------------------------------------------------------------------------

_SOLO5 = ("hvt", "spt")
_QEMU = ("qemu", "kvm")
_TENDERS = _SOLO5 + ("ukvm",)  # the targets whose program is a tender: --tender
_HOSTED = _TENDERS + _QEMU  # the targets whose unikernel another program runs
_TAP_FD_OPTIONAL = tuple(name for name, t in TARGETS.items() if t.tap_fd == "optional")


def _qemu_or(target, qemu_text: str, other: str) -> str:
    return qemu_text if target.name in _QEMU else other


def _paired_help(text: str, first: str, more: str | None = None):
    """The help of an option that takes one value per interface: repeatable only for a target
    that takes several interfaces; ``more``: its default then."""
    def help_for(target) -> str:
        if target.max_interfaces == 1:
            return "%s (default: %s)" % (text, first)
        return "%s; repeatable: the Nth is the Nth interface's (default: %s)" % (
            text, more or first)
    return help_for


# In the order --help lists them: the options every target takes, then the others.
OPTIONS = [
    Option("--interface", action="append", default=None, metavar="NAME",
           check=_each(_interface_name),
           help=lambda t: "the container's interface to hand over%s (default: eth0; without "
           "eth0, the container's only interface besides lo)" % (
               "" if t.max_interfaces == 1 else "; repeatable (a Multus pod's eth0, net1...): "
               "each gets its own tap, wiring and network device of the guest, in this order")),
    Option("--tap", action="append", default=None, nth=lambda n: "tap%d" % n,
           metavar="NAME", check=_each(_interface_name),
           help=_paired_help("the tap device to create for the guest", "tap0, or the next "
                             "free tapN when a link holds that name",
                             "tapN for the Nth, or the next free one")),
    Option("--wiring", default="tc", choices=("tc", "bridge"),
           help="tc: ingress redirects both ways, no bridge; bridge: the old runner's "
                "topology, the interface and the tap on a bridge (default: %(default)s)"),
    Option("--bridge", action="append", default=("br0",), nth=lambda n: "br%d" % n,
           metavar="NAME", check=_each(_interface_name),
           help=_paired_help("the bridge for --wiring bridge", "br0",
                             "br0, br1, ... by position")),
    Option("--mac", action="append", default=("inherit",), nth=lambda n: "inherit",
           metavar="inherit|random|MAC", check=_each(_mac),
           hint="inherit, random or XX:XX:XX:XX:XX:XX",
           help=_paired_help("the guest's MAC: the interface's (inherit; with --wiring bridge "
                             "the interface takes a fresh one), a fresh random one, or this "
                             "one", "inherit")),
    Option("--ip-args", default="mirage", choices=IP_ARG_FORMATS,
           help="the guest's network words: mirage (--ipv4=ADDR/PREFIX --ipv4-gateway=GW, "
                "and --ipv6=... --ipv6-gateway=... with IPv6), mirage-dns (and "
                "--dns_servers=...), unikraft (netdev.ip=ADDR/PREFIX:GW:DNS), unikraft-lwip "
                "(netdev.ipv4_addr= ...), linux (ip=ADDR::GW:NETMASK::DEVICE:off:DNS), "
                "template (--ip-template) or none; MirageOS's words go after the unikernel's "
                "arguments, kernel parameters before them (default: %(default)s)"),
    Option("--ip-template", metavar="WORDS", check=_check_ip_template,
           help="with --ip-args template: the guest's network words, split on white space; "
                "{ipv4}, {ipv4_address}, {ipv4_prefix}, {ipv4_netmask}, {gateway4}, {ipv6}, "
                "{ipv6_address}, {ipv6_prefix}, {gateway6}, {mac}, {mtu}, {tap}, {interface}, "
                "{device}, {dns}, {dns0}, {search}... take the first interface's value, "
                "{N.name} interface N's; a word whose value is missing is left out, "
                "{name?} keeps it empty (default: none)"),
    # Checked by preflight.kept_capabilities, which needs to know what this process holds.
    Option("--keep-cap", action="append", dest="keep_caps", metavar="CAP",
           help="a capability the unikernel keeps (repeatable; default "
                "NET_BIND_SERVICE when ukrun holds it; 'none' keeps nothing)"),
    Option("--init", default="auto", choices=("auto", "always", "never"),
           help="always: the unikernel runs as a child of a small init that forwards "
                "signals to it, reaps zombies and exits with its status; never: the "
                "unikernel replaces ukrun; auto: always when ukrun is PID 1 (a "
                "container's main process) or lacks CAP_SETPCAP, else never "
                "(default: %(default)s)"),
    Option("--allow-physical", action="store_true", default=False,
           help="hand over the interface even when it is a physical NIC (it has a "
                "parent device), not a container's veth (default: off, refuse)"),
    Option("--dry-run", action="store_true", default=False, field=False,
           help="print the plan (argv, network, steps) as JSON and change nothing "
                "(default: off, a run)"),
    Option("-v", "--verbose", action="store_true", default=False,
           help="print each step on stderr as it happens; tracebacks on errors "
                "(default: off, errors only)"),
    Option("--tender", targets=_TENDERS, metavar="PATH",
           help=lambda t: "the tender to run (default: %s)" % t.default_tender),
    Option("--qemu", targets=_QEMU, metavar="PATH",
           help=lambda t: "the QEMU binary (default: %s on PATH)" % t.default_tender),
    # MirageOS 4 names its one default device "service"; a second one has whatever name the
    # unikernel's config.ml gives it (netif "NAME"), so any default past the first is a guess.
    Option("--net-name", targets=_SOLO5, action="append", default=("service",),
           nth=lambda n: "service%d" % n if n else "service", metavar="NAME",
           check=_each(_device_name),
           hint="see the unikernel's manifest: solo5-elftool query-manifest",
           help=_paired_help("the unikernel's network device name, as its manifest names it",
                             "service", "service, then service1, service2, ...")),
    Option("--mem", targets=_HOSTED, convert=integer, check=_positive_mb, metavar="MB",
           help=lambda t: "guest memory in MB (default: %s)"
                          % _qemu_or(t, str(QEMU_MEM), "the tender's")),
    Option("--cpu", targets=_QEMU, metavar="MODEL",
           help=lambda t: "QEMU CPU model (default: %s)" % QEMU_CPU[t.name]),
    Option("--tap-fd", targets=_TAP_FD_OPTIONAL, action="store_true", default=False,
           help="hand the tap over as an inherited fd (3; the Nth interface's: 3 + N) "
                "instead of by name (default: off, by name)"),
    Option("--tender-arg", targets=_HOSTED, action="append", dest="tender_args", default=(),
           check=_strings, metavar="ARG",
           help=lambda t: "an argument for the %s (repeatable; default: none)"
                          % _qemu_or(t, "QEMU command line", "tender")),
]


def run_options(target_name: str) -> list:
    """Every option ``ukrun TARGET`` takes, in the order --help lists them."""
    return [option for option in OPTIONS if option.takes(target_name)]


def field_options() -> list:
    """The options ``runner.Options`` has a field for, in the table's order."""
    return [option for option in OPTIONS if option.field]


def field_values(ns) -> dict:
    """The keywords of ``runner.Options`` in a parsed run command line (``fast_parse``'s or
    argparse's namespace): each option of the target that a run reads, repeatable ones as
    tuples (the default when never given)."""
    values = {}
    for option in run_options(ns.command):
        if option.field:
            value = getattr(ns, option.dest)
            if value is None:
                value = option.default
            values[option.dest] = tuple(value) if isinstance(value, list) else value
    return values


def per_interface(o, target) -> tuple:
    """One ``Namespace`` per interface of a run (``o``: a ``runner.Options``), in --interface
    order: ``position``, ``interface``, and each option that takes one value per interface
    (``Option.nth``), the Nth value given or else its default for position N.

    UsageError when an option is given more often than there are interfaces, when ``target``
    takes fewer interfaces, or when two interfaces, taps or bridges (with --wiring bridge),
    or two Solo5 device names, are the same name.
    """
    interfaces = items(o.interface) if o.interface is not None else ("eth0",)
    if not interfaces:
        raise UsageError("--interface: no interface given")
    if target.max_interfaces is not None and len(interfaces) > target.max_interfaces:
        raise UsageError("the %s target hands over one interface, not %d (--interface %s)"
                         % (target.name, len(interfaces), " --interface ".join(
                             map(str, interfaces))),
                         "hvt, spt, qemu and kvm take several; run one container per "
                         "interface otherwise")
    paired = [option for option in OPTIONS if option.nth is not None]
    given = {option.dest: () if getattr(o, option.dest) is None else items(getattr(
        o, option.dest)) for option in paired}
    given["tap"] = default_taps(interfaces, given["tap"])
    for option in paired:
        if len(given[option.dest]) > len(interfaces):
            raise UsageError("%s is given %d times for %d interface%s"
                             % (option.flag, len(given[option.dest]), len(interfaces),
                                "" if len(interfaces) == 1 else "s"),
                             "give it once per --interface, in the same order")
    each = tuple(Namespace(position=n, interface=interface, **{
        option.dest: given[option.dest][n] if n < len(given[option.dest]) else option.nth(n)
        for option in paired}) for n, interface in enumerate(interfaces))
    _check_distinct(each, o.wiring == "bridge", target.name in _SOLO5)
    return each


def default_taps(interfaces, given=(), taken=()) -> tuple:
    """The taps of ``interfaces``: those ``given`` (one per interface, in order), then for
    each interface N left the default tapN, or the next free tapK after it: never an
    interface's name, a tap already chosen or a name in ``taken`` (links that exist)."""
    used = set(interfaces) | set(given) | set(taken)
    taps = list(given)
    while len(taps) < len(interfaces):
        k = len(taps)
        while "tap%d" % k in used:
            k += 1
        taps.append("tap%d" % k)
        used.add(taps[-1])
    return tuple(taps)


def _check_distinct(each: tuple, bridges: bool, net_names: bool) -> None:
    names = [n for e in each for n in (e.interface, e.tap) + ((e.bridge,) if bridges else ())]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1}, key=str)
        raise UsageError("--interface, --tap%s must all be different%s"
                         % (", --bridge" if bridges else "",
                            "" if len(each) == 1 else " (%s more than once)"
                            % ", ".join(map(str, twice))))
    devices = [e.net_name for e in each]
    if net_names and len(set(devices)) != len(devices):
        raise UsageError("--net-name: two interfaces have the same device name",
                         "give each interface its own --net-name, as the unikernel's manifest "
                         "names them")


def all_flags(options) -> set:
    return {flag for option in options for flag in option.flags}


def value_flags(options) -> set:
    return {flag for option in options if option.takes_value for flag in option.flags}


class Namespace:
    """What a parse yields: one attribute per option, as argparse's Namespace has."""

    def __init__(self, **values):
        self.__dict__.update(values)

    def __repr__(self):
        return "Namespace(%s)" % ", ".join("%s=%r" % kv for kv in sorted(vars(self).items()))
