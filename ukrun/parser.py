"""The argparse parser of the whole command line, built from ukrun.options' table.

It serves --help, the man page (argparse-manpage reads ``get_parser()``), the commands besides
a run (inspect, dockerfile, docker-args) and every command line ``options.fast_parse`` leaves
to it, which it parses the same way and words the error for.
"""
from __future__ import annotations

import argparse

from ukrun._version import __version__
from ukrun.errors import UsageError
from ukrun.options import DESCRIPTION, TARGET_HELP, run_options, split_at_unikernel, value_flags
from ukrun.targets import TARGETS


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one-line UsageErrors, printed by main()."""

    def error(self, message):
        raise UsageError(message, "see '%s --help'" % self.prog)


def _argparse_type(convert):
    def checked(text):
        try:
            return convert(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return checked


def _add_run_arguments(p: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for option in run_options(name):
        kwargs = dict(option.kwargs, action=option.action)
        if option.default is not None:
            kwargs["default"] = option.default
        if option.choices is not None:
            kwargs["choices"] = option.choices
        if option.convert is not None:
            kwargs["type"] = _argparse_type(option.convert)
        p.add_argument(*option.flags, **kwargs)
    p.add_argument("unikernel", metavar="UNIKERNEL", help="the unikernel to run")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARG",
                   help="arguments for the unikernel, passed untouched")
    return p


def get_parser() -> argparse.ArgumentParser:
    """The whole command line as one parser (argparse-manpage reads it)."""
    parser = Parser(prog="ukrun", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version="ukrun %s" % __version__)
    commands = parser.add_subparsers(dest="command", metavar="TARGET",
                                     parser_class=Parser)
    parser.targets = {}  # name -> its subparser
    for name in TARGETS:
        p = commands.add_parser(name, help=TARGET_HELP[name], description=TARGET_HELP[name],
                                allow_abbrev=False)
        parser.targets[name] = _add_run_arguments(p, name)
    p = commands.add_parser("inspect", help="print the discovered network configuration as JSON",
                            description="Print what a run would hand over, as JSON.",
                            allow_abbrev=False)
    p.add_argument("--interface", default="eth0", metavar="NAME",
                   help="the interface to inspect (default: %(default)s)")
    from ukrun import docker  # pure: no cffi, no netlink

    docker.add_subcommands(commands)  # dockerfile, docker-args: each sets func(namespace)
    return parser


def target_parser(name: str) -> argparse.ArgumentParser:
    """TARGET's parser alone, as get_parser() builds it: a run needs no other (saves ~5 ms)."""
    return _add_run_arguments(Parser(prog="ukrun %s" % name, description=TARGET_HELP[name],
                                     allow_abbrev=False), name)


def parse(argv: list) -> argparse.Namespace:
    """Any command line, through argparse (UsageError when it is not one)."""
    if not argv or argv[0] not in TARGETS:
        return get_parser().parse_args(argv)  # --version, --help, inspect, or an error
    sub = target_parser(argv[0])
    head, rest = split_at_unikernel(value_flags(run_options(argv[0])), argv[1:])
    # "--" makes argparse take UNIKERNEL as it is, even when it starts with '-'.
    ns = sub.parse_args(head + ["--", rest[0] if rest else ""])
    if not rest:
        sub.error("the following arguments are required: UNIKERNEL")
    if ns.unikernel != rest[0]:  # argparse takes an unknown "-x y" (with a space) as positional
        sub.error("unrecognized arguments: %s" % ns.unikernel)
    ns.command, ns.args = argv[0], rest[1:]
    return ns
