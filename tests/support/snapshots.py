"""Namespace snapshots for before/after comparisons, without what changes by itself.

A tap's carrier follows whether a process holds it (and the kernel reports the change a moment
later, via linkwatch); IPv6 duplicate address detection finishes on its own and then adds a
local route for the link-local address. Neither is something ukrun changed or must restore.
"""
import copy

VOLATILE_LINK_FLAGS = {"NO-CARRIER", "LOWER_UP"}


def _is_link_local_route(route):
    return route.get("table") == "local" and route.get("dst", "").startswith("fe80:")


def stable(snapshot):
    snap = copy.deepcopy(snapshot)
    for section in ("links", "addrs"):
        for link in snap[section]:
            link["flags"] = [f for f in link.get("flags", []) if f not in VOLATILE_LINK_FLAGS]
            link.pop("operstate", None)
            for addr in link.get("addr_info", []):
                addr.pop("tentative", None)
    snap["routes"] = [dict(r, flags=[f for f in r.get("flags", []) if f != "linkdown"])
                      for r in snap["routes"] if not _is_link_local_route(r)]
    return snap


def snapshot(ns):
    return stable(ns.snapshot())


def redirects(ns, dev):
    """The mirred actions on ``dev``'s ingress, as (action, to_dev); without action indexes
    and counters, which differ every time a filter is made."""
    found = []
    for rule in ns.tc_json("filter", "show", "dev", dev, "ingress"):
        for action in rule.get("options", {}).get("actions", []):
            if action.get("kind") == "mirred":
                found.append((action.get("mirred_action"), action.get("to_dev")))
    return found


def wiring_state(ns):
    """What a wiring is made of: links, qdiscs, filters, IPv4 addresses and routes.

    For comparing two wired states: a new bridge's IPv6 link-local address and its routes
    appear only once the kernel saw its carrier, a while later.
    """
    snap = snapshot(ns)
    return {
        "links": snap["links"],
        "qdiscs": snap["qdiscs"],
        "redirects": {link["ifname"]: redirects(ns, link["ifname"]) for link in snap["links"]},
        "ipv4": ns.ip_json("-4", "addr", "show"),
        "routes4": ns.ip_json("-4", "route", "show", "table", "all"),
    }
