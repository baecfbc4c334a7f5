"""A guest in a thread of the test, on a tap: answers ARP and ping as a unikernel's stack would."""
import os
import select
import struct
import subprocess
import threading

from nsutil import in_netns
from ukrun.kernel.tap import open_tap

GUEST_IP = "172.30.0.2"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def answer(frame: bytes, mac: bytes, ip: bytes, arp: bool):
    """What a minimal guest sends back: ARP replies (if ``arp``) and ICMP echo replies."""
    if frame[0:6] not in (mac, b"\xff" * 6) or len(frame) < 42:
        return None  # a real guest's NIC drops frames for other MACs
    peer, kind = frame[6:12], frame[12:14]
    if kind == b"\x08\x06" and arp and frame[20:22] == b"\0\1" and frame[38:42] == ip:
        body = b"\0\1\x08\0\6\4\0\2" + mac + ip + frame[22:28] + frame[28:32]
        return peer + mac + kind + body
    if kind == b"\x08\x00" and frame[23] == 1:
        header_len = (frame[14] & 0x0F) * 4
        icmp = frame[14 + header_len:]
        if icmp[0] != 8 or frame[30:34] != ip:
            return None
        reply = b"\0\0\0\0" + icmp[4:]
        reply = reply[:2] + struct.pack("!H", _checksum(reply)) + reply[4:]
        header = bytearray(frame[14:14 + header_len])
        header[12:16], header[16:20] = frame[30:34], frame[26:30]
        header[8], header[10:12] = 64, b"\0\0"
        header[10:12] = struct.pack("!H", _checksum(bytes(header)))
        return peer + mac + kind + bytes(header) + reply
    return None


class Guest:
    """A guest on the tap, in a thread: answers for ``ip`` with ``mac``."""

    def __init__(self, netns, tap, mac, arp=True, ip=GUEST_IP):
        with in_netns(netns):
            self.tap = open_tap(tap)
        self.mac, self.arp = bytes.fromhex(mac.replace(":", "")), arp
        self.ip = bytes(int(x) for x in ip.split("."))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            if select.select([self.tap.fd], [], [], 0.1)[0]:
                reply = answer(os.read(self.tap.fd, 65536), self.mac, self.ip, self.arp)
                if reply:
                    os.write(self.tap.fd, reply)

    def close(self):
        self.stop.set()
        self.thread.join()
        self.tap.close()


def ping(docker_host, ip=GUEST_IP):
    return subprocess.run(["ip", "netns", "exec", docker_host.name, "ping", "-c", "1", "-W", "3",
                           ip], capture_output=True, text=True).returncode == 0
