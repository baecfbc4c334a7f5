"""End to end: real guests started through the `ukrun` CLI in docker-like containers.

The "Docker host" namespace pings the container's address and talks UDP (userspace guest) or
HTTP (Linux VM guest) to whatever now answers there; the guest reports what it was handed.
Every wait is bounded and every process is stopped in a finalizer (and the namespaces'
removal kills whatever is left), so no test can hang.
"""
import functools
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from guests import (VM_READY, UkrunRun, http_get, ping, ping_once, stop, udp_echo, vm_guest)
from nsutil import kvm_usable

pytestmark = pytest.mark.e2e

WIRINGS = ("tc", "bridge")
NET_BIND_SERVICE = 10   # the default kept capability: bit 10 in /proc/self/status masks


def needs_kvm(target):
    if target in ("hvt", "ukvm") and not kvm_usable():
        pytest.skip("%s needs a usable /dev/kvm (ukrun checks it before starting)" % target)


Run = UkrunRun


@pytest.fixture
def runs():
    started = []
    yield started
    for run in started:
        stop(run.proc)


@pytest.fixture
def start(runs, tmp_path, ukrun_exe):
    def start(container, *argv):
        run = Run(container, tmp_path, ukrun_exe, [str(a) for a in argv])
        runs.append(run)
        return run
    return start


def uguest_argv(target, wiring, uguest, unikernel, *guest_args, options=()):
    """`ukrun TARGET ...` with the userspace guest as the unikernel (unix) or the tender."""
    head = [target, "-v", "--wiring", wiring, *options]
    if target == "unix":
        return head + [uguest, *guest_args]
    return head + ["--tender", uguest, unikernel, *guest_args]


def assert_dropped(status, extra_fds=(), fds=None):
    """What the exec'd program is promised: only the kept capability, no_new_privs."""
    kept = 1 << NET_BIND_SERVICE
    for mask in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
        assert int(status[mask], 16) == kept, (mask, status)
    assert status["NoNewPrivs"] == "1", status
    if fds is not None:
        assert sorted(int(fd) for fd in fds) == sorted({0, 1, 2} | set(extra_fds)), fds


def assert_traffic(docker_host, container, udp=True):
    """The Docker host reaches the guest at the container's address."""
    ping(docker_host, container.ip4, timeout=10)
    if udp:
        udp_echo(docker_host.name, container.ip4, 7, os.urandom(1200), timeout=10)


def host_neighbour(docker_host, address):
    entries = docker_host.ip_json("neigh", "show", address, "dev", "docker0")
    return entries[0].get("lladdr") if entries else None


@pytest.mark.parametrize("wiring", WIRINGS)
@pytest.mark.parametrize("target", ["unix", "hvt", "spt", "ukvm"])
def test_userspace_guest(docker_host, container, start, uguest, unikernel, target, wiring):
    needs_kvm(target)
    run = start(container, *uguest_argv(target, wiring, uguest, unikernel, "--app-arg"))
    ready = run.ready_json()
    assert ready["ipv4"] == "%s/%d" % (container.ip4, container.prefix)
    assert ready["gateway"] == container.gateway
    assert "--app-arg" in ready["guest_args"]
    tap_fd = ready["attach"].get("fd")
    if target == "ukvm":
        assert ready["mode"] == "ukvm" and tap_fd is not None
        assert ready["attach"]["fd_target"] == "/dev/net/tun"
    else:
        assert ready["attach"]["tap"] == "tap0" and tap_fd is None
    if target in ("hvt", "spt"):
        # The guest gets eth0's MAC, so the host's cached neighbour entry stays right.
        assert ready["mac"] == container.mac and ready["attach"]["net_name"] == "service"
        assert ready["unikernel"] == unikernel
    assert_dropped(ready["status"], [tap_fd] if tap_fd is not None else (), ready["fds"])
    assert_traffic(docker_host, container)
    assert host_neighbour(docker_host, container.ip4) == ready["mac"]
    if wiring == "bridge" and target in ("hvt", "spt"):
        # A bridge keeps frames for a port's own MAC: eth0 must have given its MAC away.
        eth0 = container.ip_json("link", "show", "eth0")[0]["address"]
        assert eth0 != container.mac
    assert run.proc.poll() is None, run.stderr()


@pytest.mark.parametrize("target", ["hvt", "spt"])
def test_solo5_tap_fd(docker_host, container, start, uguest, unikernel, target):
    """--tap-fd: the tender gets the tap as an inherited fd (--net:NAME=@FD), kept open."""
    needs_kvm(target)
    run = start(container, *uguest_argv(target, "tc", uguest, unikernel, options=("--tap-fd",)))
    ready = run.ready_json()
    fd = ready["attach"]["fd"]
    assert ready["tender"]["nets"] == {"service": "@%d" % fd}
    assert ready["attach"]["fd_target"] == "/dev/net/tun" and ready["mac"] == container.mac
    assert_dropped(ready["status"], [fd], ready["fds"])
    assert_traffic(docker_host, container)


@pytest.mark.parametrize("wiring,tap_fd", [("tc", False), ("bridge", False), ("tc", True)])
def test_qemu_linux_guest(docker_host, container, start, wiring, tap_fd):
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
    vm = vm_guest()
    began = time.monotonic()
    run = start(container, "qemu", "-v", "--wiring", wiring, "--mem", "256",
                *(["--tap-fd"] if tap_fd else []),
                "--tender-arg=-initrd", "--tender-arg=%s" % vm["initrd"], vm["kernel"],
                "console=ttyS0", "quiet")
    ready = run.vm_ready(timeout=60)
    booted = time.monotonic() - began
    assert ready == {"ip": "%s/%d" % (container.ip4, container.prefix),
                     "gw": container.gateway, "mac": container.mac}
    assert_traffic(docker_host, container, udp=False)
    body, _ = http_get(docker_host.name, container.ip4, timeout=20)
    assert "ip=%s/%d" % (container.ip4, container.prefix) in body
    assert host_neighbour(docker_host, container.ip4) == container.mac
    if tap_fd:
        assert re.search(r"-netdev tap,id=n0,fd=\d+ ", run.stderr()), run.stderr()
    print("qemu/%s%s: guest ready %.1fs after ukrun started"
          % (wiring, " --tap-fd" if tap_fd else "", booted))


# -cpu host aborts on some nested hosts (kvm_pvm: "failed to set MSR 0x10a") and other models
# hang there without a word, so try these, in order of preference, and use the first that boots.
KVM_CPU_MODELS = ("host", "max", "host,-arch-capabilities", "qemu64", "kvm64", "Westmere")
KVM_PROBE_SECONDS = 25
BOOTED = "boots"


def _probe_outcome(proc, serial, err, timed_out):
    """BOOTED, why this model failed, or None while it is still undecided."""
    with open(serial, errors="replace") as fh:
        lines = [l.rstrip("\r") for l in fh.read().splitlines() if l.strip()]
    if any(l.startswith(VM_READY) for l in lines):
        return BOOTED
    with open(err, errors="replace") as fh:
        # Less the warning about the probe's own backend-less NIC.
        said = [l.replace("qemu-system-x86_64: ", "") for l in fh.read().splitlines()
                if "has no peer" not in l]
    if proc.poll() is not None:
        # The "error:" line is the cause; an abort's assertion message follows it.
        said = [l for l in said if "error" in l] or said[-1:] or ["no message"]
        return "qemu exited (%d): %s" % (proc.returncode, said[0])
    if not timed_out:
        return None
    if lines:
        return "no ready line within %d s, last serial line %r" % (KVM_PROBE_SECONDS, lines[-1])
    return "no serial output within %d s%s" % (KVM_PROBE_SECONDS,
                                              " (qemu: %s)" % said[0] if said else "")


@functools.lru_cache(maxsize=None)
def kvm_cpu_model():
    """(the first CPU model a Linux guest boots with under QEMU/KVM, or None; {model: why not}).

    Every model boots at once, straight through qemu (no ukrun, no namespace), so the probe
    costs one bounded wait, once per session. "Boots" means the guest's /init printed its
    ready line: userspace ran, loaded the virtio modules and found its NIC.
    """
    vm = vm_guest()
    procs, outcome = {}, {}
    with tempfile.TemporaryDirectory(prefix="ukrun-kvm-probe-") as tmp:
        try:
            for i, cpu in enumerate(KVM_CPU_MODELS):
                serial, err = os.path.join(tmp, "%d.serial" % i), os.path.join(tmp, "%d.err" % i)
                open(serial, "w").close()
                with open(err, "w") as errfh:
                    # A NIC with no backend: without an eth0 /init waits 10 s before its ready
                    # line, and with no backend there is no network to set up or leave behind.
                    proc = subprocess.Popen(
                        ["qemu-system-x86_64", "-enable-kvm", "-cpu", cpu, "-nodefaults",
                         "-machine", "acpi=off", "-display", "none", "-m", "256",
                         "-serial", "file:" + serial, "-device", "virtio-net-pci",
                         "-kernel", vm["kernel"], "-initrd", vm["initrd"],
                         "-append", "console=ttyS0"],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errfh)
                procs[cpu] = (proc, serial, err)
            deadline = time.monotonic() + KVM_PROBE_SECONDS
            while True:
                timed_out = time.monotonic() >= deadline
                for cpu, probe in procs.items():
                    if outcome.get(cpu) is None:
                        outcome[cpu] = _probe_outcome(*probe, timed_out)
                # The order of preference decides: done once every model before a booted one
                # has failed (or all have).
                for cpu in KVM_CPU_MODELS:
                    if outcome[cpu] is None:
                        break
                    if outcome[cpu] == BOOTED:
                        return cpu, {m: r for m, r in outcome.items() if r and r != BOOTED}
                else:
                    return None, outcome
                time.sleep(0.2)
        finally:
            for proc, _, _ in procs.values():
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=10)


def test_kvm_linux_guest(docker_host, container, start):
    if not kvm_usable() or not shutil.which("qemu-system-x86_64"):
        pytest.skip("/dev/kvm not usable or qemu-system-x86_64 missing")
    cpu, failures = kvm_cpu_model()
    if cpu is None:
        pytest.skip("no CPU model boots a Linux guest with QEMU/KVM here: %s"
                    % "; ".join("%s: %s" % item for item in failures.items()))
    vm = vm_guest()
    run = start(container, "kvm", "-v", "--cpu", cpu, "--mem", "256",
                "--tender-arg=-initrd", "--tender-arg=%s" % vm["initrd"], vm["kernel"],
                "console=ttyS0", "quiet")
    ready = run.vm_ready(timeout=30)
    assert ready["ip"] == "%s/%d" % (container.ip4, container.prefix)
    assert_traffic(docker_host, container, udp=False)
    body, _ = http_get(docker_host.name, container.ip4, timeout=20)
    assert "ip=%s/%d" % (container.ip4, container.prefix) in body
    print("kvm: -cpu %s boots; failed: %s" % (cpu, failures or "none"))


@pytest.mark.parametrize("wiring", WIRINGS)
def test_restart_in_kept_namespace(docker_host, container, start, uguest, unikernel, wiring):
    """A Kubernetes-style restart: the guest exits, ukrun runs again in the same namespace."""
    first = start(container, *uguest_argv("spt", wiring, uguest, unikernel, "--exit-after=2"))
    ready1 = first.ready_json()
    assert_traffic(docker_host, container)
    assert first.proc.wait(timeout=15) == 0, first.stderr()
    second = start(container, *uguest_argv("spt", wiring, uguest, unikernel))
    ready2 = second.ready_json()
    assert (ready2["ipv4"], ready2["gateway"], ready2["mac"]) == \
        (ready1["ipv4"], ready1["gateway"], ready1["mac"])
    assert ready2["ipv4"] == "%s/%d" % (container.ip4, container.prefix)
    assert_traffic(docker_host, container)


@pytest.mark.parametrize("wiring", WIRINGS)
def test_first_ping_reaches_silent_guest(docker_host, container, start, uguest, unikernel,
                                         wiring):
    """MAC inheritance: the host's cached entry for the container already fits the guest."""
    ping(docker_host, container.ip4, timeout=5)   # the container's own kernel answers
    assert host_neighbour(docker_host, container.ip4) == container.mac
    run = start(container, *uguest_argv("spt", wiring, uguest, unikernel, "--no-garp"))
    assert run.ready_json()["mac"] == container.mac
    # One echo request, no retry: it must be answered with no ARP exchange at all.
    assert ping_once(docker_host, container.ip4, wait=3), run.stderr()


def test_silent_guest_with_fresh_mac_loses_first_ping(docker_host, container, start, uguest,
                                                      unikernel):
    """The control: the old runner's fault (fresh MAC, no announcement) really loses traffic."""
    ping(docker_host, container.ip4, timeout=5)
    run = start(container, *uguest_argv("spt", "tc", uguest, unikernel, "--no-garp",
                                        options=("--mac", "random")))
    assert run.ready_json()["mac"] != container.mac
    assert not ping_once(docker_host, container.ip4, wait=1)


def test_containers_side_by_side(docker_host, start, uguest, unikernel):
    """Several containers on one Docker host, each with its own guest, none disturbing another."""
    plan = [("unix", "tc"), ("spt", "bridge"), ("spt", "tc")]
    containers = [docker_host.container() for _ in plan]
    runs = [start(c, *uguest_argv(target, wiring, uguest, unikernel))
            for c, (target, wiring) in zip(containers, plan)]
    readies = [run.ready_json() for run in runs]
    assert [r["ipv4"] for r in readies] == ["%s/16" % c.ip4 for c in containers]
    for c in containers:
        assert_traffic(docker_host, c)
    # Each guest answered the traffic meant for it: one neighbour entry per guest MAC.
    macs = [host_neighbour(docker_host, c.ip4) for c in containers]
    assert macs == [r["mac"] for r in readies] and len(set(macs)) == len(macs)
