"""What ukrun costs a container image: no helper processes, a small wheel, a lean CLI import."""
import email.parser
import importlib.util
import marshal
import os
import re
import subprocess
import sys
import sysconfig
import zipfile

import pytest

import ukrun

from wheelutil import build_wheel, venv_install

TRACED = "execve,clone,clone3,fork,vfork"


def traced_calls(path):
    """[(pid, syscall, first argument)] from an ``strace -f -o`` file."""
    calls = []
    for line in open(path):
        m = re.match(r"(\d+)\s+(\w+)\((\"[^\"]*\"|[^,)]*)", line)
        if m and m.group(2) in TRACED.split(","):
            calls.append((int(m.group(1)), m.group(2), m.group(3).strip('"')))
    return calls


def test_a_run_execs_the_unikernel_and_starts_nothing_else(container, ukrun_exe, tmp_path):
    trace = tmp_path / "trace"
    proc = container.exec("strace", "-f", "-e", "trace=" + TRACED, "-o", trace,
                          ukrun_exe, "unix", "/bin/true", check=False)
    assert proc.returncode == 0, proc.stderr
    calls = traced_calls(trace)
    # The ukrun script (bin/ukrun) is a Python script: the kernel runs it through its #! line,
    # in the same execve. After that the only program started is the unikernel, in the same
    # process (as root with CAP_SETPCAP and not PID 1, ukrun execs it itself: no fork under
    # ukrun-init).
    assert [c[1:] for c in calls] == [("execve", ukrun_exe), ("execve", "/bin/true")], calls
    assert len({pid for pid, _, _ in calls}) == 1


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return build_wheel(str(tmp_path_factory.mktemp("wheel")))


def test_wheel_is_under_240_kib(wheel):
    # 200 KiB until the CNI plugin and the OCI hook came (197 KiB then); the README, which
    # the wheel carries as its description, grew with them, and with the Podman and musl
    # sections (226 KiB).
    assert os.path.getsize(wheel) < 240 * 1024


def test_wheel_carries_the_init_executable(wheel):
    # ukrun-init (csrc/init.c) stays as PID 1 when ukrun forks the unikernel (ukrun.kernel.process).
    with zipfile.ZipFile(wheel) as z:
        mode = z.getinfo("ukrun/ukrun-init").external_attr >> 16
        head = z.read("ukrun/ukrun-init")[:4]
    assert head == b"\x7fELF"
    assert mode & 0o777 == 0o755


def test_wheel_depends_on_cffi_alone(wheel):
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(z.read(name).decode())
    requires = metadata.get_all("Requires-Dist") or []
    assert [re.split(r"[ <>=!;(]", r, 1)[0] for r in requires] == ["cffi"], requires


# Measured (python -X importtime): ukrun.cli loads the errors, the option table (a run's
# command line is parsed without argparse) and the pure targets table. argparse comes only for
# --help, errors and the other commands; everything a run needs beyond that loads once it starts.
NOT_ON_CLI_PATH = ["ukrun.parser", "argparse", "gettext", "json", "ukrun.runner",
                   "ukrun.preflight", "ukrun.kernel.rtnl", "ukrun.kernel.netlink", "ukrun.network.discovery",
                   "ukrun.network.wiring", "ukrun.network.executor", "ukrun.kernel.caps", "ukrun.kernel.tap", "ukrun.docker",
                   "ukrun.guest.elf", "ukrun.kernel.ffi", "ukrun._core", "cffi", "_cffi_backend", "socket",
                   "logging", "subprocess", "asyncio", "shlex"]


def test_importing_the_cli_stays_lean():
    code = ("import sys, ukrun.cli; print(' '.join(m for m in %r if m in sys.modules))"
            % NOT_ON_CLI_PATH)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == []


# What ukrun's own start-up cost was made of (python -X importtime, benchmarks/phases.py):
# dataclasses (code generated and compiled for each class at import), typing, logging, socket's
# enums, shutil (argparse's terminal width), traceback, argparse, json, and the re and enum they
# bring; then ipaddress with the functools and collections it loads (ukrun.kernel.inet instead),
# collections for namedtuple and collections.abc, mmap for ELF headers. None of them may come
# back on a run.
NOT_ON_A_RUN = ["dataclasses", "inspect", "typing", "logging", "socket", "shutil", "traceback",
                "shlex", "subprocess", "asyncio", "argparse", "gettext", "json", "re", "enum",
                "ipaddress", "functools", "collections", "collections.abc", "operator", "types",
                "keyword", "reprlib", "itertools", "mmap", "weakref", "copy", "contextlib",
                "warnings", "threading", "locale", "string", "textwrap", "tempfile", "glob",
                "fnmatch", "ntpath", "urllib", "importlib", "importlib.util", "pathlib",
                # resolv.conf is read for a run only when the guest's words can name DNS
                # servers or someone hears the notes (-v, logging): not for mirage's.
                "ukrun.network.resolv"]

# What a run may load from the standard library beyond what `import os, sys` loads, each for a
# reason. A module that is not here, and not ukrun's own, fails the test: say here why a run
# needs it, or keep it off the run path.
RUN_STDLIB = {
    "__future__",  # every ukrun module's annotations (PEP 563)
    "_socket", "errno",  # the route-netlink socket (not socket, which makes enums of all)
    "_struct", "struct",  # the netlink codec, ELF headers, the pointer size of execve's room
    "_operator",  # the fields of netlink's Attr tuples
    "_cffi_backend",  # ukrun._core: TUNSETIFF, capget/capset, prctl
}

# A run up to each execve it makes, in exec mode direct (its own execve of the program) or
# forked (--init always, as PID 1: the child's execve of the program, then ukrun's execve of
# ukrun-init); each execve prints the modules loaded by then and its path, and ends there.
RUN_UP_TO_EXEC = """
import os, sys
import ukrun.cli
def execve(path, argv, env):
    sys.stdout.write(" ".join(sorted(sys.modules)) + "\\n" + path + "\\n")
    sys.stdout.flush()
    os._exit(0)
os.execve = execve
sys.exit(ukrun.cli.main(["unix"] + sys.argv[1:] + ["/bin/true"]))
"""
EXEC_MODES = {"direct": ["--init", "never"], "forked": ["--init", "always"]}


def run_up_to_exec(container, mode):
    """{path exec'd: the modules loaded by then} for a run in exec ``mode``, and the bare
    interpreter's modules. python -S: without site, so the development venv's editable-install
    hook (which loads re and more) stays out, as it is out of a wheel install; ukrun and
    _cffi_backend come from PYTHONPATH instead."""
    path = os.pathsep.join([os.path.dirname(os.path.dirname(ukrun.__file__)),
                            sysconfig.get_path("platlib"), sysconfig.get_path("purelib")])
    env = dict(os.environ, PYTHONPATH=path)
    bare = set(container.exec(sys.executable, "-S", "-c", "import os, sys; "
                              "print(' '.join(sys.modules))", env=env).stdout.split())
    proc = container.exec(sys.executable, "-S", "-c", RUN_UP_TO_EXEC, *EXEC_MODES[mode],
                          env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    execs = {os.path.basename(lines[i + 1]): set(lines[i].split()) for i in range(0, len(lines), 2)}
    # direct: the program; forked: the program's child, then ukrun-init in ukrun's place.
    assert sorted(execs) == (["true"] if mode == "direct" else ["true", "ukrun-init"]), execs
    return execs, bare


@pytest.mark.parametrize("mode", sorted(EXEC_MODES))
def test_a_run_loads_nothing_heavy(container, mode):
    execs, bare = run_up_to_exec(container, mode)
    assert not bare & set(NOT_ON_A_RUN)
    for loaded in execs.values():
        assert sorted(loaded & set(NOT_ON_A_RUN)) == []
        stdlib = {m for m in loaded - bare if m != "ukrun" and not m.startswith("ukrun.")}
        assert sorted(stdlib - RUN_STDLIB) == []


# Measured (strace): a tc run sends 16 netlink requests: the lock (a netfilter queue bind),
# four dumps for its one snapshot of the kernel (links, eth0's addresses, routes, qdiscs) and
# eleven changes, each acked before the next (a failed step must stop the run there); tap and
# link indexes come from SIOCGIFINDEX, not from a link request each.
RUN_NETLINK_REQUESTS = 16


def test_a_run_asks_the_kernel_few_netlink_requests(container, ukrun_exe, tmp_path):
    trace = tmp_path / "trace"
    proc = container.exec("strace", "-f", "-e", "trace=sendto,sendmsg", "-o", trace, ukrun_exe,
                          "unix", "--wiring", "tc", "/bin/true", check=False)
    assert proc.returncode == 0, proc.stderr
    requests = [line for line in open(trace) if "nlmsg_type=" in line]
    assert any("RTM_NEWTFILTER" in line for line in requests)  # the run did wire
    assert len(requests) <= RUN_NETLINK_REQUESTS, "".join(requests)


# What a plain run (the default --ip-args, an ELF program, nothing failing) never loads: the
# other commands (inspect, the docker commands, argparse's parser for help and errors), the
# guest-word formats other than the default one, #! scripts and binfmt_misc rules.
NOT_ON_A_PLAIN_RUN = ["ukrun.report", "ukrun.parser", "ukrun.docker", "ukrun.docker_build",
                      "ukrun.guest.binfmt", "ukrun.guest.formats.unikraft",
                      "ukrun.guest.formats.linux", "ukrun.guest.formats.template",
                      "ukrun.guest.targets.solo5", "ukrun.guest.targets.ukvm",
                      "ukrun.guest.targets.qemu",
                      # the handover without exec, for ukrun cni and ukrun hook alone
                      "ukrun.cni", "ukrun.oci_hook", "ukrun.handover", "ukrun.network.release",
                      "ukrun.kernel.netns"]
# Measured: ukrun's own code a plain unix run loads, as .pyc bytes (unmarshalling them is a
# share of a run's start proportional to their size): 483 KB at c1283c9, 440 KB at 45e468d,
# 473 KB once a run chooses its interface and tap from the links (planning.choose_names), 478 KB
# once it also checks for a handover made without it (the capability-free entrypoint), 482 KB
# once the only interface must be of a container's kind (planning.CONTAINER_KINDS).
RUN_PYC_BYTES = 484 * 1024


def code_bytes(module: str) -> int:
    """The size of ``module``'s code as its .pyc holds it (marshalled), compiled from its
    source: what a run unmarshals to import it."""
    spec = importlib.util.find_spec(module)
    if not spec.origin.endswith(".py"):
        return 0  # an extension module
    with open(spec.origin, "rb") as f:
        return len(marshal.dumps(compile(f.read(), spec.origin, "exec")))


@pytest.mark.parametrize("mode", sorted(EXEC_MODES))
def test_a_plain_run_loads_only_what_it_uses(container, mode):
    execs, _ = run_up_to_exec(container, mode)
    loaded = execs["ukrun-init" if mode == "forked" else "true"]  # ukrun's own last execve
    assert {"ukrun.runner", "ukrun.guest.formats", "ukrun.guest.execrules",
            "ukrun.network.record"} <= loaded
    assert sorted(loaded & set(NOT_ON_A_PLAIN_RUN)) == []
    own = [m for m in loaded if m == "ukrun" or m.startswith("ukrun.") and m != "ukrun._core.lib"]
    assert 100 * 1024 < sum(map(code_bytes, own)) < RUN_PYC_BYTES


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    """The wheel in a plain venv, as an image has it: (its interpreter, its ukrun script)."""
    path = str(tmp_path_factory.mktemp("venv") / "venv")
    return venv_install(wheel, path), os.path.join(path, "bin", "ukrun")


def test_a_run_through_the_installed_script_loads_nothing_heavy(container, venv):
    # The whole start as the kernel makes it when the script's -S is kept: no site, and every
    # module imported up to the unikernel's execve, as PYTHONPROFILEIMPORTTIME names them.
    python, script = venv
    proc = container.exec(python, "-S", script, "unix", "/bin/true", check=False,
                          env=dict(os.environ, PYTHONPROFILEIMPORTTIME="1"))
    assert proc.returncode == 0, proc.stderr
    loaded = re.findall(r"^import time:.*\|\s*(\S+)$", proc.stderr, re.M)
    assert "ukrun.runner" in loaded
    assert [m for m in loaded if m in NOT_ON_A_RUN + ["site", "sitecustomize"]] == []
