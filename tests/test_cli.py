"""The ukrun command line (issue 3): parsing, messages and exit statuses, and real runs of the
console script inside docker-like containers with a stand-in unikernel that reports what it got.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from nsutil import in_netns
from ukrun import cli
from ukrun.targets import TARGETS

# --- parsing (pure) -----------------------------------------------------------------------


@pytest.mark.parametrize("argv, unikernel, args", [
    (["unix", "./k"], "./k", []),
    (["unix", "./k", "--tap", "x", "-v", "--", "y", ""], "./k", ["--tap", "x", "-v", "--", "y", ""]),
    (["unix", "--tap", "t1", "./k", "--tap=t2"], "./k", ["--tap=t2"]),
    (["unix", "--", "-k", "-a"], "-k", ["-a"]),
    (["unix", "-v", "--", "./k", "--", "x"], "./k", ["--", "x"]),
])
def test_everything_after_the_unikernel_passes_untouched(argv, unikernel, args):
    ns = cli.parse(argv)
    assert (ns.command, ns.unikernel, ns.args) == (argv[0], unikernel, args)


def test_option_values_may_start_with_a_dash():
    ns = cli.parse(["kvm", "--tender-arg", "-initrd", "--tender-arg", "i.cpio", "--mem=64", "k"])
    assert ns.tender_args == ["-initrd", "i.cpio"] and ns.mem == 64 and ns.unikernel == "k"


def test_defaults_and_options_reach_the_runner():
    ns = cli.parse(["hvt", "--keep-cap", "net_raw", "--keep-cap", "KILL", "--tap-fd",
                    "--net-name", "service0", "--mac", "random", "--wiring", "bridge", "k.hvt"])
    options = cli._options(ns)
    assert options["keep_caps"] == ("net_raw", "KILL")
    assert options["tap_fd"] is True and options["net_name"] == "service0"
    assert options["mac"] == "random" and options["wiring"] == "bridge"
    defaults = cli._options(cli.parse(["unix", "k"]))
    assert defaults["keep_caps"] == ("NET_BIND_SERVICE",)
    assert (defaults["interface"], defaults["tap"], defaults["bridge"]) == ("eth0", "tap0", "br0")
    assert (defaults["wiring"], defaults["mac"], defaults["ip_args"]) == ("tc", "inherit", "mirage")


def test_each_target_has_its_options():
    parser = cli.get_parser()
    options = {name: cli._value_options(p) | {s for a in p._actions for s in a.option_strings}
               for name, p in parser.targets.items()}
    assert "--tender" not in options["unix"] and "--tap-fd" not in options["unix"]
    assert {"--tender", "--net-name", "--mem", "--tap-fd", "--tender-arg"} <= options["hvt"]
    assert {"--tender", "--net-name", "--mem", "--tap-fd", "--tender-arg"} <= options["spt"]
    assert {"--qemu", "--mem", "--cpu", "--tender-arg", "--tap-fd"} <= options["qemu"]
    assert "--tap-fd" not in options["ukvm"] and "--tender" in options["ukvm"]
    assert set(parser.targets) == set(TARGETS)


USAGE_ERRORS = {
    "no target": ([], "TARGET"),
    "unknown target": (["vmware", "k"], "invalid choice"),
    "no unikernel": (["unix"], "UNIKERNEL"),
    "no unikernel after options": (["hvt", "--mem", "5"], "UNIKERNEL"),
    "unknown option": (["unix", "--frob", "k"], "--frob"),
    "option without value": (["hvt", "--mem"], "--mem"),
    "bad wiring": (["unix", "--wiring", "vxlan", "k"], "--wiring"),
    "bad ip-args": (["unix", "--ip-args", "dhcp", "k"], "--ip-args"),
    "mem not a number": (["qemu", "--mem", "lots", "k"], "--mem"),
    "mem zero": (["qemu", "--mem", "0", "k"], "--mem"),
    "mem negative": (["hvt", "--mem=-5", "k"], "--mem"),
    "tap-fd on unix": (["unix", "--tap-fd", "k"], "--tap-fd"),
    "tender on qemu": (["qemu", "--tender", "x", "k"], "--tender"),
    "cpu on hvt": (["hvt", "--cpu", "max", "k"], "--cpu"),
    "bad mac": (["hvt", "--mac", "02:42:ac:1e:00", "k"], "--mac"),
    "multicast mac": (["hvt", "--mac", "01:00:5e:00:00:01", "k"], "--mac"),
    "bad keep-cap": (["unix", "--keep-cap", "cap_fly", "k"], "--keep-cap"),
    "tap name too long": (["unix", "--tap", "x" * 16, "k"], "--tap"),
    "tap name with slash": (["unix", "--tap", "a/b", "k"], "--tap"),
    "tap name with percent": (["unix", "--tap", "tap%d", "k"], "--tap"),
    "empty interface": (["unix", "--interface", "", "k"], "--interface"),
    "bridge name with space": (["unix", "--wiring", "bridge", "--bridge", "b r", "k"], "--bridge"),
    "tap is the interface": (["unix", "--tap", "eth0", "k"], "different"),
    "bridge is the tap": (["unix", "--wiring", "bridge", "--bridge", "tap0", "k"], "different"),
    "bad net name": (["hvt", "--net-name", "a=b", "k"], "--net-name"),
}


@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_usage_errors_exit_2_with_one_line(case, netns, capsys):
    argv, needle = USAGE_ERRORS[case]
    # --dry-run and a scratch namespace: even a check that wrongly passed changes nothing real.
    argv = argv[:1] + ["--dry-run"] + argv[1:] if argv and argv[0] in TARGETS else argv
    with in_netns(netns.name):
        status = cli.main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("ukrun: error: ") and err.count("\n") == 1, err
    assert needle in err


def test_help_and_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("ukrun ")
    assert cli.main(["--help"]) == 0
    assert "inspect" in capsys.readouterr().out
    assert cli.main(["hvt", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--tender" in out and "UNIKERNEL" in out


def test_the_cli_path_stays_cheap():
    code = ("import sys, ukrun.cli; heavy = [m for m in ('ukrun.runner', 'ukrun._core', "
            "'cffi', 'ukrun.rtnl', 'logging') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
