"""`make demo`: ukrun handing a docker-like container's network to a guest, shown from the host.

Creates a namespace playing the Docker host (bridge docker0, 172.30.0.1/16) and containers
like the ones Docker makes (veth eth0 172.30.0.x/16 + default route), runs
  1. the userspace test guest through `ukrun hvt` (or `ukrun unix` without /dev/kvm),
  2. a Linux VM guest through `ukrun qemu` (TCG; skipped when qemu is missing),
pings each at the container's address from the host side and talks UDP / HTTP to it, then
removes everything it made, even on failure or Ctrl-C. Exit status 0 only when every guest
it started answered. Never touches the machine's own network namespace.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SUPPORT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SUPPORT)

from guests import (LineReader, http_get, install_dummy_unikernel, install_uguest,  # noqa: E402
                    ping, stop, udp_echo, vm_guest)
from nsutil import DockerHost, kvm_usable, unique  # noqa: E402

UKRUN = os.path.join(os.path.dirname(sys.executable), "ukrun")


def say(msg):
    print(msg, flush=True)


def ms(seconds):
    return "%.0f ms" % (seconds * 1000) if seconds < 1 else "%.1f s" % seconds


def ping_rtt(ns, address):
    """Round-trip time of one echo, as ping measured it (ms), after the guest answered once."""
    out = ns.exec("ping", "-c", "3", "-i", "0.2", "-W", "2", address, check=False).stdout
    times = [float(t) for t in re.findall(r"time=([\d.]+) ms", out)]
    return "%.2f ms" % (sum(times) / len(times)) if times else "lost"


def start_ukrun(container, workdir, argv):
    err = open(os.path.join(workdir, "ukrun-%s.err" % container.name), "wb")
    proc = container.popen(UKRUN, *argv, stderr=err)
    err.close()
    return proc, LineReader(proc), err.name


def explain(errlog):
    with open(errlog, errors="replace") as fh:
        return fh.read().strip()


def demo_userspace(host, workdir, procs):
    container = host.container()
    uguest = install_uguest(workdir)
    if kvm_usable():
        target = "hvt"
        argv = ["hvt", "--tender", uguest, install_dummy_unikernel(workdir)]
    else:
        target, argv = "unix", ["unix", uguest]
    say("[1] ukrun %s: the userspace test guest (%s) in container %s (eth0 %s, %s/16)"
        % (target, "standing in for solo5-hvt" if target == "hvt" else "a MirageOS unix stand-in",
           container.name, container.mac, container.ip4))
    began = time.monotonic()
    proc, out, errlog = start_ukrun(container, workdir, argv)
    procs.append(proc)
    try:
        ready = out.ready_json(timeout=20)
    except AssertionError as e:
        raise AssertionError("%s\n%s" % (e, explain(errlog))) from None
    say("    guest ready after %s: address %s, gateway %s, MAC %s, attached to %s"
        % (ms(time.monotonic() - began), ready["ipv4"], ready["gateway"], ready["mac"],
           ready["attach"].get("tap") or "fd %s" % ready["attach"].get("fd")))
    say("    capabilities left: CapEff=%s CapBnd=%s NoNewPrivs=%s"
        % (ready["status"]["CapEff"], ready["status"]["CapBnd"], ready["status"]["NoNewPrivs"]))
    took = ping(host, container.ip4, timeout=10)
    say("    host -> %s ping: first answer after %s, rtt %s"
        % (container.ip4, ms(took), ping_rtt(host, container.ip4)))
    took = udp_echo(host.name, container.ip4, 7, b"hello from the docker host", timeout=10)
    say("    host -> %s UDP echo (port 7): answered in %s" % (container.ip4, ms(took)))


def demo_vm(host, workdir, procs):
    if not shutil.which("qemu-system-x86_64"):
        say("[2] skipped: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
        return
    began = time.monotonic()
    vm = vm_guest()
    say("[2] ukrun qemu: a Linux VM guest (%s + busybox initramfs, built in %s, cached in "
        ".cache/guests)" % (vm["package"], ms(time.monotonic() - began)))
    container = host.container()
    began = time.monotonic()
    proc, out, errlog = start_ukrun(container, workdir, [
        "qemu", "--mem", "256", "--tender-arg=-initrd", "--tender-arg=" + vm["initrd"],
        vm["kernel"], "console=ttyS0", "quiet"])
    procs.append(proc)
    try:
        ready = out.vm_ready(timeout=60)
    except AssertionError as e:
        raise AssertionError("%s\n%s" % (e, explain(errlog))) from None
    say("    Linux booted under TCG in %s: eth0 %s, gateway %s, MAC %s (the container's)"
        % (ms(time.monotonic() - began), ready["ip"], ready["gw"], ready["mac"]))
    took = ping(host, container.ip4, timeout=10)
    say("    host -> %s ping: first answer after %s, rtt %s"
        % (container.ip4, ms(took), ping_rtt(host, container.ip4)))
    body, took = http_get(host.name, container.ip4, timeout=20)
    say("    host -> http://%s:8080/ answered in %s: %r" % (container.ip4, ms(took), body.strip()))


def main():
    if os.geteuid() != 0:
        say("ukrun demo: needs root (it creates network namespaces)")
        return 77
    if not os.path.exists(UKRUN):
        say("ukrun demo: %s missing: run `make build` first" % UKRUN)
        return 1
    # Ctrl-C and `kill` both end in the finally below, which removes what was made.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="ukrun-demo-")
    procs, host = [], None
    try:
        host = DockerHost(unique("ukdemo"))
        say("ukrun demo: namespace %s plays the Docker host (docker0 172.30.0.1/16)" % host.name)
        demo_userspace(host, workdir, procs)
        demo_vm(host, workdir, procs)
        say("ok: every guest answered (%s in all)" % ms(time.monotonic() - began))
        return 0
    except (AssertionError, OSError, RuntimeError, subprocess.SubprocessError) as e:
        say("FAILED: %s" % e)
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        for proc in procs:
            stop(proc)
        if host is not None:
            host.delete()   # its containers too, and any process left inside
        shutil.rmtree(workdir, ignore_errors=True)
        say("cleaned up: namespaces and temporary files removed")


if __name__ == "__main__":
    sys.exit(main())
