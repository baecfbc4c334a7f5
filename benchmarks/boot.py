"""2. Boot to first packet: from the guest's start to its first answered ping.

Two guests: the userspace test guest (tests/support/guests/uguest.py, ARP/ICMP/UDP in Python) and the
Linux VM guest under qemu TCG (tests/support/guests/build_vm.py). Each is started
  - through `ukrun unix|qemu` (tc wiring) in a fresh container, and
  - by hand, with the same command line (`ukrun --dry-run` prints it), on a tap the bench wired
    beforehand with ip/tc (tap0 + ingress redirects both ways, eth0's address flushed),
so the difference is ukrun's share; with UKRUN_BENCH_BEFORE (common.before()) the userspace guest
is also started through that other ukrun, interleaved ("ukrun (before)"). The host namespace's
neighbour cache holds the container's
MAC, as a Docker host's does after the container's first packets; a raw ICMP socket there sends
an echo every 2 ms until the first answer (bounded). The container's own kernel is told to ignore
echo requests, as it would otherwise answer while ukrun is still starting.
"""
import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import time

from common import ROOT, WORKDIR, Host, before, deployed, in_netns, popen_in, stats, table

from guests import install_uguest, stop, vm_guest  # noqa: E402

PREWIRE = [
    ["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"],
    ["ip", "link", "set", "tap0", "up"],
    ["ip", "addr", "flush", "dev", "eth0"],
    ["tc", "qdisc", "add", "dev", "eth0", "ingress"],
    ["tc", "filter", "add", "dev", "eth0", "parent", "ffff:", "protocol", "all", "u32", "match",
     "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", "tap0"],
    ["tc", "qdisc", "add", "dev", "tap0", "ingress"],
    ["tc", "filter", "add", "dev", "tap0", "parent", "ffff:", "protocol", "all", "u32", "match",
     "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", "eth0"],
]


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def first_echo(sock, address, t0_ns, timeout, interval=0.002):
    """Echo requests every INTERVAL until one is answered: ms from T0_NS, or None."""
    ident = os.getpid() & 0xFFFF
    deadline = time.monotonic() + timeout
    seq = 0
    while time.monotonic() < deadline:
        seq = (seq + 1) & 0xFFFF
        head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        body = b"ukrun-bench"
        packet = struct.pack("!BBHHH", 8, 0, checksum(head + body), ident, seq) + body
        try:
            sock.sendto(packet, (address, 0))
        except OSError:
            pass   # no neighbour yet and the like: try again on the next tick
        until = time.monotonic() + interval
        while True:
            left = until - time.monotonic()
            if left <= 0:
                break
            if select.select([sock], [], [], left)[0]:
                data, peer = sock.recvfrom(2048)
                now = time.monotonic_ns()
                ihl = (data[0] & 15) * 4
                kind, _, _, rid = struct.unpack_from("!BBHH", data, ihl)
                if peer[0] == address and kind == 0 and rid == ident:
                    return (now - t0_ns) / 1e6
    return None


def dry_run_argv(c, argv):
    with in_netns(c.name):
        out = subprocess.run([deployed().ukrun] + argv[:1] + ["--dry-run"] + argv[1:],
                             capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError("ukrun --dry-run failed: %s" % out.stderr)
    return json.loads(out.stdout)["argv"]


def once(host, sock, guest, how):
    """ms to the first answer with the guest started HOW: "ukrun", "ukrun (before)" or "by
    hand"."""
    by_hand = how == "by hand"
    c = host.fresh()
    proc = None
    try:
        host.pin_neighbour(c)
        # Until ukrun moves the address, the container's own kernel would answer: only the
        # guest's answer counts.
        c.exec("sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1")
        argv = [a.replace("{mac}", c.mac) for a in guest["argv"]]
        if by_hand:
            argv = dry_run_argv(c, argv)
            for step in PREWIRE:
                c.exec(*step)
            c.exec("ethtool", "-K", "tap0", "gro", "off", "gso", "off", check=False)
        else:
            argv = [deployed("before" if how.endswith("(before)") else "after").ukrun] + argv
        log = open(os.path.join(WORKDIR, "boot-%s.log" % c.name), "wb")
        t0 = time.monotonic_ns()
        proc = popen_in(c.name, argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        took = first_echo(sock, c.ip4, t0, guest["timeout"])
        if took is None:
            with open(log.name, errors="replace") as fh:
                raise RuntimeError("%s: no answer within %ss\n%s"
                                   % (guest["name"], guest["timeout"], fh.read()[-2000:]))
        return took
    finally:
        if proc is not None:
            stop(proc)
        host.discard(c)


def guests():
    uguest = install_uguest(WORKDIR)
    # On unix the guest picks its own MAC unless told: give it eth0's, as a tender would.
    yield {"name": "uguest (Python, unix)", "runs": 9, "timeout": 20, "before": True,
           "argv": ["unix", uguest, "--mac={mac}"]}
    vm = vm_guest()
    yield {"name": "Linux VM (qemu TCG)", "runs": 5, "timeout": 90,
           "argv": ["qemu", "--mem", "256", "--tender-arg=-initrd", "--tender-arg=" + vm["initrd"],
                    vm["kernel"], "console=ttyS0", "quiet"]}


def main():
    host = Host()
    result = {}
    rows = []
    try:
        with in_netns(host.name):
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        try:
            for guest in guests():
                samples = {"ukrun": [], "by hand": []}
                if guest.get("before") and before() is not None:
                    samples["ukrun (before)"] = []
                for _ in range(guest["runs"]):
                    order = list(samples)
                    random.shuffle(order)
                    for how in order:
                        samples[how].append(once(host, sock, guest, how))
                r = {how: stats(v) for how, v in samples.items()}
                r["samples_ms"] = samples
                result[guest["name"]] = r
                h = r["by hand"]["median"]
                for how in [how for how in samples if how != "by hand"]:
                    u = r[how]["median"]
                    r["share_ms" if how == "ukrun" else "share_ms_before"] = u - h
                    rows.append([guest["name"] + ("" if how == "ukrun" else " " + how[6:]),
                                 "%d" % guest["runs"], "%.1f" % u, "%.1f" % h, "%+.1f" % (u - h),
                                 "%.2fx" % (u / h)])
        finally:
            sock.close()
    finally:
        host.delete()
    table("Boot to first answered ping (median ms; by hand = same argv on a tap pre-wired "
          "with ip/tc)", ["guest", "runs", "ukrun", "by hand", "ukrun share", "ratio"], rows)
    return result


if __name__ == "__main__":
    main()
