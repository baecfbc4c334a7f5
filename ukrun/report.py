"""``ukrun inspect``: the network a run would hand over, read without changing anything.
(A plan as ``--dry-run`` prints it is ukrun.planning's ``Plan.to_json``.)
"""
from __future__ import annotations

from ukrun.options import items


def inspect(interface="eth0") -> dict:
    """The network a run would hand over (discovered, or recorded by an earlier run), with
    notes on what it would not hand over. ``interface``: a name, or several (None: eth0): the
    first one's configuration is the answer's own keys, as with one, and ``networks`` lists
    every one's."""
    from ukrun.kernel.rtnl import Rtnl
    from ukrun.network import discovery
    from ukrun.network.survey import bare, find_record, handover_notes, interface_link
    from ukrun.planning import dns_json, read_dns

    interfaces = items(interface if interface is not None else "eth0")
    with Rtnl() as rtnl:
        snapshot = discovery.read(rtnl, interfaces)
    networks, notes = [], []
    for name in interfaces:
        link = interface_link(snapshot, name)
        record = find_record(snapshot.links, name, only_copy=bare(snapshot, link))
        networks.append(discovery.config(snapshot, name, record))
        notes += handover_notes(networks[-1])
    dns, dns_notes = read_dns(networks)
    return dict(networks[0].to_json(), dns=dns_json(dns), notes=notes + dns_notes,
                networks=[n.to_json() for n in networks])
