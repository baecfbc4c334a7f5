"""Linux's network words: the kernel's ``ip=`` parameter (admin-guide/nfs/nfsroot.rst), before
the ``--`` after which the kernel hands the rest to init.

linux
    ``ip=CLIENT::GW:NETMASK::DEVICE:off:DNS0:DNS1``: empty server and hostname (the kernel then
    uses the address as host name), ``off``: a static configuration, no DHCP/BOOTP/RARP; up to
    two IPv4 DNS servers, exported in /proc/net/pnp. First interface only, IPv4 only (``ip=``
    has no IPv6). A gateway outside the prefix (Calico's /32 with 169.254.1.1) is written as
    is, but the kernel's own autoconfiguration refuses it ("IP-Config: Gateway not on directly
    connected network") and sets no default route; an init script that parses the word can add
    it on-link.
"""
from __future__ import annotations

from ukrun.guest.formats.shared import (first_interface_note, ipv4_only_notes, servers,
                                        strip_empty, two_ipv4_servers_note)


def linux(nets, dns, template=None) -> tuple:
    if not nets or nets[0].ipv4 is None:
        return ()
    net = nets[0]
    fields = [str(net.ipv4.ip), "", "" if net.gateway4 is None else str(net.gateway4),
              str(net.ipv4.netmask), "", net.device or "", "off"] + servers(dns, 4, 2)
    return ("ip=" + ":".join(strip_empty(fields)),)


def _gateway_outside(net) -> bool:
    return net.gateway4 is not None and net.gateway4 not in net.ipv4.network


def notes(format: str, nets: tuple, dns) -> list:
    first = nets[0]
    out = first_interface_note(format, nets) + ipv4_only_notes(format, nets[:1])
    out += two_ipv4_servers_note(format, dns)
    if first.ipv4 is not None and _gateway_outside(first):
        out.append("--ip-args linux: the gateway %s is outside %s; the kernel's own IP "
                   "autoconfiguration sets no default route through it"
                   % (first.gateway4, first.ipv4))
    return out
