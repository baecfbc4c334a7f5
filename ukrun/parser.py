"""The argparse parser of the whole command line, built from ukrun.options' table.

It serves --help, the man page (argparse-manpage reads ``get_parser()``), the commands besides
a run (inspect, dockerfile, docker-args) and every command line ``run_line.fast_parse`` leaves
to it, which it parses the same way and words the error for. ``dockerfile`` and
``docker-args`` are declared here too, from ukrun.guest.targets' table; ukrun.docker returns what
they print, and ukrun.cli prints it.
"""
from __future__ import annotations

import argparse

from ukrun import docker  # pure: no cffi, no netlink
from ukrun._version import __version__
from ukrun.errors import UsageError
from ukrun.options import (DESCRIPTION, TARGET_HELP, Option, all_flags, run_options,
                           value_flags)
from ukrun.run_line import split_at_unikernel
from ukrun.guest.targets import TARGETS


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


def _add_options(p: argparse.ArgumentParser, options, target=None) -> None:
    """Declare ``options`` (a help text that depends on the target is worded for ``target``)."""
    for option in options:
        kwargs = dict(action=option.action, dest=option.dest, help=option.help_for(target))
        if option.metavar is not None:
            kwargs["metavar"] = option.metavar
        if option.default is not None:
            kwargs["default"] = option.cli_default
        if option.choices is not None:
            kwargs["choices"] = option.choices
        if option.convert is not None:
            kwargs["type"] = _argparse_type(option.convert)
        p.add_argument(*option.flags, **kwargs)


def _add_run_arguments(p: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    _add_options(p, run_options(name), TARGETS[name])
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
    # No argparse default: it would be added to, not replaced (runner.inspect: None is eth0).
    p.add_argument("--interface", action="append", metavar="NAME",
                   help="the interface to inspect; repeatable: the first one's configuration "
                        "is the answer's own, networks lists each one's (default: eth0)")
    _add_docker_commands(commands)
    _add_handover_commands(commands)
    return parser


# ---- ukrun cni and ukrun hook (ukrun.cni, ukrun.oci_hook) ----

def _uid(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2 ** 32 - 1:
        raise ValueError("%d is no uid/gid" % value)
    return value


def _add_handover_commands(commands) -> None:
    commands.add_parser(
        "cni", allow_abbrev=False,
        help="the handover as a chained CNI plugin (also installed as ukrun-cni)",
        description="A chained CNI plugin (spec 1.0.0): CNI_COMMAND ADD hands CNI_IFNAME in "
        "CNI_NETNS over to a persistent tap, with the network configuration (and its "
        "prevResult) on stdin, and prints prevResult unchanged; DEL gives it back from the "
        "tap's record; CHECK verifies; VERSION answers. The configuration's own keys: tap "
        "(default tap0), wiring (tc or bridge), owner and group (the uid and gid that alone "
        "may attach to the tap without CAP_NET_ADMIN).")
    p = commands.add_parser(
        "hook", allow_abbrev=False,
        help="the handover as an OCI hook (runc createRuntime, podman/CRI-O hooks.d)",
        description="Read the container's OCI state on stdin, enter /proc/PID/ns/net and hand "
        "the interface over to a persistent tap owned by the container's user (its bundle's "
        "process.user), so that `ukrun TARGET` in the container needs no capability.")
    p.add_argument("--interface", default="eth0", metavar="NAME",
                   help="the interface to hand over (default: eth0)")
    p.add_argument("--tap", default="tap0", metavar="NAME", help="the tap (default: tap0)")
    p.add_argument("--wiring", default="tc", choices=("tc", "bridge"),
                   help="how the tap is wired to the interface (default: tc)")
    p.add_argument("--owner", type=_argparse_type(_uid), metavar="UID",
                   help="the uid that alone may attach to the tap (default: the container's)")
    p.add_argument("--group", type=_argparse_type(_uid), metavar="GID",
                   help="the gid whose members alone may attach (default: the container's)")
    p.add_argument("--give-back", action="store_true",
                   help="undo the handover from the tap's record (a poststop hook)")


# ---- ukrun dockerfile and ukrun docker-args (ukrun.docker does the work) ----

def _copied_tenders() -> list:
    """The targets whose tender ``ukrun dockerfile`` copies into the image."""
    return [t for t in TARGETS.values() if docker.tender_in_image(t)]


def _dockerfile_options() -> list:
    """The options of ``ukrun dockerfile``: declared to argparse, and refused after UNIKERNEL."""
    copied = _copied_tenders()
    return [
        Option("--tender", metavar="PATH",
               help="the tender to copy into the image (%s; default: %s in the build context)"
               % (", ".join(t.name for t in copied),
                  docker.listed((t.tender_file for t in copied), "or"))),
        Option("--from", dest="base", metavar="IMAGE",
               help="build on IMAGE, which already has ukrun installed (one stage, no "
               "static-tender check) (default: a two-stage Alpine build)"),
        Option("--context", metavar="DIR", default=".",
               help="the directory docker build will be given; every file must be inside "
               "it (default: the current directory)"),
        Option("--sdist", metavar="PATH",
               help="ukrun's source distribution in the build context (default: "
               "ukrun-%s.tar.gz)" % __version__),
        Option("--run-option", metavar="OPTION", action="append", default=[],
               help="an option for ukrun TARGET in the entrypoint, e.g. "
               "--run-option=--mem=64 (repeatable; default: none)"),
    ]


def _dockerfile_description() -> str:
    copied = _copied_tenders()
    return (
        "Print a Dockerfile whose entrypoint is `ukrun TARGET /unikernel/NAME` in exec form. "
        "By default it is a two-stage Alpine build: the build context (--context) must hold "
        "UNIKERNEL, the tender (%s; statically linked, which is checked) and "
        "ukrun's source distribution ukrun-%s.tar.gz. In the image the unikernel is "
        "/unikernel/NAME and the tender %s. As with `ukrun TARGET`, every word after UNIKERNEL "
        "is the unikernel's: they become the image's CMD, which `docker run IMAGE ARG...` "
        "replaces. The image gives the installed ukrun's first line back the -S that pip "
        "drops, so ukrun starts without site; on a --from base that needs sh, sed, head, grep "
        "and readlink, and a script the step cannot change is left as it is, with a note." % (", ".join(t.name for t in copied), __version__,
                       docker.listed((docker.tender_in_image(t) for t in copied), "or")))


def _docker_args_description() -> str:
    return (
        "Print, one per line, the docker run flags a TARGET container needs on this host: "
        "--cap-add=NET_ADMIN, --device for /dev/net/tun and, for %s, "
        "/dev/kvm. Each device is opened read-write first; an unusable one is an error "
        "(exit status 77). Use as: docker run $(ukrun docker-args hvt) IMAGE. Since ukrun "
        "gives the unikernel the container's MAC, the Docker bridge needs no arp_accept."
        % docker.listed((t.name for t in TARGETS.values() if t.needs_kvm), "and"))


def _add_docker_commands(commands) -> None:
    p = commands.add_parser("dockerfile", allow_abbrev=False,
                            help="print a Dockerfile that runs a unikernel under ukrun",
                            description=_dockerfile_description())
    p.add_argument("target", metavar="TARGET", choices=list(TARGETS),
                   help="the target to run: %s" % ", ".join(TARGETS))
    _add_options(p, _dockerfile_options())
    p.add_argument("unikernel", metavar="UNIKERNEL",
                   help="the unikernel, inside the build context; options go before it")
    p.add_argument("args", metavar="ARG", nargs=argparse.REMAINDER,
                   help="the unikernel's default arguments (`--` may come first; default: none)")

    p = commands.add_parser("docker-args", allow_abbrev=False,
                            help="print the docker run flags a unikernel container needs here",
                            description=_docker_args_description())
    p.add_argument("target", metavar="TARGET", choices=list(TARGETS),
                   help="the target the container runs: %s" % ", ".join(TARGETS))


def _dockerfile_args(words: list) -> list:
    """The words after UNIKERNEL, which become the image's CMD, without a leading ``--``."""
    words = list(words)
    if words[:1] == ["--"]:  # argparse keeps or drops it depending on what came before
        del words[0]
    own = {flag for option in _dockerfile_options() for flag in option.flags}
    for word in words:
        # Everything after UNIKERNEL is the unikernel's, as in `ukrun TARGET`; an option of
        # ours there is a misplaced option, not an argument anyone meant to bake into CMD.
        if word.split("=", 1)[0] in own:
            raise UsageError(
                "%s comes after UNIKERNEL, where it would be an argument of the unikernel"
                % word, "put ukrun dockerfile's options before UNIKERNEL; a unikernel that "
                "really takes it can get it from docker run IMAGE ARG...")
    return words


def target_parser(name: str) -> argparse.ArgumentParser:
    """TARGET's parser alone, as get_parser() builds it: a run needs no other (saves ~5 ms)."""
    return _add_run_arguments(Parser(prog="ukrun %s" % name, description=TARGET_HELP[name],
                                     allow_abbrev=False), name)


def parse(argv: list) -> argparse.Namespace:
    """Any command line, through argparse (UsageError when it is not one)."""
    if not argv or argv[0] not in TARGETS:
        ns = get_parser().parse_args(argv)  # --version, --help, another command, or an error
        if ns.command == "dockerfile":
            ns.args = _dockerfile_args(ns.args)
        return ns
    sub = target_parser(argv[0])
    options = run_options(argv[0])
    head, rest = split_at_unikernel(value_flags(options), argv[1:], all_flags(options))
    # "--" makes argparse take UNIKERNEL as it is, even when it starts with '-'.
    ns = sub.parse_args(head + ["--", rest[0] if rest else ""])
    if not rest:
        sub.error("the following arguments are required: UNIKERNEL")
    if ns.unikernel != rest[0]:  # argparse takes an unknown "-x y" (with a space) as positional
        sub.error("unrecognized arguments: %s" % ns.unikernel)
    ns.command, ns.args = argv[0], rest[1:]
    return ns
