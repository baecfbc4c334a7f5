"""The run options of ``ukrun TARGET``, as data: one table that ukrun.parser turns into the
argparse parser (help, the man page, every error message) and that ``fast_parse`` reads alone.

A run is on every unikernel container's start path, and argparse is slow to load there: with
the ``re`` and ``enum`` it brings, ~10 ms on this kind of machine, more than ukrun's own work.
So a well-formed run command line is parsed here, without argparse; anything else (--help, an
unknown or misspelt option, a bad value) goes to argparse, which parses it the same way and
words the error. tests/test_cli.py checks that both agree wherever ``fast_parse`` answers.
"""
from __future__ import annotations

from ukrun.targets import TARGETS

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


def positive_int(text: str) -> int:
    """``text`` as a whole number above 0; ValueError with the reason when it is not."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError("%r is not a number" % text) from None
    if value <= 0:
        raise ValueError("%r is not positive" % text)
    return value


class Option:
    """One option: how argparse declares it (``flags``, ``kwargs``) and how a run reads it."""

    __slots__ = ("flags", "dest", "action", "default", "choices", "convert", "kwargs")

    def __init__(self, *flags, action="store", default=None, choices=None, convert=None,
                 **kwargs):
        self.flags = flags
        self.dest = kwargs.get("dest") or flags[-1].lstrip("-").replace("-", "_")
        self.action, self.default, self.choices, self.convert = action, default, choices, convert
        self.kwargs = kwargs  # metavar, help, dest: for argparse

    @property
    def takes_value(self) -> bool:
        return self.action != "store_true"


def _common_options() -> list:
    return [
        Option("--interface", default="eth0", metavar="NAME",
               help="the container's interface to hand over (default: %(default)s)"),
        Option("--tap", default="tap0", metavar="NAME",
               help="the tap device to create for the guest (default: %(default)s)"),
        Option("--wiring", default="tc", choices=("tc", "bridge"),
               help="tc: ingress redirects both ways, no bridge; bridge: the old runner's "
                    "topology, the interface and the tap on a bridge (default: %(default)s)"),
        Option("--bridge", default="br0", metavar="NAME",
               help="the bridge for --wiring bridge (default: %(default)s)"),
        Option("--mac", default="inherit", metavar="inherit|random|MAC",
               help="the guest's MAC: the interface's (inherit; with --wiring bridge the "
                    "interface takes a fresh one), a fresh random one, or this one "
                    "(default: %(default)s)"),
        Option("--ip-args", default="mirage", choices=("mirage", "none"),
               help="mirage: append --ipv4=ADDR/PREFIX --ipv4-gateway=GW to the "
                    "unikernel's arguments; none: append nothing (default: %(default)s)"),
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
        Option("--dry-run", action="store_true", default=False,
               help="print the plan (argv, network, steps) as JSON and change nothing "
                    "(default: off, a run)"),
        Option("-v", "--verbose", action="store_true", default=False,
               help="print each step on stderr as it happens; tracebacks on errors "
                    "(default: off, errors only)"),
    ]


def _target_specific_options(target) -> list:
    qemu = target.name in ("qemu", "kvm")
    wanted = target.options
    options = []
    if "tender" in wanted:
        options.append(Option("--tender", metavar="PATH",
                              help="the tender to run (default: %s)" % target.default_tender))
    if "qemu" in wanted:
        options.append(Option("--qemu", metavar="PATH", help="the QEMU binary (default: %s on "
                              "PATH)" % target.default_tender))
    if "net_name" in wanted:
        options.append(Option("--net-name", default="service", metavar="NAME",
                              help="the unikernel's network device name (default: "
                                   "%(default)s)"))
    if "mem" in wanted:
        options.append(Option("--mem", convert=positive_int, metavar="MB",
                              help="guest memory in MB (default: %s)"
                                   % ("512" if qemu else "the tender's")))
    if "cpu" in wanted:
        options.append(Option("--cpu", metavar="MODEL", help="QEMU CPU model (default: %s)"
                              % ("host" if target.name == "kvm" else "Westmere")))
    if "tap_fd" in wanted:
        options.append(Option("--tap-fd", action="store_true", default=False,
                              help="hand the tap over as an inherited fd (3) instead of by "
                                   "name (default: off, by name)"))
    if "tender_args" in wanted:
        options.append(Option("--tender-arg", action="append", dest="tender_args", default=[],
                              metavar="ARG", help="an argument for the %s (repeatable; "
                              "default: none)" % ("QEMU command line" if qemu else "tender")))
    return options


def run_options(target_name: str) -> list:
    """Every option ``ukrun TARGET`` takes, in the order --help lists them."""
    return _common_options() + _target_specific_options(TARGETS[target_name])


def value_flags(options) -> set:
    return {flag for option in options if option.takes_value for flag in option.flags}


def split_at_unikernel(takes_value: set, words: list):
    """(ukrun's words, [UNIKERNEL, ARG...]); options with a value become --opt=value.

    ``takes_value``: the flags that take a value. --opt=value also lets a value start with
    '-' (--tender-arg -initrd).
    """
    head, i = [], 0
    while i < len(words):
        word = words[i]
        if word == "--":
            return head, words[i + 1:]
        if not word.startswith("-") or word == "-":
            return head, words[i:]
        if word in takes_value and i + 1 < len(words):
            head.append("%s=%s" % (word, words[i + 1]))
            i += 2
        else:
            head.append(word)
            i += 1
    return head, []


class Namespace:
    """What a parse yields: one attribute per option, as argparse's Namespace has."""

    def __init__(self, **values):
        self.__dict__.update(values)

    def __repr__(self):
        return "Namespace(%s)" % ", ".join("%s=%r" % kv for kv in sorted(vars(self).items()))


def fast_parse(argv: list):
    """The namespace for ``TARGET [OPTION]... UNIKERNEL [ARG]...``, or None when argv is
    anything else (no target, --help, an option or value argparse would refuse): for those,
    argparse parses and words the error."""
    if not argv or argv[0] not in TARGETS:
        return None
    options = run_options(argv[0])
    head, rest = split_at_unikernel(value_flags(options), argv[1:])
    if not rest:
        return None
    by_flag = {flag: option for option in options for flag in option.flags}
    values = {option.dest: option.default for option in options}
    for word in head:
        flag, equals, text = word.partition("=")
        option = by_flag.get(flag)
        if option is None or option.takes_value != bool(equals):
            return None
        if not option.takes_value:
            values[option.dest] = True
            continue
        if option.choices is not None and text not in option.choices:
            return None
        if option.convert is not None:
            try:
                text = option.convert(text)
            except ValueError:
                return None
        if option.action == "append":
            values[option.dest] = (values[option.dest] or []) + [text]
        else:
            values[option.dest] = text
    return Namespace(command=argv[0], unikernel=rest[0], args=rest[1:], **values)
