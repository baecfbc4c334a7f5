"""What more than one family's network words and notes are made of: addresses as a guest gets
them, DNS servers, colon-separated fields, and the notes common to several formats. Imports
nothing of ukrun.guest.formats, whose families (not its table) use it.
"""
from __future__ import annotations

from ukrun.kernel import inet


def plain(address) -> str:
    """An address as a guest gets it: without a zone, which only names a container interface."""
    return str(inet.unzoned(address))


def with_prefix(iface) -> str:
    return "%s/%d" % (plain(iface.ip), iface.network.prefixlen)


def servers(dns, version: int, limit: int | None = None) -> list:
    """The first ``limit`` (None: all) servers of IP ``version``, as a guest gets them."""
    found = [plain(s) for s in dns.servers if s.version == version]
    return found if limit is None else found[:limit]


def strip_empty(fields: list) -> list:
    """``fields`` without its trailing empty ones (of a colon-separated word)."""
    while fields and fields[-1] == "":
        fields.pop()
    return fields


def first_interface_note(format: str, nets: tuple) -> list:
    """For a format that describes the first interface alone."""
    if len(nets) > 1:
        return ["--ip-args %s describes only the first interface (%s) to the guest"
                % (format, nets[0].interface)]
    return []


def ipv4_only_notes(format: str, described: tuple) -> list:
    """For a format without IPv6: what it cannot say of the interfaces it describes."""
    return (["--ip-args %s has no IPv6: %s's %s is not passed" % (format, n.interface, n.ipv6)
             for n in described if n.ipv6 is not None]
            + ["--ip-args %s: %s has no IPv4 address to pass" % (format, n.interface)
               for n in described if n.ipv4 is None])


def two_ipv4_servers_note(format: str, dns) -> list:
    """For a format with room for two IPv4 DNS servers: the servers left out."""
    left = [s for s in dns.servers if s.version == 6] + servers(dns, 4)[2:]
    if left:
        return ["--ip-args %s takes two IPv4 DNS servers: %s left out"
                % (format, ", ".join(str(s) for s in left))]
    return []
