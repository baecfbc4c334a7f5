"""A unix-target test guest that also reaches out: it resolves and pings every --probe=IP.

    pinger --interface=TAP --probe=IP [--probe=IP...] [--probe-seconds=S] --ipv4=IP/N ...

The userspace guest (tests/support/guests/uguest.py, which it loads from $UGUEST, default
/unikernel/uguest, the unix image's unikernel) only answers, so it cannot show two unikernel
containers reaching each other. This one sends an ARP request and an ICMP echo to each probe
target from the tap, prints ONE JSON line with what answered (MAC, ARP and echo times, in ms),
then goes on answering ARP, ping and UDP as uguest does.
"""
import importlib.machinery
import importlib.util
import json
import os
import select
import socket
import struct
import sys
import time

ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0
ARP_REQUEST, ARP_REPLY = 1, 2


def load_uguest(path):
    loader = importlib.machinery.SourceFileLoader("uguest", path)
    spec = importlib.util.spec_from_loader("uguest", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def echo_request(ug, ident, seq):
    icmp = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq) + b"ukrun-pinger"
    return icmp[:2] + struct.pack("!H", ug.checksum(icmp)) + icmp[4:]


def arp_reply_from(ug, frame):
    """The sender's (IP, MAC) of an ARP reply, else None."""
    if len(frame) < 42 or struct.unpack("!H", frame[12:14])[0] != ug.ETH_P_ARP:
        return None
    op, sha, spa = struct.unpack("!H6s4s", frame[20:32])
    return (spa, sha) if op == ARP_REPLY else None


def echo_reply_from(ug, frame, ident):
    """The source IP of an ICMP echo reply carrying IDENT, else None."""
    if len(frame) < 42 or struct.unpack("!H", frame[12:14])[0] != ug.ETH_P_IP:
        return None
    pkt = frame[14:]
    ihl = (pkt[0] & 0xF) * 4
    if pkt[9] != socket.IPPROTO_ICMP or len(pkt) < ihl + 8:
        return None
    kind, _, _, got_ident, _ = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
    return pkt[12:16] if kind == ICMP_ECHO_REPLY and got_ident == ident else None


def probe(ug, guest, targets, seconds):
    """{ip: {"mac", "arp_ms", "echo_ms"}} for the TARGETS that answered within SECONDS.

    Requests are resent every 0.2 s (a peer guest may still be starting); every other frame
    goes to uguest's handler, so this guest answers while it asks.
    """
    ident = os.getpid() & 0xFFFF
    start = time.monotonic()
    found = {t: {} for t in targets}
    last_sent = 0.0
    while time.monotonic() - start < seconds and any("echo_ms" not in f for f in found.values()):
        now = time.monotonic()
        if now - last_sent >= 0.2:
            last_sent = now
            for seq, (target, got) in enumerate(found.items()):
                dst = socket.inet_aton(target)
                if "mac" not in got:
                    guest.send(ug.arp_frame(ARP_REQUEST, guest.mac, guest.ip, b"\0" * 6, dst,
                                            ug.BROADCAST))
                elif "echo_ms" not in got:
                    packet = ug.ipv4_packet(guest.ip, dst, socket.IPPROTO_ICMP,
                                            echo_request(ug, ident, seq))
                    got["sent"] = now
                    guest.send(bytes.fromhex(got["mac"].replace(":", "")) + guest.mac
                               + struct.pack("!H", ug.ETH_P_IP) + packet)
        ready, _, _ = select.select([guest.fd], [], [], 0.05)
        if not ready:
            continue
        frame = os.read(guest.fd, 65536)
        at = time.monotonic()
        arp, echo = arp_reply_from(ug, frame), echo_reply_from(ug, frame, ident)
        if arp and socket.inet_ntoa(arp[0]) in found:
            got = found[socket.inet_ntoa(arp[0])]
            if "mac" not in got:
                got.update(mac=":".join("%02x" % b for b in arp[1]),
                           arp_ms=round((at - start) * 1000, 1))
        elif echo and socket.inet_ntoa(echo) in found:
            got = found[socket.inet_ntoa(echo)]
            got.setdefault("echo_ms", round((at - got.pop("sent", at)) * 1000, 2))
        else:
            guest.handle(frame)
    for got in found.values():
        got.pop("sent", None)
    return found


def main(argv):
    ug = load_uguest(os.environ.get("UGUEST", "/unikernel/uguest"))
    tender, _, _, opts = ug.parse_argv(argv[1:])
    targets = [a.split("=", 1)[1] for a in opts["unknown"] if a.startswith("--probe=")]
    seconds = float(next((a.split("=", 1)[1] for a in opts["unknown"]
                          if a.startswith("--probe-seconds=")), 20))
    fd, how = ug.attach(tender, opts)
    mac, _ = ug.choose_mac(tender, opts)
    guest = ug.Guest(fd, mac, opts["net"], opts["udp_port"])
    guest.announce()
    found = probe(ug, guest, targets, seconds)
    print(json.dumps({"probes": found, "mac": mac, "ipv4": str(opts["net"]["ipv4"]),
                      "attach": how}), flush=True)
    while True:
        ready, _, _ = select.select([fd], [], [])
        if ready:
            guest.handle(os.read(fd, 65536))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
