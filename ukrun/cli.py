"""The ``ukrun`` command: parse, then call the library (ukrun.runner) to do the work.

    ukrun TARGET [OPTIONS] UNIKERNEL [ARG...]     TARGET: unix | hvt | ukvm | spt | qemu | kvm
    ukrun inspect [--interface NAME]
    ukrun dockerfile | docker-args ...            (ukrun.docker)

Everything after UNIKERNEL goes to the unikernel untouched, even words that start with '-'.
argparse cannot promise that on every Python version, so ``split_at_unikernel`` finds
UNIKERNEL itself and argparse only ever sees the words before it. Only argparse and the
pure targets table are imported here; the runner (cffi, netlink) loads once a run starts.
"""
from __future__ import annotations

import argparse
import os
import sys

from ukrun._version import __version__
from ukrun.errors import UkrunError, UsageError
from ukrun.targets import TARGETS

DESCRIPTION = ("Run a unikernel as a container's main process: hand it the container's network "
               "(eth0's address, gateway and MAC) through a tap device, drop capabilities and "
               "exec it.")


def _terminal_columns() -> int:
    """What shutil.get_terminal_size() says (COLUMNS, else the terminal, else 80)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
        if columns <= 0:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns or 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's, but given its width: left to find it, argparse imports shutil (and with it
    zlib, bz2 and lzma) for every add_argument, ~2.5 ms of each run's start."""

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        super().__init__(prog, indent_increment, max_help_position,
                         _terminal_columns() - 2 if width is None else width)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one-line UsageErrors, printed by main()."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(message, "see '%s --help'" % self.prog)


def _add_common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--interface", default="eth0", metavar="NAME",
                   help="the container's interface to hand over (default: %(default)s)")
    p.add_argument("--tap", default="tap0", metavar="NAME",
                   help="the tap device to create for the guest (default: %(default)s)")
    p.add_argument("--wiring", default="tc", choices=("tc", "bridge"),
                   help="tc: ingress redirects both ways, no bridge; bridge: the old runner's "
                        "topology, the interface and the tap on a bridge (default: %(default)s)")
    p.add_argument("--bridge", default="br0", metavar="NAME",
                   help="the bridge for --wiring bridge (default: %(default)s)")
    p.add_argument("--mac", default="inherit", metavar="inherit|random|MAC",
                   help="the guest's MAC: the interface's (inherit; with --wiring bridge the "
                        "interface takes a fresh one), a fresh random one, or this one "
                        "(default: %(default)s)")
    p.add_argument("--ip-args", default="mirage", choices=("mirage", "none"),
                   help="mirage: append --ipv4=ADDR/PREFIX --ipv4-gateway=GW to the "
                        "unikernel's arguments; none: append nothing (default: %(default)s)")
    p.add_argument("--keep-cap", action="append", dest="keep_caps", metavar="CAP",
                   help="a capability the unikernel keeps (repeatable; default "
                        "NET_BIND_SERVICE when ukrun holds it; 'none' keeps nothing)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (argv, network, steps) as JSON and change nothing "
                        "(default: off, a run)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print each step on stderr as it happens; tracebacks on errors "
                        "(default: off, errors only)")


def _add_target_options(p: argparse.ArgumentParser, target) -> None:
    qemu = target.name in ("qemu", "kvm")
    if "tender" in target.options:
        p.add_argument("--tender", metavar="PATH",
                       help="the tender to run (default: %s)" % target.default_tender)
    if "qemu" in target.options:
        p.add_argument("--qemu", metavar="PATH",
                       help="the QEMU binary (default: %s on PATH)" % target.default_tender)
    if "net_name" in target.options:
        p.add_argument("--net-name", default="service", metavar="NAME",
                       help="the unikernel's network device name (default: %(default)s)")
    if "mem" in target.options:
        p.add_argument("--mem", type=_positive_int, metavar="MB",
                       help="guest memory in MB (default: %s)" % ("512" if qemu else
                                                                  "the tender's"))
    if "cpu" in target.options:
        p.add_argument("--cpu", metavar="MODEL", help="QEMU CPU model (default: %s)"
                       % ("host" if target.name == "kvm" else "Westmere"))
    if "tap_fd" in target.options:
        p.add_argument("--tap-fd", action="store_true",
                       help="hand the tap over as an inherited fd (3) instead of by name "
                            "(default: off, by name)")
    if "tender_args" in target.options:
        p.add_argument("--tender-arg", action="append", dest="tender_args", default=[],
                       metavar="ARG", help="an argument for the %s (repeatable; default: none)"
                       % ("QEMU command line" if qemu else "tender"))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("%r is not positive" % text)
    return value


_TARGET_HELP = {
    "unix": "MirageOS unix target: run UNIKERNEL itself on the tap",
    "hvt": "Solo5 hvt (KVM): solo5-hvt --net:NAME=TAP -- UNIKERNEL",
    "spt": "Solo5 spt (seccomp): solo5-spt --net:NAME=TAP -- UNIKERNEL",
    "ukvm": "the old Solo5 ukvm tender: /unikernel/ukvm --net=@FD -- UNIKERNEL",
    "qemu": "QEMU with software emulation: -kernel UNIKERNEL -append ARGS",
    "kvm": "QEMU/KVM: -enable-kvm -kernel UNIKERNEL -append ARGS",
}


def get_parser() -> argparse.ArgumentParser:
    """The whole command line as one parser (argparse-manpage reads it)."""
    parser = Parser(prog="ukrun", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version="ukrun %s" % __version__)
    commands = parser.add_subparsers(dest="command", metavar="TARGET",
                                     parser_class=Parser)
    parser.targets = {}  # name -> its subparser, for parse()
    for name in TARGETS:
        p = commands.add_parser(name, help=_TARGET_HELP[name], description=_TARGET_HELP[name],
                                allow_abbrev=False)
        parser.targets[name] = _add_target_arguments(p, name)
    p = commands.add_parser("inspect", help="print the discovered network configuration as JSON",
                            description="Print what a run would hand over, as JSON.",
                            allow_abbrev=False)
    p.add_argument("--interface", default="eth0", metavar="NAME",
                   help="the interface to inspect (default: %(default)s)")
    from ukrun import docker  # pure: no cffi, no netlink

    docker.add_subcommands(commands)  # dockerfile, docker-args: each sets func(namespace)
    return parser


def _add_target_arguments(p: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    _add_common_options(p)
    _add_target_options(p, TARGETS[name])
    p.add_argument("unikernel", metavar="UNIKERNEL", help="the unikernel to run")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARG",
                   help="arguments for the unikernel, passed untouched")
    return p


def _target_parser(name: str) -> argparse.ArgumentParser:
    """TARGET's parser alone, as get_parser() builds it: a run needs no other (saves ~5 ms)."""
    return _add_target_arguments(Parser(prog="ukrun %s" % name, description=_TARGET_HELP[name],
                                        allow_abbrev=False), name)


def _value_options(parser: argparse.ArgumentParser) -> set:
    return {s for a in parser._actions if a.option_strings and a.nargs != 0
            for s in a.option_strings}


def split_at_unikernel(parser: argparse.ArgumentParser, words: list):
    """(ukrun's words, [UNIKERNEL, ARG...]); options with a value become --opt=value.

    --opt=value also lets a value start with '-' (--tender-arg -initrd).
    """
    takes_value = _value_options(parser)
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


def parse(argv: list) -> argparse.Namespace:
    if not argv or argv[0] not in TARGETS:
        return get_parser().parse_args(argv)  # --version, --help, inspect, or an error
    sub = _target_parser(argv[0])
    head, rest = split_at_unikernel(sub, argv[1:])
    # "--" makes argparse take UNIKERNEL as it is, even when it starts with '-'.
    ns = sub.parse_args(head + ["--", rest[0] if rest else ""])
    if not rest:
        sub.error("the following arguments are required: UNIKERNEL")
    ns.command, ns.args = argv[0], rest[1:]
    return ns


def _options(ns: argparse.Namespace) -> dict:
    fields = ("interface", "tap", "wiring", "bridge", "mac", "ip_args", "tender", "net_name",
              "mem", "tap_fd", "tender_args", "qemu", "cpu", "verbose")
    options = {f: getattr(ns, f) for f in fields if hasattr(ns, f)}
    options["keep_caps"] = tuple(ns.keep_caps) if ns.keep_caps else None
    options["tender_args"] = tuple(options.get("tender_args", ()))
    return options


def _print_json(value) -> None:
    import json

    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


def execute(ns: argparse.Namespace) -> int:
    if hasattr(ns, "func"):
        return ns.func(ns)
    from ukrun import runner

    if ns.command == "inspect":
        _print_json(runner.inspect(ns.interface))
        return 0
    if ns.verbose:
        runner.log_to_stderr()
    if ns.dry_run:
        options = runner.Options(ns.command, ns.unikernel, tuple(ns.args), **_options(ns))
        _print_json(runner.plan(options).to_json())
        return 0
    runner.run(ns.command, ns.unikernel, tuple(ns.args), **_options(ns))
    return 1  # run() returns only by raising


def _fail(message: str, verbose: bool) -> None:
    if verbose:
        import traceback

        traceback.print_exc()
    sys.stderr.write("ukrun: error: %s\n" % message)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = False
    try:
        ns = parse(argv)
        if ns.command is None:
            raise UsageError("a TARGET (%s) or another command is required"
                             % " | ".join(TARGETS),
                             "see 'ukrun --help'")
        verbose = getattr(ns, "verbose", False)
        return execute(ns)
    except UkrunError as e:
        _fail(str(e), verbose)
        return e.exit_status
    except SystemExit as e:  # --help and --version
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt:
        return 130
    except OSError as e:  # a kernel call the runner did not expect to fail
        _fail("%s: %s" % (e.filename, e.strerror) if e.filename else str(e), verbose)
        return 1
    except Exception as e:  # a bug: still one line, the traceback with -v
        _fail("internal error: %s: %s" % (type(e).__name__, e), verbose)
        return 1
