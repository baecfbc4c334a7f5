"""Record real kernel netlink replies as the hex fixtures of tests/kernel/test_netlink.py.

Run as root from the repository: ``.venv/bin/python tests/support/data/capture_netlink.py``.
It builds a docker-like container in test namespaces (never the machine's own), adds what
the fixtures should cover (a bridge with an alias, a secondary and an IPv6 address, an
onlink route, a tc redirect made by tc itself), records every datagram the kernel answers
our dump and failing requests with, and what `ip -j` / `tc -j` say, as the expected values.
"""
import json
import os
import platform
import re
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from nsutil import DockerHost, in_netns, unique  # noqa: E402
from sysheaders import lib as hdr  # noqa: E402

from ukrun.kernel.ffi import lib  # noqa: E402
from ukrun.kernel.netlink import Message, attr_nested, attr_string, encode
from ukrun.kernel.netlink_bodies import IfAddrMsg, IfInfoMsg, RtMsg, TcMsg, parse

OUT = os.path.join(HERE, "netlink_replies.json")
SCOPES = {"global": lib.RT_SCOPE_UNIVERSE, "link": hdr.RT_SCOPE_LINK, "host": hdr.RT_SCOPE_HOST}


def exchange(type_, flags, body, cap_ack=True):
    """Send one request on a fresh socket; return the reply datagrams as hex."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.setsockopt(lib.SOL_NETLINK, lib.NETLINK_EXT_ACK, 1)
        sock.setsockopt(lib.SOL_NETLINK, lib.NETLINK_CAP_ACK, int(cap_ack))
        sock.bind((0, 0))
        sock.send(encode(Message(type_, lib.NLM_F_REQUEST | flags, 1, 0, body)))
        datagrams = []
        while True:
            data = sock.recv(1 << 20)
            datagrams.append(data.hex())
            if any(m.type in (lib.NLMSG_DONE, lib.NLMSG_ERROR) for m in parse(data)):
                return datagrams


def tc_request_hex(ns, *args):
    """The bytes tc sends for a command, from strace's dump of the data it writes."""
    out = ns.exec("strace", "-e", "trace=sendmsg", "-e", "write=3", "tc", *args).stderr
    requests = re.split(r"^sendmsg", out, flags=re.M)[1:]
    last = requests[-1]
    rows = re.findall(r"^ \| [0-9a-f]{5}  ((?:[0-9a-f]{2} ?\s?)+?)\s{2,}", last, flags=re.M)
    return "".join(row.replace(" ", "") for row in rows)


def main():
    host = DockerHost(unique("ukh"))
    try:
        c = host.container()
        c.ip("link", "add", "br0", "type", "bridge")
        c.ip("link", "set", "br0", "alias", "ukrun-test", "up")
        c.ip("addr", "add", "172.30.0.9/16", "dev", "eth0")
        c.ip("addr", "add", "2001:db8::2/64", "dev", "eth0", "nodad")
        c.ip("route", "add", "10.9.0.0/16", "via", "169.254.1.1", "dev", "eth0", "onlink")
        c.ip("-6", "route", "add", "default", "via", "2001:db8::1", "dev", "eth0")
        c.exec("tc", "qdisc", "add", "dev", "eth0", "ingress")
        redirect = ("filter", "add", "dev", "eth0", "parent", "ffff:", "protocol", "all", "u32",
                    "match", "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", "br0")
        tc_hex = tc_request_hex(c, *redirect)
        links = {l["ifname"]: l for l in c.ip_json("-d", "link", "show")}
        index = {name: l["ifindex"] for name, l in links.items()}
        with in_netns(c.name):
            dumps = {
                "links": exchange(lib.RTM_GETLINK, lib.NLM_F_DUMP, IfInfoMsg()),
                "addresses": exchange(lib.RTM_GETADDR, lib.NLM_F_DUMP, IfAddrMsg()),
                "routes4": exchange(lib.RTM_GETROUTE, lib.NLM_F_DUMP, RtMsg(family=socket.AF_INET)),
                "routes6": exchange(lib.RTM_GETROUTE, lib.NLM_F_DUMP, RtMsg(family=socket.AF_INET6)),
                "qdiscs": exchange(lib.RTM_GETQDISC, lib.NLM_F_DUMP, TcMsg()),
                "filters": exchange(lib.RTM_GETTFILTER, lib.NLM_F_DUMP,
                                    TcMsg(index=index["eth0"], parent=0xFFFF0000)),
            }
            bridge = IfInfoMsg(attrs=[attr_string(lib.IFLA_IFNAME, "br0"),
                                      attr_nested(lib.IFLA_LINKINFO, [attr_string(lib.IFLA_INFO_KIND, "bridge")])])
            bogus = IfInfoMsg(attrs=[attr_string(lib.IFLA_IFNAME, "x0"),
                                     attr_nested(lib.IFLA_LINKINFO, [attr_string(lib.IFLA_INFO_KIND, "nosuchkind")])])
            create = lib.NLM_F_ACK | lib.NLM_F_CREATE | lib.NLM_F_EXCL
            errors = {
                "bridge_exists": exchange(lib.RTM_NEWLINK, create, bridge),
                "bridge_exists_uncapped": exchange(lib.RTM_NEWLINK, create, bridge, cap_ack=False),
                "unknown_kind": exchange(lib.RTM_NEWLINK, create, bogus),
                "ack": exchange(lib.RTM_NEWLINK, lib.NLM_F_ACK, IfInfoMsg(index=index["br0"])),
            }
        expect = {
            "links": [{"index": l["ifindex"], "name": l["ifname"], "mac": l.get("address"), "mtu": l["mtu"],
                       "kind": l.get("linkinfo", {}).get("info_kind"), "alias": l.get("ifalias"),
                       "master": index.get(l.get("master")), "up": "UP" in l["flags"]}
                      for l in links.values()],
            "addresses": [{"index": a["ifindex"], "address": "%s/%d" % (i["local"], i["prefixlen"]),
                           "scope": SCOPES[i["scope"]], "secondary": bool(i.get("secondary")),
                           "label": i.get("label")}
                          for a in c.ip_json("addr", "show") for i in a["addr_info"]],
            "routes4": [_route(r, index, "0.0.0.0/0", "/32") for r in c.ip_json("-4", "route", "show", "table", "all")],
            "routes6": [_route(r, index, "::/0", "/128") for r in c.ip_json("-6", "route", "show", "table", "all")],
            "qdiscs": [{"index": index[q["dev"]], "kind": q["kind"]} for q in c.tc_json("qdisc", "show")],
            "filters": [{"kind": f["kind"], "to_dev": f["options"]["actions"][0]["to_dev"]}
                        for f in c.tc_json("filter", "show", "dev", "eth0", "ingress")
                        if "match" in f.get("options", {})],
        }
        fixture = {
            "kernel": platform.release(),
            "made_by": "tests/support/data/capture_netlink.py",
            "index": index,
            "dumps": dumps,
            "expect": expect,
            "errors": errors,
            "tc_redirect_request": {"hex": tc_hex, "from": index["eth0"], "to": index["br0"]},
        }
        with open(OUT, "w") as f:
            json.dump(fixture, f, indent=1, sort_keys=True)
            f.write("\n")
        print("wrote", OUT)
    finally:
        host.delete()


def _route(r, index, default, host_suffix):
    dst = r["dst"]
    if dst == "default":
        dst = default
    elif "/" not in dst:
        dst += host_suffix
    return {"dst": dst, "gateway": r.get("gateway"), "oif": index.get(r.get("dev")),
            "table": r.get("table", "main"), "type": r.get("type", "unicast"),
            "onlink": "onlink" in r.get("flags", [])}


if __name__ == "__main__":
    main()
