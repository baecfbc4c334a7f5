"""The ukrun command line: parsing, messages and exit statuses, and real runs of the
console script inside docker-like containers with a stand-in unikernel that reports what it got.
"""
import json
import re
import os
import subprocess
import sys

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from clirun import report, ukrun
from nsutil import in_netns, kvm_usable
from snapshots import redirects, snapshot, wiring_state
from ukrun import cli
from ukrun.errors import UsageError
from ukrun.guest.targets import TARGETS

# --- parsing (pure) -----------------------------------------------------------------------


@pytest.mark.parametrize("argv, unikernel, args", [
    (["unix", "./k"], "./k", []),
    (["unix", "./k", "--tap", "x", "-v", "--", "y", ""], "./k",
     ["--tap", "x", "-v", "--", "y", ""]),
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
    options = cli.field_values(ns)
    assert options["keep_caps"] == ("net_raw", "KILL")
    assert options["tap_fd"] is True and options["net_name"] == ("service0",)
    assert options["mac"] == ("random",) and options["wiring"] == "bridge"
    defaults = cli.field_values(cli.parse(["unix", "k"]))
    assert defaults["keep_caps"] is None  # NET_BIND_SERVICE when held
    # None: the plan chooses them from the container's links (planning.choose_names)
    assert (defaults["interface"], defaults["tap"], defaults["bridge"]) == (
        None, None, ("br0",))
    assert (defaults["wiring"], defaults["mac"], defaults["ip_args"]) == (
        "tc", ("inherit",), "mirage")


def test_per_interface_options_replace_their_default_and_pair_by_position():
    from ukrun import options, parser, planning, run_line
    from ukrun.guest.targets import TARGETS

    line = ["spt", "--interface", "net1", "--interface=eth0", "--tap", "t1", "--mac", "random",
            "--net-name", "a", "--net-name", "b", "k"]
    fast, slow = run_line.fast_parse(line), parser.parse(line)
    assert vars(fast) == vars(slow)
    values = cli.field_values(fast)
    assert values["interface"] == ("net1", "eth0") and values["tap"] == ("t1",)
    each = options.per_interface(planning.Options("spt", "k", **values), TARGETS["spt"])
    assert [(e.position, e.interface, e.tap, e.bridge, e.mac, e.net_name) for e in each] == [
        (0, "net1", "t1", "br0", "random", "a"), (1, "eth0", "tap1", "br1", "inherit", "b")]
    # The library may give one value alone.
    alone = options.per_interface(planning.Options("spt", "k", interface="eth1", tap="x"),
                                  TARGETS["spt"])
    assert [(e.interface, e.tap, e.net_name) for e in alone] == [("eth1", "x", "service")]


def test_per_interface_options_default_by_position():
    from ukrun import options

    paired = [o for o in options.OPTIONS if o.nth is not None]
    assert {o.dest for o in paired} == {"tap", "bridge", "mac", "net_name"}
    for option in paired:
        # --tap's default is None: the plan names the taps (options.default_taps)
        assert option.action == "append" and option.default == (
            None if option.dest == "tap" else (option.nth(0),)), option.flag
    nth = {o.dest: [o.nth(n) for n in range(3)] for o in paired}
    assert nth == {"tap": ["tap0", "tap1", "tap2"], "bridge": ["br0", "br1", "br2"],
                   "mac": ["inherit"] * 3, "net_name": ["service", "service1", "service2"]}


@pytest.mark.parametrize("fields, needle", [
    (dict(target="unix", interface=("eth0", "net1")),
     "the unix target hands over one interface, not 2 (--interface eth0 --interface net1)"),
    (dict(target="ukvm", interface=("eth0", "net1")), "the ukvm target hands over one"),
    (dict(tap=("a", "b")), "--tap is given 2 times for 1 interface"),
    (dict(interface=("eth0", "net1"), mac=("random",) * 3), "--mac is given 3 times for 2"),
    (dict(interface=("eth0", "eth0")), "--interface, --tap must all be different (eth0 more"),
    (dict(interface=("eth0", "net1"), tap=("tap1", "tap1")),
     "--interface, --tap must all be different (tap1 more"),
    (dict(interface=("eth0", "tap1"), tap=("tap0", "tap1")),
     "--interface, --tap must all be different (tap1 more"),
    (dict(interface=("eth0", "net1"), wiring="bridge", bridge=("br1", "br1")),
     "--interface, --tap, --bridge must all be different (br1 more"),
    (dict(interface=("eth0", "net1"), net_name=("x", "x")), "--net-name: two interfaces"),
    (dict(interface=()), "--interface: no interface given"),
    (dict(interface=("eth0", "net1"), tap=("tap0", "ukrun-lock")),
     "--tap: ukrun-lock is the name of ukrun's namespace lock"),
])
def test_per_interface_options_are_checked(fields, needle):
    from ukrun import planning, preflight

    fields = dict(dict(target="spt", unikernel="k"), **fields)
    with pytest.raises(UsageError) as failed:
        preflight.check_options(planning.Options(**fields))
    assert str(failed.value).startswith(needle), str(failed.value)


# A run's command line is parsed without argparse (ukrun.run_line.fast_parse); wherever that
# answers, argparse (ukrun.parser.parse) must give the very same namespace, and wherever
# argparse refuses, fast_parse must leave it to argparse so that argparse words the error.
WORDS = ["--interface", "--interface=eth1", "--tap", "tap1", "--tap=", "--wiring", "bridge",
         "--wiring=tc", "--wiring=vxlan", "--bridge=br9", "--mac", "random", "--mac=inherit",
         "--ip-args=none", "--ip-args=x", "--keep-cap", "NET_RAW", "--keep-cap=none",
         "--dry-run", "--dry-run=1", "-v", "-vv", "--verbose", "--tender", "/t", "--qemu=/q",
         "--net-name=service0", "--mem", "64", "--mem=0", "--mem=-5", "--mem= 7", "--mem=x",
         "--cpu=max", "--tap-fd", "--tender-arg", "-initrd", "--tender-arg=i.cpio", "--tap-f",
         "--help", "-h", "--", "-", "k", "./k.hvt", "-x", "", "--unknown", "--inter=eth0"]


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(sorted(TARGETS) + ["inspect", "hvtx"]),
       st.lists(st.sampled_from(WORDS), max_size=8))
def test_the_fast_parse_agrees_with_argparse(target, words):
    from ukrun import options, parser, run_line

    argv = [target] + words
    if target in TARGETS and sys.version_info < (3, 13):
        # argparse before 3.13 turns an option value "--" into []: nothing true to compare.
        head, _ = run_line.split_at_unikernel(options.value_flags(options.run_options(target)),
                                             words)
        assume(not any(word.endswith("=--") for word in head))
    fast = run_line.fast_parse(argv)
    try:
        slow = vars(parser.parse(argv))
    except (UsageError, SystemExit):  # an error, or --help (which prints)
        slow = None
    if fast is not None:  # (and where argparse refuses, slow is None: so must fast be)
        assert vars(fast) == slow
    elif slow is not None and target in TARGETS:
        # Correct either way, only slower: a run line argparse accepts and fast_parse leaves to
        # it must be one of the forms fast_parse does not try (combined short flags).
        assert "-vv" in words, argv


@pytest.mark.parametrize("line", [
    "unix /unikernel/www.native", "hvt --mem 64 /unikernel/www.hvt",
    "spt --tap-fd --net-name=service0 -v /u.spt --ipv4-only",
    "qemu --tender-arg=-initrd --tender-arg=/guest/initrd /guest/vmlinuz console=ttyS0",
    "kvm --cpu host --wiring bridge --mac random --keep-cap none /u.virtio",
    "ukvm --dry-run /unikernel/www.ukvm", "unix --ip-args none -- -k",
])
def test_common_run_lines_take_the_fast_parse(line):
    from ukrun import parser, run_line

    fast = run_line.fast_parse(line.split())
    assert fast is not None and vars(fast) == vars(parser.parse(line.split()))


def test_a_run_is_parsed_without_argparse():
    code = ("import sys, ukrun.cli; ukrun.cli.parse(['hvt', '--mem', '64', '--tap-fd', 'k']); "
            "print('argparse' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_each_target_has_its_options():
    parser = cli.get_parser()
    options = {name: {s for a in p._actions for s in a.option_strings}
               for name, p in parser.targets.items()}
    assert "--tender" not in options["unix"] and "--tap-fd" not in options["unix"]
    assert {"--tender", "--net-name", "--mem", "--tap-fd", "--tender-arg"} <= options["hvt"]
    assert {"--tender", "--net-name", "--mem", "--tap-fd", "--tender-arg"} <= options["spt"]
    assert {"--qemu", "--mem", "--cpu", "--tender-arg", "--tap-fd"} <= options["qemu"]
    assert "--tap-fd" not in options["ukvm"] and "--tender" in options["ukvm"]
    assert set(parser.targets) == set(TARGETS)


# --- the option table is the one definition (ukrun.options.OPTIONS) -------------------------

def _table():
    from ukrun import options

    return {option.dest: option for option in options.OPTIONS}


def _other_value(option):
    """A valid value for ``option`` that is not its default."""
    if option.choices is not None:
        return [c for c in option.choices if c != option.default][0]
    if option.action == "store_true":
        return True
    if option.action == "append":
        return ("x",)
    return option.convert("64") if option.convert is not None else "x"


def test_options_and_the_parser_are_derived_from_the_table():
    from ukrun import options, planning
    from ukrun.valueclass import fields

    table = options.OPTIONS
    run_fields = tuple(o.dest for o in table if o.field)
    assert fields(planning.Options) == ("target", "unikernel", "args") + run_fields
    defaults = planning.Options("unix", "k")
    assert {f: getattr(defaults, f) for f in run_fields} == {
        o.dest: o.default for o in table if o.field}
    parser = cli.get_parser()
    for name, sub in parser.targets.items():
        declared = {s for a in sub._actions for s in a.option_strings} - {"-h", "--help"}
        assert declared == {f for o in options.run_options(name) for f in o.flags}, name
    assert {t for o in table for t in o.targets or ()} <= set(TARGETS)


@pytest.mark.parametrize("dest", [o for o, option in _table().items()
                                  if option.field and option.targets is not None])
def test_an_option_is_refused_exactly_where_the_table_says(dest):
    from ukrun import planning, preflight

    option = _table()[dest]
    for name in TARGETS:
        o = planning.Options(name, "k", **{dest: _other_value(option)})
        if option.takes(name):
            preflight.check_options(o)
        else:
            with pytest.raises(UsageError, match="^%s is not available for the %s target$"
                               % (option.flag, name)):
                preflight.check_options(o)


def test_the_tables_choices_are_what_the_library_knows():
    from ukrun.planning import choose_exec_mode
    from ukrun.network.record import WIRINGS
    from ukrun.guest.formats import FORMATS
    from ukrun.guest.targets import IP_ARG_FORMATS

    table = _table()
    assert table["wiring"].choices == WIRINGS
    assert table["ip_args"].choices == IP_ARG_FORMATS == tuple(FORMATS)
    for init in table["init"].choices:
        assert choose_exec_mode(init, pid1=False, can_bound=True) in ("direct", "forked")


@pytest.mark.parametrize("dest, value, needle", [
    ("wiring", "vxlan", "--wiring: 'vxlan' is not one of tc, bridge"),
    ("init", "sometimes", "--init: 'sometimes' is not one of auto, always, never"),
    ("ip_args", "dhcp", "--ip-args: 'dhcp' is not one of mirage, mirage-dns, unikraft, unikraft-lwip, linux, template, none"),
    ("mac", "02:42", "--mac: "), ("mac", 5, "--mac: 5 is not a MAC address"),
    ("mem", 0, "--mem: 0 is not a positive number of MB"), ("mem", True, "--mem: True"),
    ("mem", "64", "--mem: '64'"), ("net_name", "a:b", "--net-name: 'a:b' is not a device"),
    ("net_name", "", "--net-name"), ("tender_args", ("-x", 3), "--tender-arg: arguments"),
    ("interface", "", "--interface: interface name is empty"), ("tap", 7, "--tap: "),
    ("bridge", "b r", "--bridge: "),  # checked whatever the wiring: a typo is a typo
])
def test_library_values_are_checked_by_the_table(dest, value, needle):
    from ukrun import planning, preflight

    with pytest.raises(UsageError) as failed:
        preflight.check_options(planning.Options("spt", "k", **{dest: value}))
    assert str(failed.value).startswith(needle), str(failed.value)


# An option added to the table and nowhere else: it must reach the fast parse and argparse,
# planning.Options, --help, the man page and the preflight's target check.
ADDED_OPTION = r"""
import json, sys
from ukrun import options, run_line
options.OPTIONS.append(options.Option(
    "--frob", targets=("hvt", "spt"), default="low", choices=("low", "high"), metavar="HOW",
    help="how hard to frob the guest (default: %(default)s)"))
from ukrun import cli, parser, planning, preflight
from ukrun.errors import UsageError
sys.path.insert(0, sys.argv[1])
import build  # man/build.py

def refused(o):
    try:
        preflight.check_options(o)
    except UsageError as e:
        return str(e)

ns = cli.parse(["hvt", "--frob", "high", "k"])
print(json.dumps({
    "fast": run_line.fast_parse(["spt", "--frob=high", "k"]).frob,
    "argparse": parser.parse(["hvt", "-v", "--frob", "high", "-vv", "k"]).frob,
    "options": planning.Options("hvt", "k", **cli.field_values(ns)).frob,
    "default": planning.Options("hvt", "k").frob,
    "help": "how hard to frob the guest (default: low)" in " ".join(
        parser.target_parser("spt").format_help().split()),
    "man": "how hard to frob the guest" in build.build(),
    "unix": refused(planning.Options("unix", "k", frob="high")),
    "bad value": refused(planning.Options("spt", "k", frob="higher")),
    "hvt": refused(planning.Options("hvt", "k", frob="high")),
}))
"""


def test_an_option_added_to_the_table_alone_reaches_everything():
    man = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "man")
    out = subprocess.run([sys.executable, "-c", ADDED_OPTION, man], capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out) == {
        "fast": "high", "argparse": "high", "options": "high", "default": "low", "help": True,
        "man": True, "unix": "--frob is not available for the unix target",
        "bad value": "--frob: 'higher' is not one of low, high", "hvt": None}


USAGE_ERRORS = {
    "no target": ([], "TARGET"),
    "unknown target": (["vmware", "k"], "invalid choice"),
    "no unikernel": (["unix"], "UNIKERNEL"),
    "no unikernel after options": (["hvt", "--mem", "5"], "UNIKERNEL"),
    "unknown option": (["unix", "--frob", "k"], "--frob"),
    "unknown option with a space": (["unix", "--mem= 7", "k"], "unrecognized arguments: --mem= 7"),
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
            "'cffi', 'ukrun.kernel.rtnl', 'logging') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- real runs in docker-like containers ----------------------------------------------------

IP_ARGS = ["--ipv4=172.30.0.2/16", "--ipv4-gateway=172.30.0.1"]
NET_BIND_SERVICE = "0000000000000400"  # bit 10
EMPTY = "0000000000000000"

def expected_argv(target, standin, kernel_file, mac, tap="tap0", fd=False):
    """The documented command lines, written out here rather than taken from ukrun.guest.targets."""
    if target == "unix":
        return [standin, "--interface=" + tap, "a", "-b", "--c=d"] + IP_ARGS
    if target in ("hvt", "spt"):
        net = "@3" if fd else tap
        return [standin, "--net:service=" + net, "--net-mac:service=" + mac, "--",
                kernel_file, "a", "-b", "--c=d"] + IP_ARGS
    if target == "ukvm":
        return [standin, "--net=@3", "--", kernel_file, "a", "-b", "--c=d"] + IP_ARGS
    netdev = "tap,id=n0,fd=3" if fd else "tap,id=n0,ifname=%s,script=no,downscript=no" % tap
    accel = ["-enable-kvm", "-cpu", "host"] if target == "kvm" else ["-cpu", "Westmere"]
    return ([standin, "-nodefaults", "-machine", "acpi=off", "-display", "none", "-serial",
             "stdio", "-m", "512"] + accel
            + ["-device", "virtio-net-pci,netdev=n0,mac=" + mac, "-netdev", netdev,
               "-kernel", kernel_file, "-append", " ".join(["a", "-b", "--c=d"] + IP_ARGS)])


def target_argv(target, standin, kernel_file, *options):
    if target == "unix":
        return [target, *options, standin, "a", "-b", "--c=d"]
    tender = "--qemu" if target in ("qemu", "kvm") else "--tender"
    return [target, tender, standin, *options, kernel_file, "a", "-b", "--c=d"]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_each_target_execs_its_command_line(target, container, ukrun_exe, standin, kernel_file):
    if TARGETS[target].needs_kvm and not kvm_usable():
        pytest.skip("%s needs a usable /dev/kvm, which this machine lacks" % target)
    got = report(ukrun(container, ukrun_exe, *target_argv(target, standin, kernel_file)))
    assert got["argv"] == expected_argv(target, standin, kernel_file, container.mac)
    # Exactly the kept capability in every set (ambient too: what a non-root program keeps
    # across execve), and no_new_privs.
    status = got["status"]
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert status[key] == NET_BIND_SERVICE, (key, status)
    assert status["NoNewPrivs"] == "1"
    # Only 0, 1, 2 inherited, and the tap for ukvm; the environment passes through.
    if target == "ukvm":
        assert sorted(got["fds"]) == ["0", "1", "2", "3"]
        assert got["fds"]["3"] == "/dev/net/tun" and got["iff3"] == ["tap0"]
    else:
        assert sorted(got["fds"]) == ["0", "1", "2"]
    assert got["env"] == "kept"


@pytest.mark.parametrize("target", ["hvt", "spt", "qemu"])
def test_tap_fd_hands_over_only_the_tap(target, container, ukrun_exe, standin, kernel_file):
    if TARGETS[target].needs_kvm and not kvm_usable():
        pytest.skip("%s needs a usable /dev/kvm, which this machine lacks" % target)
    got = report(ukrun(container, ukrun_exe,
                       *target_argv(target, standin, kernel_file, "--tap-fd")))
    assert got["argv"] == expected_argv(target, standin, kernel_file, container.mac, fd=True)
    assert sorted(got["fds"]) == ["0", "1", "2", "3"]
    assert got["fds"]["3"] == "/dev/net/tun" and got["iff3"] == ["tap0"]


@pytest.mark.parametrize("keep, mask", [
    (["--keep-cap", "none"], EMPTY),
    (["--keep-cap", "net_raw", "--keep-cap", "CAP_KILL"], "%016x" % (1 << 13 | 1 << 5)),
])
def test_keep_cap(keep, mask, container, ukrun_exe, standin):
    got = report(ukrun(container, ukrun_exe, "unix", *keep, standin))
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert got["status"][key] == mask, (key, got["status"])


def test_default_keeps_nothing_when_net_bind_service_is_not_held(container, ukrun_exe,
                                                                 standin):
    # Kubernetes "drop: [ALL]" + NET_ADMIN: the default must not refuse to start.
    proc = container.exec("setpriv", "--bounding-set=-net_bind_service", ukrun_exe, "unix",
                          "-v", standin, check=False)
    got = report(proc)
    for key in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert got["status"][key] == EMPTY, (key, got["status"])
    assert got["status"]["NoNewPrivs"] == "1"
    assert "CAP_NET_BIND_SERVICE is not held" in proc.stderr
    # Asked for by name, the same capability must be held.
    named = container.exec("setpriv", "--bounding-set=-net_bind_service", ukrun_exe, "unix",
                           "--keep-cap", "net_bind_service", standin, check=False)
    assert named.returncode == 77 and "CAP_NET_BIND_SERVICE" in named.stderr


def link(container, name):
    return container.ip_json("-d", "link", "show", name)[0]


def ipv4(container, dev):
    return [a["local"] for link in container.ip_json("-4", "addr", "show", dev)
            for a in link["addr_info"]]


def test_tc_wiring_as_the_kernel_reports_it(docker_host, ukrun_exe, standin, kernel_file):
    container = docker_host.container(mtu=1400)
    got = report(ukrun(container, ukrun_exe, "spt", "--tender", standin, kernel_file))
    assert "--net-mac:service=%s" % container.mac in got["argv"]
    assert redirects(container, "eth0") == [("redirect", "tap0")]
    assert redirects(container, "tap0") == [("redirect", "eth0")]
    eth0, tap0 = link(container, "eth0"), link(container, "tap0")
    assert eth0["address"] == container.mac  # eth0 keeps its MAC; the guest gets it too
    assert "master" not in eth0 and "master" not in tap0
    assert tap0["mtu"] == 1400 and "UP" in tap0["flags"]
    assert ipv4(container, "eth0") == []
    assert container.ip_json("-4", "route", "show") == []
    features = container.exec("ethtool", "-k", "tap0").stdout
    for feature in ("generic-receive-offload: off", "generic-segmentation-offload: off"):
        assert feature in features


def test_bridge_wiring_reproduces_the_old_runner(container, ukrun_exe, standin):
    """`ukrun unix --wiring bridge`: the seed's command line and topology, exactly."""
    proc = ukrun(container, ukrun_exe, "unix", "--wiring", "bridge", "-v", standin, "a", "-b",
                 "--c=d")
    got = report(proc)
    assert got["argv"] == [standin, "--interface=tap0", "a", "-b", "--c=d"] + IP_ARGS
    # -v: each step as it happens, and why --mac does nothing here.
    assert re.search(r"^ukrun: create bridge br0 \(as ukbr[0-9a-f]{8} until marked\)$",
                     proc.stderr, re.M), proc.stderr
    assert "cannot set the guest's MAC" in proc.stderr
    br0, eth0, tap0 = (link(container, n) for n in ("br0", "eth0", "tap0"))
    assert br0["linkinfo"]["info_kind"] == "bridge"
    assert eth0["master"] == "br0" and tap0["master"] == "br0"
    assert "UP" in br0["flags"] and "UP" in tap0["flags"]
    assert eth0["address"] == container.mac  # unix sets no guest MAC: nothing to move
    assert ipv4(container, "eth0") == [] and ipv4(container, "br0") == []
    assert container.tc_json("filter", "show", "dev", "eth0", "ingress") == []


def test_bridge_wiring_gives_eth0_a_fresh_mac(container, ukrun_exe, standin, kernel_file):
    got = report(ukrun(container, ukrun_exe, "spt", "--wiring", "bridge", "--tender", standin,
                       kernel_file))
    assert "--net-mac:service=%s" % container.mac in got["argv"]
    new = link(container, "eth0")["address"]
    assert new != container.mac and int(new[:2], 16) & 0b11 == 0b10  # local, unicast
    assert link(container, "eth0")["master"] == "br0"


def test_random_mac(container, ukrun_exe, standin, kernel_file):
    got = report(ukrun(container, ukrun_exe, "spt", "--mac", "random", "--tender", standin,
                       kernel_file))
    mac = [a for a in got["argv"] if a.startswith("--net-mac:")][0].split("=")[1]
    assert mac != container.mac and int(mac[:2], 16) & 0b11 == 0b10
    again = report(ukrun(container, ukrun_exe, "spt", "--mac", "random", "--tender", standin,
                         kernel_file))
    assert again["argv"] == got["argv"]  # a restart keeps the MAC neighbours cached


@pytest.mark.parametrize("wiring", ["tc", "bridge"])
def test_restart_in_the_same_namespace(wiring, container, ukrun_exe, standin, kernel_file):
    argv = ["spt", "--wiring", wiring, "--tender", standin, kernel_file, "x"]
    first = report(ukrun(container, ukrun_exe, *argv))
    wired = wiring_state(container)
    second = ukrun(container, ukrun_exe, argv[0], "-v", *argv[1:])
    assert report(second)["argv"] == first["argv"]
    assert "create" not in second.stderr and "remove" not in second.stderr
    assert wiring_state(container) == wired
    inspected = json.loads(ukrun(container, ukrun_exe, "inspect").stdout)
    assert inspected["source"] == "recorded" and inspected["ipv4"] == "172.30.0.2/16"


def test_a_restart_with_another_tap_name_is_refused(container, ukrun_exe, standin):
    report(ukrun(container, ukrun_exe, "unix", "--tap", "tapA", standin))
    wired = wiring_state(container)
    proc = ukrun(container, ukrun_exe, "unix", "--tap", "tapB", standin)
    assert proc.returncode == 1 and "pass --tap tapA" in proc.stderr
    assert wiring_state(container) == wired
    assert report(ukrun(container, ukrun_exe, "inspect"))["source"] == "recorded"


def test_dry_run_and_inspect_change_nothing(container, ukrun_exe, standin):
    before = snapshot(container)
    plan = report(ukrun(container, ukrun_exe, "unix", "--dry-run", standin, "x"))
    assert plan["argv"] == [standin, "--interface=tap0", "x"] + IP_ARGS
    assert plan["network"]["ipv4"] == "172.30.0.2/16" and plan["steps"]
    # One interface: "networks" lists it, with its tap.
    assert [(n["interface"], n["tap"], n["ipv4"]) for n in plan["networks"]] == [
        ("eth0", "tap0", "172.30.0.2/16")]
    inspected = report(ukrun(container, ukrun_exe, "inspect"))
    assert inspected["mac"] == container.mac and inspected["gateway4"] == "172.30.0.1"
    assert inspected["source"] == "discovered"
    assert snapshot(container) == before


# --- preflight: every failure before a change leaves the namespace as it was ---------------

def _file(tmp_path, name, mode, text="#!/bin/sh\n"):
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def _no_ipv4(container):
    container.ip("addr", "del", "172.30.0.2/16", "dev", "eth0")


def _taken(name):
    # A bridge of someone else's (this kernel has no dummy module).
    return lambda container: container.ip("link", "add", name, "type", "bridge")


def _foreign_tap(container):
    container.ip("tuntap", "add", "tap0", "mode", "tap")


def _in_mount_ns(script):
    """Run ukrun after ``script`` in a private mount namespace (hiding or faking devices)."""
    return lambda argv: ["unshare", "-m", "sh", "-c", script + ' && exec "$@"', "sh"] + argv


PREFLIGHT = {
    # name: (argv with {standin}, {kernel}, {plain}, {dir} filled in, setup, wrapper, status,
    #        what the message says)
    "unikernel missing": (["unix", "/nonexistent/k"], None, None, 127, "not found"),
    "unikernel not executable": (["unix", "{plain}"], None, None, 126, "not executable"),
    "unikernel is a directory": (["unix", "{dir}"], None, None, 126, "directory"),
    "guest kernel missing": (["qemu", "--qemu", "{standin}", "/nonexistent/k"], None, None,
                             127, "unikernel /nonexistent/k not found"),
    "tender missing": (["spt", "--tender", "/nonexistent/solo5-spt", "{kernel}"], None, None,
                       127, "tender /nonexistent/solo5-spt not found"),
    "tender not on PATH": (["spt", "{kernel}"], None,
                           lambda argv: ["env", "PATH=/nonexistent"] + argv, 127, "solo5-spt"),
    "tender on PATH not executable": (["spt", "{kernel}"], None,
                                      lambda argv: ["env", "PATH={dir}"] + argv, 126,
                                      "not executable"),
    "tender not executable": (["spt", "--tender", "{plain}", "{kernel}"], None, None, 126,
                              "not executable"),
    "qemu missing": (["qemu", "--qemu", "/nonexistent/qemu", "{kernel}"], None, None, 127,
                     "QEMU"),
    "interface missing": (["unix", "--interface", "eth9", "{standin}"], None, None, 1,
                          "interface eth9 not found"),
    "interface without IPv4": (["unix", "{standin}"], _no_ipv4, None, 1,
                               "no global IPv4 or IPv6"),
    # A tap named by --tap is refused when taken; the default moves on (test_default_names)
    "tap name taken": (["unix", "--tap", "tap0", "{standin}"], _taken("tap0"), None, 1,
                       "tap0 already exists"),
    "tap of someone else": (["unix", "--tap", "tap0", "{standin}"], _foreign_tap, None, 1,
                            "tap0 already exists"),
    "bridge name taken": (["unix", "--wiring", "bridge", "{standin}"], _taken("br0"), None, 1,
                          "br0 already exists"),
    "no CAP_NET_ADMIN": (["unix", "{standin}"], None,
                         lambda argv: ["setpriv", "--bounding-set=-net_admin"] + argv, 77,
                         "CAP_NET_ADMIN"),
    "kept capability not held": (["unix", "--keep-cap", "net_raw", "{standin}"], None,
                                 lambda argv: ["setpriv", "--bounding-set=-net_raw"] + argv, 77,
                                 "CAP_NET_RAW"),
    "no /dev/net/tun": (["unix", "{standin}"], None,
                        _in_mount_ns("mount -t tmpfs none /dev/net"), 77, "/dev/net/tun"),
    "/dev/kvm not a device": (["hvt", "--tender", "{standin}", "{kernel}"], None,
                              _in_mount_ns("mount --bind {plain} /dev/kvm"), 77, "/dev/kvm"),
}


@pytest.mark.parametrize("case", sorted(PREFLIGHT))
def test_preflight_failure_changes_nothing(case, container, ukrun_exe, standin, kernel_file,
                                           tmp_path):
    argv, setup, wrap, status, needle = PREFLIGHT[case]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fill = {"standin": standin, "kernel": kernel_file, "dir": str(bindir),
            "plain": _file(tmp_path, "plain", 0o644)}
    _file(bindir, "solo5-spt", 0o644)
    if setup:
        setup(container)
    command = [ukrun_exe] + [a.format(**fill) for a in argv]
    if wrap:
        command = [a.format(**fill) for a in wrap(command)]
    before = snapshot(container)
    proc = container.exec(*command, check=False)
    assert proc.returncode == status, proc.stderr
    assert proc.stderr.startswith("ukrun: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert needle in proc.stderr
    assert snapshot(container) == before


def test_traceback_only_with_verbose(container, ukrun_exe):
    quiet = container.exec(ukrun_exe, "unix", "/nonexistent/k", check=False)
    loud = container.exec(ukrun_exe, "unix", "-v", "/nonexistent/k", check=False)
    assert quiet.returncode == loud.returncode == 127
    assert "Traceback" not in quiet.stderr and "Traceback" in loud.stderr
    assert loud.stderr.splitlines()[-1] == quiet.stderr.strip()


@pytest.mark.parametrize("argv", [
    ["spt", "--tender", "--dry-run", "--tender", "/t", "k"],
    ["unix", "--tap", "-v", "k"],
    ["spt", "--tender", "--mem=64", "k"],
])
def test_an_option_value_that_is_one_of_ukruns_own_options_is_a_slip(argv):
    # Joined, "--tender --dry-run" would turn a dry run into a real one.
    from ukrun import run_line

    assert run_line.fast_parse(argv) is None
    with pytest.raises(UsageError, match="expected one argument"):
        cli.parse(argv)
    assert cli.parse(["qemu", "--tender-arg", "-initrd", "k"]).tender_args == ["-initrd"]


@pytest.mark.parametrize("argv, needle", [
    (["unix", "--mac", " a:bb:cc:dd:ee:ff", "k"], "--mac: ' a:bb:cc:dd:ee:ff' is not a MAC"),
    (["unix", "--mac", "+a:bb:cc:dd:ee:ff", "k"], "--mac: '+a:bb:cc:dd:ee:ff' is not a MAC"),
    (["unix", "--keep-cap", "none", "--keep-cap", "KILL", "k"],
     "--keep-cap: 'none' cannot be combined"),
])
def test_junk_values_are_usage_errors_before_anything_runs(argv, needle, capsys, netns):
    with in_netns(netns.name):  # (should the check ever let a run through)
        assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ukrun: error: " + needle) and err.count("\n") == 1, err
