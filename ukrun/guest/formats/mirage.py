"""MirageOS 4's network words: runtime arguments (mirage
``lib_runtime/mirage/mirage_runtime_network.ml``), from the first interface.

mirage
    IPv4 only: exactly ``--ipv4=ADDR/N --ipv4-gateway=GW`` (the gateway left out when there is
    none), ukrun's default since the old C runner. With IPv6 ``--ipv6=ADDR/N --ipv6-gateway=GW``
    follow, and ``--accept-router-advertisements=false``: the container platform assigned the
    address statically, and a guest that also took router advertisements would add a SLAAC
    address (from eth0's MAC, which it inherits) and maybe a default router the platform never
    gave it. IPv6 only: ``--ipv6-only=true`` and no ``--ipv4``; mirage's ``--ipv4`` then keeps
    its default 10.0.0.2/24, which is harmless because ``--ipv6-only=true`` makes mirage connect
    the IPv4 layer with ``no_init`` (no address given to ARP, none answered or announced). No
    DNS words: a MirageOS unikernel rejects every runtime argument it was not built with, and
    ``--dns_servers`` exists only in those with a DNS client device, so adding it would break
    the others.
mirage-dns
    ``mirage``, then ``--dns_servers=tcp:A,tcp:[B]:53`` when there are servers the first
    interface can reach (its address families). The list syntax is ocaml-dns's
    ``nameserver_of_string`` (``udp:``/``tcp:``/``tls:``, IPv6 in brackets with a port).
    ``tcp:`` because dns-client's UDP mode queries a single server of the list, while TCP
    connects to them in turn (happy eyeballs) and fails over; it is also what MirageOS makes
    of servers learnt by DHCP (it hands over ``udp:`` and ``tcp:`` for each, and the client
    keeps the TCP ones).
"""
from __future__ import annotations

from ukrun.guest.formats.shared import first_interface_note, plain, with_prefix


def mirage(nets, dns, template=None) -> tuple:
    if not nets:
        return ()
    net, words = nets[0], []
    if net.ipv4 is not None:
        words.append("--ipv4=%s" % net.ipv4.with_prefixlen)
        if net.gateway4 is not None:
            words.append("--ipv4-gateway=%s" % net.gateway4)
    if net.ipv6 is not None:
        words.append("--ipv6=%s" % with_prefix(net.ipv6))
        if net.gateway6 is not None:
            words.append("--ipv6-gateway=%s" % plain(net.gateway6))
        if net.ipv4 is None:
            words.append("--ipv6-only=true")
        words.append("--accept-router-advertisements=false")
    return tuple(words)


def _nameserver(address) -> str:
    return ("tcp:%s" if address.version == 4 else "tcp:[%s]:53") % plain(address)


def mirage_dns(nets, dns, template=None) -> tuple:
    words = mirage(nets, dns)
    if not nets:
        return words
    families = {4} if nets[0].ipv4 is not None else set()
    families |= {6} if nets[0].ipv6 is not None else set()
    servers = [_nameserver(s) for s in dns.servers if s.version in families]
    return words + (("--dns_servers=" + ",".join(servers),) if servers else ())


def notes(format: str, nets: tuple, dns) -> list:
    out = first_interface_note(format, nets)
    if format == "mirage" and dns.servers:
        out.append("--ip-args mirage passes no DNS servers (mirage-dns adds --dns_servers, "
                   "for unikernels built with a DNS client)")
    return out
