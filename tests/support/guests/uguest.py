"""A userspace test guest: a MirageOS unix unikernel and a Solo5 tender in one Python program.

Command lines it understands (what ukrun builds for each target):
    unix:     uguest --interface=TAP ARGS NETWORK-WORDS
    hvt/spt:  uguest [--mem=MB] --net:NAME=TAP|@FD --net-mac:NAME=MAC [...] -- UNIKERNEL ARGS NETWORK-WORDS
    ukvm:     uguest --net=@FD -- UNIKERNEL ARGS NETWORK-WORDS
Guest ARGS it knows: --mac=MAC (unix: there is no tender to set one), --no-garp (stay silent at
start, to test MAC inheritance), --exit-after=SECONDS (container restart tests), --udp-port=N.

NETWORK-WORDS, in exactly one of the formats ukrun can write (mixing two is an error, as is a
malformed value, so a test sees ukrun's mistakes instead of a guest that guesses):
    mirage         --ipv4=A/N --ipv4-gateway=GW --ipv6=A/N --ipv6-gateway=GW --ipv4-only=BOOL
                   --ipv6-only=BOOL --accept-router-advertisements=BOOL --dns_servers=S,S
                   --resolver=S,S   (S: IP, or MirageOS's udp:IP / tcp:IP[:PORT] / tls:IP[...])
    unikraft       netdev.ip=A/N[:GW[:DNS0[:DNS1[:HOSTNAME[:DOMAIN]]]]]
    unikraft-lwip  netdev.ipv4_addr=A netdev.ipv4_subnet_mask=M [netdev.ipv4_gw_addr=GW]
    linux          ip=CLIENT:SERVER:GW:NETMASK:HOSTNAME:DEVICE:off:DNS0:DNS1[:NTP0]
IPv4 is on when an IPv4 address is given (and not --ipv6-only=true); IPv6 is on when an IPv6
address or gateway or --ipv6-only=true is given (and not --ipv4-only=true): then the guest also
holds the link-local address its MAC gives by EUI-64. A guest given IPv4 only stays off IPv6.

It attaches to the tap by name (TUNSETIFF IFF_TAP|IFF_NO_PI, which needs no capability on a
persistent tap) or uses the inherited fd, answers ARP, ICMP echo and UDP echo (port 7), and over
IPv6 neighbour solicitation, ICMPv6 echo and UDP echo; at start it announces itself (gratuitous
ARP, unsolicited neighbour advertisements) unless --no-garp. It prints ONE JSON line on stdout
once ready: what it was given, the network it took from it, and what it holds (capabilities,
no_new_privs, open fds). Logs go to stderr. Stdlib only, plus ukrun's compiled tap helper; one
file, because tests copy it as the unikernel (or tender) into directories and images.
"""
import errno
import ipaddress
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

# Numbers on the wire (IEEE ethertypes, IANA protocol and ICMPv6 numbers), not kernel API.
ETH_P_ARP, ETH_P_IP, ETH_P_IPV6 = 0x0806, 0x0800, 0x86DD
PROTO_ICMP, PROTO_UDP, PROTO_ICMPV6 = 1, 17, 58
ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY = 128, 129
ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT = 135, 136
ND_OPT_SOURCE_LL, ND_OPT_TARGET_LL = 1, 2
NA_SOLICITED, NA_OVERRIDE = 0x40000000, 0x20000000
BROADCAST = b"\xff" * 6
ALL_NODES = ipaddress.IPv6Address("ff02::1").packed
UNSPECIFIED = bytes(16)
UDP_ECHO_PORT = 7
# What MirageOS takes when it is given no --ipv4 and not --ipv6-only=true.
MIRAGE_DEFAULT_IPV4 = "10.0.0.2/24"

MIRAGE_WORDS = ("--ipv4", "--ipv4-gateway", "--ipv6", "--ipv6-gateway", "--ipv4-only",
                "--ipv6-only", "--accept-router-advertisements", "--dns_servers", "--resolver")
FORMAT_OF = dict.fromkeys(MIRAGE_WORDS, "mirage")
FORMAT_OF.update({"netdev.ip": "unikraft", "netdev.ipv4_addr": "unikraft-lwip",
                  "netdev.ipv4_subnet_mask": "unikraft-lwip",
                  "netdev.ipv4_gw_addr": "unikraft-lwip", "ip": "linux"})


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


# --- the network words ------------------------------------------------------------------------

class ConfigError(ValueError):
    """Network words the guest cannot take; the message names the word."""


def empty_network(fmt):
    return {"format": fmt, "ipv4": None, "gateway": None, "ipv6": None, "gateway6": None,
            "dns": [], "ipv4_only": False, "ipv6_only": False, "accept_ra": None,
            "hostname": None, "domain": None, "device": None, "warnings": []}


def _parsed(kind, value, word):
    """ipaddress's KIND(VALUE), as a ConfigError naming WORD. Zone ids ("%eth0") are refused:
    none of the formats has them."""
    if "%" in value:
        raise ConfigError("%s: a zone id has no place here: %r" % (word, value))
    try:
        return kind(value)
    except ValueError as e:
        raise ConfigError("%s: %s" % (word, e)) from None


def ipv4_interface(value, word):
    if "/" not in value:
        raise ConfigError("%s: %r has no /PREFIX" % (word, value))
    return _parsed(ipaddress.IPv4Interface, value, word)


def ipv6_interface(value, word):
    if "/" not in value:
        raise ConfigError("%s: %r has no /PREFIX" % (word, value))
    return _parsed(ipaddress.IPv6Interface, value, word)


def netmask_prefix(mask, word):
    """The prefix length of a dotted netmask; non-contiguous masks are refused."""
    inverted = ~int(_parsed(ipaddress.IPv4Address, mask, word)) & 0xFFFFFFFF
    if inverted & (inverted + 1):
        raise ConfigError("%s: %r is not a contiguous netmask" % (word, mask))
    return 32 - inverted.bit_length()


def classful_prefix(address):
    """The kernel's ip= default netmask when none is given: the address's old class."""
    first = address.packed[0]
    return 8 if first < 128 else 16 if first < 192 else 24


def parse_bool(value, word):
    if value not in ("true", "false"):   # what Cmdliner's Arg.bool accepts
        raise ConfigError("%s: expected true or false, not %r" % (word, value))
    return value == "true"


def parse_nameserver(entry, word):
    """The address of one MirageOS nameserver: IP, udp:IP[:PORT], tcp:IP[:PORT],
    tls:IP[:PORT][!HOSTNAME]!AUTHENTICATOR, with an IPv6 IP in brackets when a port follows."""
    proto, sep, rest = entry.partition(":")
    if not (sep and proto in ("udp", "tcp", "tls")):
        rest = entry
    if proto == "tls":
        rest = rest.split("!", 1)[0]
    port = None
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ConfigError("%s: bad nameserver %r" % (word, entry))
        port = tail[1:] if tail else None
    else:
        host = rest
        try:
            ipaddress.ip_address(rest)
        except ValueError:
            host, _, port = rest.rpartition(":")
    if port is not None and not (port.isdigit() and port.isascii() and 0 < int(port) < 65536):
        raise ConfigError("%s: bad port in nameserver %r" % (word, entry))
    return _parsed(ipaddress.ip_address, host, word)


def parse_mirage(words):
    net = empty_network("mirage")
    for key, value in words.items():
        word = "%s=%s" % (key, value)
        if key == "--ipv4":
            net["ipv4"] = ipv4_interface(value, word)
        elif key == "--ipv4-gateway":
            net["gateway"] = _parsed(ipaddress.IPv4Address, value, word)
        elif key == "--ipv6":
            net["ipv6"] = ipv6_interface(value, word)
        elif key == "--ipv6-gateway":
            net["gateway6"] = _parsed(ipaddress.IPv6Address, value, word)
        elif key == "--ipv4-only":
            net["ipv4_only"] = parse_bool(value, word)
        elif key == "--ipv6-only":
            net["ipv6_only"] = parse_bool(value, word)
        elif key == "--accept-router-advertisements":
            net["accept_ra"] = parse_bool(value, word)
    for key in ("--dns_servers", "--resolver"):
        if key in words:
            entries = words[key].split(",")
            if "" in entries:
                raise ConfigError("%s=%s: an empty entry" % (key, words[key]))
            net["dns"] += [parse_nameserver(e, "%s=%s" % (key, words[key])) for e in entries]
    if net["ipv4_only"] and net["ipv6_only"]:
        raise ConfigError("--ipv4-only=true and --ipv6-only=true together leave no stack")
    if net["ipv4"] is None and not net["ipv6_only"]:
        net["warnings"].append("MirageOS would take its default --ipv4=%s here; IPv6-only "
                               "needs --ipv6-only=true" % MIRAGE_DEFAULT_IPV4)
    return net


def _fields(value, word, most):
    fields = value.split(":")
    if len(fields) > most:
        raise ConfigError("%s: more than %d fields" % (word, most))
    return fields + [""] * (most - len(fields))


def parse_unikraft(words):
    """netdev.ip=CIDR[:GW[:DNS0[:DNS1[:HOSTNAME[:DOMAIN]]]]] (lib/uknetdev), one device."""
    value = words["netdev.ip"]
    word = "netdev.ip=" + value
    cidr, gw, dns0, dns1, hostname, domain = _fields(value, word, 6)
    net = empty_network("unikraft")
    net["ipv4"] = ipv4_interface(cidr, word)
    net["gateway"] = _parsed(ipaddress.IPv4Address, gw, word) if gw else None
    # IPv4 servers only: the fields are colon-separated.
    net["dns"] = [_parsed(ipaddress.IPv4Address, d, word) for d in (dns0, dns1) if d]
    net["hostname"], net["domain"] = hostname or None, domain or None
    return net


def parse_unikraft_lwip(words):
    """The older lwIP words: netdev.ipv4_addr, netdev.ipv4_subnet_mask, netdev.ipv4_gw_addr."""
    missing = [k for k in ("netdev.ipv4_addr", "netdev.ipv4_subnet_mask") if k not in words]
    if missing:
        raise ConfigError("%s= missing beside the other netdev.ipv4_ words" % missing[0])
    addr = _parsed(ipaddress.IPv4Address, words["netdev.ipv4_addr"],
                   "netdev.ipv4_addr=" + words["netdev.ipv4_addr"])
    mask = words["netdev.ipv4_subnet_mask"]
    prefix = netmask_prefix(mask, "netdev.ipv4_subnet_mask=" + mask)
    net = empty_network("unikraft-lwip")
    net["ipv4"] = ipaddress.IPv4Interface((addr, prefix))
    gw = words.get("netdev.ipv4_gw_addr")
    if gw is not None:
        net["gateway"] = _parsed(ipaddress.IPv4Address, gw, "netdev.ipv4_gw_addr=" + gw)
    return net


def parse_linux(words):
    """The kernel's ip=CLIENT:SERVER:GW:NETMASK:HOSTNAME:DEVICE:AUTOCONF:DNS0:DNS1:NTP0, static
    only (AUTOCONF off, none or empty): there is no DHCP server to ask in these tests."""
    value = words["ip"]
    word = "ip=" + value
    if value in ("on", "any", "dhcp", "bootp", "rarp", "both", "off", "none"):
        # The kernel reads a lone method name as the AUTOCONF field.
        raise ConfigError("%s: asks for autoconfiguration or none; uguest takes static words "
                          "only" % word)
    client, _server, gw, mask, hostname, device, autoconf, dns0, dns1, _ntp = \
        _fields(value, word, 10)
    if autoconf not in ("", "off", "none") or not client:
        raise ConfigError("%s: asks for autoconfiguration; uguest takes static words only" % word)
    address = _parsed(ipaddress.IPv4Address, client, word)
    prefix = netmask_prefix(mask, word) if mask else classful_prefix(address)
    net = empty_network("linux")
    net["ipv4"] = ipaddress.IPv4Interface((address, prefix))
    net["gateway"] = _parsed(ipaddress.IPv4Address, gw, word) if gw else None
    net["dns"] = [_parsed(ipaddress.IPv4Address, d, word) for d in (dns0, dns1) if d]
    net["hostname"], net["device"] = hostname or None, device or None
    return net


PARSERS = {"mirage": parse_mirage, "unikraft": parse_unikraft,
           "unikraft-lwip": parse_unikraft_lwip, "linux": parse_linux}


def parse_network(args):
    """(network, the other args) from a guest's args; ConfigError when the network words are
    missing, repeated, malformed or in more than one format."""
    words, rest = {}, []
    for arg in args:
        key, eq, value = arg.partition("=")
        if key not in FORMAT_OF:
            rest.append(arg)
            continue
        if not eq:
            raise ConfigError("%s needs a value (%s=...)" % (key, key))
        if key in words:
            raise ConfigError("%s given twice" % key)
        words[key] = value
    formats = sorted({FORMAT_OF[k] for k in words})
    if not formats:
        raise ConfigError("no network configuration in the guest's arguments (--ipv4=, "
                          "--ipv6=, netdev.ip=, netdev.ipv4_addr=, ip=)")
    if len(formats) > 1:
        raise ConfigError("network words in several formats at once: %s" % ", ".join(formats))
    net = PARSERS[formats[0]](words)
    if net["ipv6_only"]:
        net["ipv4"] = None
    if net["ipv4_only"] or not (net["ipv6"] or net["gateway6"] or net["ipv6_only"]):
        net["ipv6"] = net["gateway6"] = None
    if net["ipv4"] is None:
        net["gateway"] = None
    return net, rest


def parse_argv(argv):
    """Split a command line into tender options, the unikernel, its args and what they say
    (see module doc); ConfigError for bad network words."""
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
    net, rest = parse_network(guest_args)
    opts = {"net": net, "interface": None, "mac": None, "garp": True,
            "exit_after": None, "udp_port": UDP_ECHO_PORT, "unknown": []}
    for arg in rest:
        key, _, value = arg.partition("=")
        if key == "--interface":
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


def network_report(net):
    """The network as the ready line shows it: strings, lists and booleans."""
    def text(value):
        return None if value is None else str(value)

    report = {k: text(net[k]) for k in ("ipv4", "gateway", "ipv6", "gateway6")}
    report.update(format=net["format"], dns=[str(d) for d in net["dns"]],
                  ipv4_only=net["ipv4_only"], ipv6_only=net["ipv6_only"],
                  accept_ra=net["accept_ra"], hostname=net["hostname"], domain=net["domain"],
                  device=net["device"], warnings=net["warnings"])
    return report


# --- the tap ----------------------------------------------------------------------------------

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


# --- packets ----------------------------------------------------------------------------------

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def checksum6(src, dst, proto, message):
    """The checksum of an ICMPv6 or UDP message over the IPv6 pseudo-header (RFC 8200 8.1)."""
    return checksum(src + dst + struct.pack("!IxxxB", len(message), proto) + message)


def with_checksum(message, offset, value):
    return message[:offset] + struct.pack("!H", value) + message[offset + 2:]


def eui64_link_local(mac):
    """fe80::/64 with the interface identifier a MAC gives by modified EUI-64 (RFC 4291 2.5.1)."""
    iid = bytes([mac[0] ^ 0x02]) + mac[1:3] + b"\xff\xfe" + mac[3:6]
    return b"\xfe\x80" + bytes(6) + iid


def solicited_node(address):
    return ipaddress.IPv6Address("ff02::1:ff00:0").packed[:13] + address[13:]


def multicast_mac(group):
    return b"\x33\x33" + group[12:]


def is_link_local(address):
    return address[:2] == b"\xfe\x80"


def arp_frame(op, src_mac, src_ip, dst_mac, dst_ip, eth_dst):
    arp = struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, op, src_mac, src_ip, dst_mac, dst_ip)
    return eth_dst + src_mac + struct.pack("!H", ETH_P_ARP) + arp


def ipv4_packet(src, dst, proto, payload, ident=0):
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0, 64, proto, 0,
                         src, dst)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def ipv6_packet(src, dst, proto, payload, hop_limit=64):
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), proto, hop_limit, src, dst) + payload


def neighbour_advert(mac, target, src, dst, flags):
    na = struct.pack("!BBHI16s", ND_NEIGHBOR_ADVERT, 0, 0, flags, target)
    na += struct.pack("!BB6s", ND_OPT_TARGET_LL, 1, mac)
    return ipv6_packet(src, dst, PROTO_ICMPV6,
                       with_checksum(na, 2, checksum6(src, dst, PROTO_ICMPV6, na)), 255)


def nd_options(data):
    """{type: body} of neighbour discovery options, or None when one has length 0 or overruns
    (RFC 4861 4.6: such a packet is dropped)."""
    options, at = {}, 0
    while at + 2 <= len(data):
        kind, units = data[at], data[at + 1]
        if units == 0 or at + 8 * units > len(data):
            return None
        options.setdefault(kind, data[at + 2:at + 8 * units])
        at += 8 * units
    return options


class Guest:
    def __init__(self, fd, mac, net, udp_port):
        self.fd, self.mac, self.udp_port = fd, bytes.fromhex(mac.replace(":", "")), udp_port
        self.ip = net["ipv4"].ip.packed if net["ipv4"] else None
        self.ip6 = []   # unicast addresses; the link-local one first
        if net["ipv6"] or net["gateway6"] or net["ipv6_only"]:
            self.ip6.append(eui64_link_local(self.mac))
            if net["ipv6"] and net["ipv6"].ip.packed not in self.ip6:
                self.ip6.append(net["ipv6"].ip.packed)
        self.groups6 = {ALL_NODES} | {solicited_node(a) for a in self.ip6}
        self.seen = {"arp": 0, "icmp": 0, "udp": 0, "ndp": 0, "icmp6": 0, "udp6": 0,
                     "other": 0, "bad": 0}

    @property
    def link_local(self):
        return str(ipaddress.IPv6Address(self.ip6[0])) if self.ip6 else None

    def send(self, frame):
        os.write(self.fd, frame.ljust(60, b"\0"))   # Ethernet minimum frame size

    def announce(self):
        """Gratuitous ARP and unsolicited neighbour advertisements (RFC 4861 7.2.6)."""
        if self.ip:
            self.send(arp_frame(1, self.mac, self.ip, b"\0" * 6, self.ip, BROADCAST))
        for address in self.ip6:
            self.send(multicast_mac(ALL_NODES) + self.mac + struct.pack("!H", ETH_P_IPV6)
                      + neighbour_advert(self.mac, address, address, ALL_NODES, NA_OVERRIDE))

    def handle(self, frame):
        if len(frame) < 14:
            return
        dst, src, ethertype = frame[:6], frame[6:12], struct.unpack("!H", frame[12:14])[0]
        if dst not in (self.mac, BROADCAST) and dst[:2] != b"\x33\x33":
            return
        if ethertype == ETH_P_ARP and self.ip:
            self.handle_arp(src, frame[14:])
        elif ethertype == ETH_P_IP and self.ip:
            self.handle_ip(src, frame[14:])
        elif ethertype == ETH_P_IPV6 and self.ip6:
            self.handle_ipv6(src, frame[14:])

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
        if proto == PROTO_ICMP and len(body) >= 8 and body[0] == 8:
            icmp = b"\0\0\0\0" + body[4:]   # type 0 echo reply, same id/seq/payload
            reply, kind = with_checksum(icmp, 2, checksum(icmp)), "icmp"
        elif proto == PROTO_UDP and len(body) >= 8:
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

    def handle_ipv6(self, eth_src, pkt):
        if len(pkt) < 40 or pkt[0] >> 4 != 6:
            return
        length, proto, hop_limit = struct.unpack("!HBB", pkt[4:8])
        src, dst, body = pkt[8:24], pkt[24:40], pkt[40:40 + length]
        # Extension headers (MLD's hop-by-hop) and fragments are not handled: nothing here
        # sends them to a guest.
        if len(body) < length or (dst not in self.ip6 and dst not in self.groups6):
            return
        if proto not in (PROTO_ICMPV6, PROTO_UDP) or len(body) < 8:
            self.seen["other"] += 1
        elif checksum6(src, dst, proto, body) != 0 or (proto == PROTO_UDP and body[6:8] == b"\0\0"):
            self.seen["bad"] += 1   # a UDP checksum is mandatory over IPv6 (RFC 8200 8.1)
        elif proto == PROTO_UDP:
            self.udp6(eth_src, src, dst, body)
        elif body[0] == ND_NEIGHBOR_SOLICIT:
            self.solicited(eth_src, src, dst, hop_limit, body)
        elif body[0] == ICMP6_ECHO_REQUEST and body[1] == 0:
            echo = struct.pack("!BBH", ICMP6_ECHO_REPLY, 0, 0) + body[4:]
            self.reply6(eth_src, src, dst, PROTO_ICMPV6, echo, 2, "icmp6")
        else:
            self.seen["other"] += 1

    def source_for(self, dst, peer):
        """Our address to answer from: DST itself unless it is a group (RFC 4443 4.2)."""
        if dst in self.ip6:
            return dst
        if is_link_local(peer) or len(self.ip6) == 1:
            return self.ip6[0]
        return self.ip6[1]

    def reply6(self, eth_src, peer, dst, proto, message, checksum_at, kind):
        src = self.source_for(dst, peer)
        # A UDP checksum that comes out 0 is sent as all ones: 0 would mean "none" (RFC 768).
        value = checksum6(src, peer, proto, message) or (0xFFFF if proto == PROTO_UDP else 0)
        message = with_checksum(message, checksum_at, value)
        self.note(kind)
        self.send(eth_src + self.mac + struct.pack("!H", ETH_P_IPV6)
                  + ipv6_packet(src, peer, proto, message))

    def udp6(self, eth_src, peer, dst, body):
        sport, dport, length = struct.unpack("!HHH", body[:6])
        if dport != self.udp_port or dst not in self.ip6 or not 8 <= length <= len(body):
            self.seen["other"] += 1
            return
        data = body[8:length]
        self.reply6(eth_src, peer, dst, PROTO_UDP,
                    struct.pack("!HHHH", dport, sport, 8 + len(data), 0) + data, 6, "udp6")

    def solicited(self, eth_src, peer, dst, hop_limit, ns):
        """Answer a neighbour solicitation for one of our addresses (RFC 4861 7.1.1, 7.2.4)."""
        options = nd_options(ns[24:])
        target = ns[8:24]
        if (hop_limit != 255 or ns[1] != 0 or len(ns) < 24 or options is None
                or target not in self.ip6):
            self.seen["other"] += 1
            return
        if peer == UNSPECIFIED:   # duplicate address detection: tell every node
            if dst != solicited_node(target) or ND_OPT_SOURCE_LL in options:
                self.seen["bad"] += 1
                return
            eth_dst, to, flags = multicast_mac(ALL_NODES), ALL_NODES, NA_OVERRIDE
        else:
            lladdr = options.get(ND_OPT_SOURCE_LL, b"")[:6]
            eth_dst = lladdr if len(lladdr) == 6 else eth_src
            to, flags = peer, NA_SOLICITED | NA_OVERRIDE
        self.note("ndp")
        self.send(eth_dst + self.mac + struct.pack("!H", ETH_P_IPV6)
                  + neighbour_advert(self.mac, target, target, to, flags))


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
    try:
        tender, unikernel, guest_args, opts = parse_argv(argv[1:])
    except ConfigError as e:
        raise SystemExit("uguest: error: %s" % e) from None
    net = opts["net"]
    try:
        fd, how = attach(tender, opts)
    except OSError as e:
        log("cannot attach: %s" % e)
        return 1
    mac, mac_source = choose_mac(tender, opts)
    guest = Guest(fd, mac, net, opts["udp_port"])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if opts["garp"]:
        guest.announce()
    report = network_report(net)
    for warning in net["warnings"]:
        log("warning: %s" % warning)
    log("attached %s as %s mac %s" % (how, report["ipv4"] or report["ipv6"] or "IPv6 link-local",
                                      mac))
    ready = {
        "ready": True, "pid": os.getpid(), "argv": argv,
        "mode": ("ukvm" if "" in tender["nets"] else "tender") if tender else "unix",
        "tender": tender or None, "unikernel": unikernel, "guest_args": guest_args,
        "mac": mac, "mac_source": mac_source, "link_local": guest.link_local,
        "attach": how, "garp": opts["garp"], "udp_port": opts["udp_port"],
        "status": status, "fds": {str(k): v for k, v in sorted(inherited.items())},
        "unknown_args": opts["unknown"],
    }
    ready.update(report)
    print(json.dumps(ready), flush=True)
    deadline = time.monotonic() + opts["exit_after"] if opts["exit_after"] else None
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if deadline is not None and timeout == 0:
            log("exit-after reached; answered %s" % guest.seen)
            return 0
        ready_fds, _, _ = select.select([fd], [], [], timeout)
        if ready_fds:
            try:
                guest.handle(os.read(fd, 65536))
            except OSError as e:
                log("tap read failed: %s" % e)
                return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
