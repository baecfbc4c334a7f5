"""What ukrun tells about a network without changing it: the DNS servers a guest can be given
(``read_dns``), ``ukrun inspect`` (``inspect``), and a plan as ``--dry-run`` prints it
(``plan_json``; ``runner.Plan.to_json``).

Apart from the runner, whose plain run needs none of it: a run reads resolv.conf only when the
guest's words can name DNS servers or someone hears its notes, and renders no JSON. A plan is
read by its attributes (ukrun.runner's Plan and Handover), so nothing here imports the runner.
"""
from __future__ import annotations

from ukrun.options import items


def read_dns(networks, path: str = "/etc/resolv.conf"):
    """(guestnet.DNS, notes): the nameservers a guest can reach through one of ``networks``
    (NetConfigs) and the search domains, from the container's resolv.conf (Docker's embedded
    127.0.0.11 is replaced by the upstream servers Docker notes in it; ukrun.resolv)."""
    from ukrun.guestnet import DNS
    from ukrun.resolv import parse_resolv_conf, usable_nameservers

    networks = items(networks)
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 16)
    except OSError as e:
        return DNS(), ["no nameserver is handed over: %s: %s" % (path, e.strerror)]
    resolv = parse_resolv_conf(text)
    servers, notes = usable_nameservers(resolv,
                                        ipv4=any(n.ipv4 is not None for n in networks),
                                        ipv6=any(n.ipv6 is not None for n in networks))
    return DNS(tuple(servers), tuple(resolv.search)), list(notes)


def dns_json(dns) -> dict | None:
    if dns is None:
        return None
    return {"servers": [str(s) for s in dns.servers], "search": list(dns.search)}


def inspect(interface="eth0") -> dict:
    """The network a run would hand over (discovered, or recorded by an earlier run), with
    notes on what it would not hand over. ``interface``: a name, or several (None: eth0): the
    first one's configuration is the answer's own keys, as with one, and ``networks`` lists
    every one's."""
    from ukrun import netconf
    from ukrun.rtnl import Rtnl
    from ukrun.survey import bare, find_record, handover_notes, interface_link

    interfaces = items(interface if interface is not None else "eth0")
    with Rtnl() as rtnl:
        snapshot = netconf.read(rtnl, interfaces)
    networks, notes = [], []
    for name in interfaces:
        link = interface_link(snapshot, name)
        record = find_record(snapshot.links, name, only_copy=bare(snapshot, link))
        networks.append(netconf.config(snapshot, name, record))
        notes += handover_notes(networks[-1])
    dns, dns_notes = read_dns(networks)
    return dict(networks[0].to_json(), dns=dns_json(dns), notes=notes + dns_notes,
                networks=[n.to_json() for n in networks])


def handover_json(h) -> dict:
    """One interface of a plan (a runner.Handover)."""
    return dict(h.network.to_json(), tap=h.tap, guest_mac=h.guest_mac, tap_fd=h.tap_fd,
                device=h.device)


def plan_json(plan) -> dict:
    """A runner.Plan as ``--dry-run`` prints it: text and numbers only (addresses as text,
    capabilities by name)."""
    from ukrun.caps import cap_name

    return {"target": plan.target.name, "argv": list(plan.argv),
            "network": plan.network.to_json(), "guest_mac": plan.guest_mac,
            "steps": [s.to_json() for s in plan.steps], "tap_fd": plan.tap_fd,
            "keep_caps": sorted(cap_name(c) for c in plan.keep_caps),
            "exec_mode": plan.exec_mode, "init": plan.init_program,
            "dns": dns_json(plan.dns), "notes": plan.notes,
            "networks": [handover_json(h) for h in plan.handovers]}
