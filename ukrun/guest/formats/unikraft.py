"""Unikraft's network words: kernel parameters (uklibparam), before the ``--`` that starts the
application's arguments. IPv4 only.

unikraft
    Unikraft >= 0.16 ``netdev.ip=CIDR[:GW[:DNS0[:DNS1[:HOSTNAME[:DOMAIN]]]]]`` (uknetdev with
    ``CONFIG_LIBUKNETDEV_EINFO_LIBPARAM``), one word per interface in device order: uklibparam
    appends each repetition of an array parameter to the next device. Trailing empty fields are
    left out; DNS (the first two IPv4 servers) and DOMAIN (the first search domain) go to the
    first interface's entry; an interface without IPv4 before one with it gets an empty
    ``netdev.ip=`` so the following ones keep their device.
unikraft-lwip
    The older ``netdev.ipv4_addr=A netdev.ipv4_gw_addr=GW netdev.ipv4_subnet_mask=M`` (before
    0.16). First interface only: several devices need space-separated values in one word.
"""
from __future__ import annotations

from ukrun.guest.formats.shared import (first_interface_note, ipv4_only_notes, servers,
                                        strip_empty, two_ipv4_servers_note)


def unikraft(nets, dns, template=None) -> tuple:
    words = []
    for index, net in enumerate(nets):
        fields = ["", ""]
        if net.ipv4 is not None:
            fields = [net.ipv4.with_prefixlen,
                      "" if net.gateway4 is None else str(net.gateway4)]
        if index == 0:
            first_two = servers(dns, 4, 2) + ["", ""]
            fields += first_two[:2] + ["", dns.search[0] if dns.search else ""]
        words.append("netdev.ip=" + ":".join(strip_empty(fields)))
    return tuple(_strip_empty_words(words))


def _strip_empty_words(words: list) -> list:
    # An empty entry only holds a later device's place; at the end it says nothing.
    while words and words[-1] == "netdev.ip=":
        words.pop()
    return words


def unikraft_lwip(nets, dns, template=None) -> tuple:
    if not nets or nets[0].ipv4 is None:
        return ()
    net = nets[0]
    words = ["netdev.ipv4_addr=%s" % net.ipv4.ip]
    if net.gateway4 is not None:
        words.append("netdev.ipv4_gw_addr=%s" % net.gateway4)
    words.append("netdev.ipv4_subnet_mask=%s" % net.ipv4.netmask)
    return tuple(words)


def notes(format: str, nets: tuple, dns) -> list:
    if format == "unikraft":  # every interface, with room for DNS servers
        return ipv4_only_notes(format, nets) + two_ipv4_servers_note(format, dns)
    out = first_interface_note(format, nets) + ipv4_only_notes(format, nets[:1])
    if dns.servers:
        out.append("--ip-args unikraft-lwip has no DNS fields: no DNS servers are passed")
    return out
