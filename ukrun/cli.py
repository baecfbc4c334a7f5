"""The ``ukrun`` command: parse, then call the library (ukrun.runner) to do the work.

    ukrun TARGET [OPTIONS] UNIKERNEL [ARG...]     TARGET: unix | hvt | ukvm | spt | qemu | kvm
    ukrun inspect [--interface NAME]
    ukrun dockerfile | docker-args ...            (ukrun.docker)
    ukrun cni | hook [OPTIONS]                    (ukrun.cni, ukrun.oci_hook)

Everything after UNIKERNEL goes to the unikernel untouched, even words that start with '-'
(ukrun.run_line.split_at_unikernel finds UNIKERNEL). A run's command line is parsed by
ukrun.run_line without argparse; help, the other commands and every error go through the
argparse parser in ukrun.parser. Both read ukrun.options' table, and ``field_values`` hands
what they parsed to ``planning.Options`` whatever options the table holds. Only the option
table and the pure targets are imported here; the runner (cffi, netlink) loads once a run
starts.
"""
from __future__ import annotations

import sys

from ukrun.errors import UkrunError, UsageError
from ukrun.run_line import fast_parse
from ukrun.options import field_values
from ukrun.guest.targets import TARGETS


def get_parser():
    """The whole command line as one argparse parser (argparse-manpage reads it)."""
    from ukrun.parser import get_parser

    return get_parser()


def parse(argv: list):
    """The namespace for ``argv``: a run's without argparse, anything else through it."""
    ns = fast_parse(argv)
    if ns is None:
        from ukrun import parser

        ns = parser.parse(argv)  # --help, --version, other commands, or a UsageError
    return ns


def _print_json(value) -> None:
    import json

    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _docker_command(ns) -> int:
    if ns.command == "dockerfile":
        from ukrun import docker_build

        sys.stdout.write(docker_build.dockerfile(ns.target, ns.unikernel, tender=ns.tender,
                                                 base=ns.base, args=ns.args, context=ns.context,
                                                 sdist=ns.sdist, run_options=ns.run_option))
        return 0
    from ukrun import docker

    for flag in docker.docker_args(ns.target):
        print(flag)
    print(docker.ARP_NOTE, file=sys.stderr)
    return 0


def execute(ns) -> int:
    if ns.command in ("dockerfile", "docker-args"):
        return _docker_command(ns)
    if ns.command == "cni":
        from ukrun import cni

        return cni.main()
    if ns.command == "hook":
        from ukrun import oci_hook

        return oci_hook.main(ns)
    if ns.command == "inspect":
        from ukrun import report

        _print_json(report.inspect(ns.interface))
        return 0
    from ukrun import runner

    if ns.verbose:
        runner.log_to_stderr()
    if ns.dry_run:
        from ukrun import planning

        options = planning.Options(ns.command, ns.unikernel, tuple(ns.args), **field_values(ns))
        _print_json(planning.plan_for_run(options).to_json())  # the same text, no ipaddress
        return 0
    runner.run(ns.command, ns.unikernel, tuple(ns.args), **field_values(ns))
    return 1  # run() returns only by raising


def _fail(message: str, verbose: bool) -> None:
    if sys.stderr is None:  # started with stderr closed: the exit status says it all
        return
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
