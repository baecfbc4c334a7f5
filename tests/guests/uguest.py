"""A userspace test guest: a MirageOS unix unikernel and a Solo5 tender in one Python program.

Command lines it understands (what ukrun builds for each target):
    unix:     uguest --interface=TAP ARGS --ipv4=IP/N [--ipv4-gateway=GW]
    hvt/spt:  uguest [--mem=MB] --net:NAME=TAP|@FD --net-mac:NAME=MAC [...] -- UNIKERNEL ARGS --ipv4=...
    ukvm:     uguest --net=@FD -- UNIKERNEL ARGS --ipv4=...
Guest ARGS it knows: --mac=MAC (unix: there is no tender to set one), --no-garp (stay silent at
start, to test MAC inheritance), --exit-after=SECONDS (container restart tests), --udp-port=N.

It attaches to the tap by name (TUNSETIFF IFF_TAP|IFF_NO_PI, which needs no capability on a
persistent tap) or uses the inherited fd, answers ARP, ICMP echo and UDP echo (port 7), and
prints ONE JSON line on stdout once ready: what it was given and what it holds (capabilities,
no_new_privs, open fds). Logs go to stderr. Stdlib only, plus ukrun's compiled tap helper.
"""
import errno
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ARP, ETH_P_IP = 0x0806, 0x0800   # protocol numbers on the wire, not kernel API
BROADCAST = b"\xff" * 6
UDP_ECHO_PORT = 7


def log(msg):
    print("uguest[%d]: %s" % (os.getpid(), msg), file=sys.stderr, flush=True)


def open_fds():
    """Descriptors open right now, with what they point at (the listing's own fd left out)."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink("/proc/self/fd/%s" % name)
        except OSError:
            pass   # the directory fd listdir used, already closed
    return fds


def proc_status():
    wanted = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Uid")
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in wanted:
                out[key] = value.strip()
    return out


def parse_argv(argv):
    """Split a command line into tender options, the unikernel and its args (see module doc)."""
    tender, guest_args, unikernel = {}, list(argv), None
    if "--" in argv:
        cut = argv.index("--")
        # Only a tender has `--net...` before `--`; for unix a `--` is just a separator.
        if any(a.startswith("--net") or a.startswith("--mem") for a in argv[:cut]):
            tender = {"args": argv[:cut], "nets": {}, "macs": {}, "mem": None, "other": []}
            for arg in argv[:cut]:
                key, _, value = arg.partition("=")
                if key.startswith("--net:"):
                    tender["nets"][key[len("--net:"):]] = value
                elif key.startswith("--net-mac:"):
                    tender["macs"][key[len("--net-mac:"):]] = value
                elif key == "--net":   # Solo5 ukvm's form: --net=@FD
                    tender["nets"][""] = value
                elif key == "--mem":
                    tender["mem"] = int(value)
                else:
                    tender["other"].append(arg)
            unikernel, guest_args = (argv[cut + 1:] + [None])[0], argv[cut + 2:]
        else:
            guest_args = argv[:cut] + argv[cut + 1:]
    opts = {"ipv4": None, "gateway": None, "interface": None, "mac": None, "garp": True,
            "exit_after": None, "udp_port": UDP_ECHO_PORT, "unknown": []}
    for arg in guest_args:
        key, _, value = arg.partition("=")
        if key == "--ipv4":
            opts["ipv4"] = value
        elif key == "--ipv4-gateway":
            opts["gateway"] = value
        elif key == "--interface":
            opts["interface"] = value
        elif key == "--mac":
            opts["mac"] = value.lower()
        elif key == "--no-garp":
            opts["garp"] = False
        elif key == "--exit-after":
            opts["exit_after"] = float(value)
        elif key == "--udp-port":
            opts["udp_port"] = int(value)
        else:
            opts["unknown"].append(arg)
    return tender, unikernel, guest_args, opts


def attach_by_name(name):
    """Open the tap NAME as a Solo5 tender does: TUNSETIFF with IFF_TAP | IFF_NO_PI.

    ukrun's C helper does exactly that ioctl (its numbers come from the kernel headers).
    Like Solo5, refuse a missing tap rather than have TUNSETIFF create one.
    """
    from ukrun._core import ffi, lib

    try:
        socket.if_nametoindex(name)
    except OSError:
        raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), "tap %s" % name) from None
    actual = ffi.new("char[]", lib.IFNAMSIZ)
    fd = lib.ukrun_tap_open(name.encode(), 0, actual)
    if fd < 0:
        err = ffi.errno
        raise OSError(err, os.strerror(err), "attaching tap %s" % name)
    if ffi.string(actual).decode() != name:
        os.close(fd)
        raise OSError("kernel attached %r, not %r" % (ffi.string(actual), name))
    return fd


def choose_mac(tender, opts):
    if tender and tender["macs"]:
        return next(iter(tender["macs"].values())).lower(), "net-mac"
    if opts["mac"]:
        return opts["mac"], "arg"
    octets = [random.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] & 0xFC) | 0x02   # unicast, locally administered
    return ":".join("%02x" % o for o in octets), "random"


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def arp_frame(op, src_mac, src_ip, dst_mac, dst_ip, eth_dst):
    arp = struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, op, src_mac, src_ip, dst_mac, dst_ip)
    return eth_dst + src_mac + struct.pack("!H", ETH_P_ARP) + arp


def ipv4_packet(src, dst, proto, payload, ident=0):
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0, 64, proto, 0,
                         src, dst)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


class Guest:
    def __init__(self, fd, mac, ip, udp_port):
        self.fd, self.mac, self.ip, self.udp_port = fd, bytes.fromhex(mac.replace(":", "")), ip, udp_port
        self.seen = {"arp": 0, "icmp": 0, "udp": 0, "other": 0}

    def send(self, frame):
        os.write(self.fd, frame.ljust(60, b"\0"))   # Ethernet minimum frame size

    def gratuitous_arp(self):
        self.send(arp_frame(1, self.mac, self.ip, b"\0" * 6, self.ip, BROADCAST))

    def handle(self, frame):
        if len(frame) < 14:
            return
        dst, src, ethertype = frame[:6], frame[6:12], struct.unpack("!H", frame[12:14])[0]
        if dst not in (self.mac, BROADCAST):
            return
        if ethertype == ETH_P_ARP:
            self.handle_arp(src, frame[14:])
        elif ethertype == ETH_P_IP:
            self.handle_ip(src, frame[14:])

    def note(self, kind):
        if self.seen[kind] == 0:
            log("first %s packet answered" % kind)
        self.seen[kind] += 1

    def handle_arp(self, eth_src, arp):
        if len(arp) < 28:
            return
        _, ptype, _, _, op, sha, spa, _, tpa = struct.unpack("!HHBBH6s4s6s4s", arp[:28])
        if op == 1 and ptype == ETH_P_IP and tpa == self.ip:
            self.note("arp")
            self.send(arp_frame(2, self.mac, self.ip, sha, spa, eth_src))

    def handle_ip(self, eth_src, pkt):
        if len(pkt) < 20 or pkt[0] >> 4 != 4:
            return
        ihl = (pkt[0] & 0xF) * 4
        total, ident, frag = struct.unpack("!HHH", pkt[2:8])
        proto, src, dst = pkt[9], pkt[12:16], pkt[16:20]
        if dst != self.ip or frag & 0x3FFF:   # not ours, or a fragment: not handled
            return
        body = pkt[ihl:total]
        reply = None
        if proto == socket.IPPROTO_ICMP and len(body) >= 8 and body[0] == 8:
            icmp = b"\0\0\0\0" + body[4:]   # type 0 echo reply, same id/seq/payload
            icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
            reply, kind = icmp, "icmp"
        elif proto == socket.IPPROTO_UDP and len(body) >= 8:
            sport, dport, length = struct.unpack("!HHH", body[:6])
            if dport == self.udp_port:
                data = body[8:length]
                # UDP checksum 0 means "none" in IPv4; the receiver accepts it.
                reply, kind = struct.pack("!HHHH", dport, sport, 8 + len(data), 0) + data, "udp"
        if reply is None:
            self.seen["other"] += 1
            return
        self.note(kind)
        self.send(eth_src + self.mac + struct.pack("!H", ETH_P_IP)
                  + ipv4_packet(self.ip, src, proto, reply, ident))


def attach(tender, opts):
    """Returns (fd, how) where how says what the guest attached to, for the ready line."""
    if tender:
        if not tender["nets"]:
            raise SystemExit("uguest: tender mode needs --net:NAME=TAP or --net=@FD")
        name, target = next(iter(tender["nets"].items()))
    else:
        name, target = None, opts["interface"] or "tap0"   # MirageOS unix's default device
    how = {"net_name": name}
    if target.startswith("@"):
        fd = int(target[1:])
        os.fstat(fd)   # EBADF here when the fd was not inherited
        how.update(fd=fd, fd_target=os.readlink("/proc/self/fd/%d" % fd))
    else:
        fd = attach_by_name(target)
        how.update(tap=target)
    return fd, how


def main(argv):
    inherited = open_fds()   # before this program opens anything of its own
    status = proc_status()
    tender, unikernel, guest_args, opts = parse_argv(argv[1:])
    if not opts["ipv4"]:
        raise SystemExit("uguest: no --ipv4=ADDR/N in the guest's arguments")
    ip = socket.inet_aton(opts["ipv4"].split("/")[0])
    try:
        fd, how = attach(tender, opts)
    except OSError as e:
        log("cannot attach: %s" % e)
        return 1
    mac, mac_source = choose_mac(tender, opts)
    guest = Guest(fd, mac, ip, opts["udp_port"])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if opts["garp"]:
        guest.gratuitous_arp()
    log("attached %s as %s mac %s" % (how, opts["ipv4"], mac))
    print(json.dumps({
        "ready": True, "pid": os.getpid(), "argv": argv,
        "mode": ("ukvm" if "" in tender["nets"] else "tender") if tender else "unix",
        "tender": tender or None, "unikernel": unikernel, "guest_args": guest_args,
        "ipv4": opts["ipv4"], "gateway": opts["gateway"], "mac": mac, "mac_source": mac_source,
        "attach": how, "garp": opts["garp"], "udp_port": opts["udp_port"],
        "status": status, "fds": {str(k): v for k, v in sorted(inherited.items())},
        "unknown_args": opts["unknown"],
    }), flush=True)
    deadline = time.monotonic() + opts["exit_after"] if opts["exit_after"] else None
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if deadline is not None and timeout == 0:
            log("exit-after reached; answered %s" % guest.seen)
            return 0
        ready, _, _ = select.select([fd], [], [], timeout)
        if ready:
            try:
                guest.handle(os.read(fd, 65536))
            except OSError as e:
                log("tap read failed: %s" % e)
                return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
