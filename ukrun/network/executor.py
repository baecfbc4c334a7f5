"""Carry out wiring steps (ukrun.network.wiring.Step) against the kernel, one rtnl socket at a time.

Every operation takes interface *names* and looks the index up when it runs: a plan is made
before the links it names exist. A name's index is looked up once and forgotten when an
operation makes, renames or deletes a link.
"""
from __future__ import annotations

import _socket  # not socket: see ukrun.kernel.rtnl
import errno

from ukrun.kernel.tap import Tap, disable_offloads, open_tap


class Kernel:
    """The operations a Step may name; holds the taps this run opened."""

    def __init__(self, rtnl):
        self.rtnl = rtnl
        self.taps = {}  # name -> Tap
        self._indexes = {}  # name -> ifindex, as looked up by this Kernel

    def do(self, step) -> None:
        try:
            getattr(self, "op_" + step.op)(**step.args)
        finally:
            if step.op in _RENAMING:
                self._indexes.clear()  # a name may stand for another link now, or for none

    def index(self, name: str) -> int:
        index = self._indexes.get(name)
        if index is None:
            try:
                # SIOCGIFINDEX: no netlink round trip, and no whole link to decode.
                index = _socket.if_nametoindex(name)
            except OSError:  # it says no more than that: the kernel's own answer says why
                index = self.rtnl.link(name).index
            self._indexes[name] = index
        return index

    # --- taps ---
    def op_create_tap(self, name: str, owner: int | None = None,
                      group: int | None = None) -> None:
        # exclusive: a tap that appeared since the plan was made is not ours to take over.
        # Not persistent yet: until its record is written (persist_tap), a run killed on the
        # way takes the tap with it, instead of leaving one no later run could call its own.
        # Owned by the uid (and group) the guest runs as: no other uid attaches to it and reads
        # the pod's traffic once the guest has gone (the owner needs no capability to attach).
        self.taps[name] = open_tap(name, exclusive=True, owner=owner, group=group)

    def op_persist_tap(self, name: str) -> None:
        self.taps[name].set_persist(True)

    def op_delete_tap(self, name: str) -> None:
        tap = self.taps.pop(name, None) or open_tap(name)
        with tap:
            tap.set_persist(False)  # a tap that is not persistent goes with its last fd

    def op_hold_tap(self, name: str) -> None:
        if name not in self.taps:
            self.taps[name] = open_tap(name)

    def op_close_tap(self, name: str) -> None:
        tap = self.taps.pop(name, None)
        if tap is not None:
            tap.close()

    def close_taps(self, keep=()) -> None:
        """Close every tap fd but those in ``keep``: a guest attaching by name needs it free."""
        for name in list(self.taps):
            if name not in keep:
                self.taps.pop(name).close()

    def held_tap(self, name: str) -> Tap:
        return self.taps[name]

    def op_disable_offloads(self, name: str) -> None:
        disable_offloads(name)

    # --- links ---
    def op_set_alias(self, name: str, alias: str) -> None:
        self.rtnl.set_alias(self.index(name), alias)

    def op_set_mtu(self, name: str, mtu: int) -> None:
        self.rtnl.set_mtu(self.index(name), mtu)

    def op_set_up(self, name: str) -> None:
        self.rtnl.set_up(self.index(name), True)

    def op_set_down(self, name: str) -> None:
        self.rtnl.set_up(self.index(name), False)

    def op_set_addr_gen_mode(self, name: str, mode: int) -> None:
        self.rtnl.set_addr_gen_mode(self.index(name), mode)

    def op_set_mac(self, name: str, mac: str) -> None:
        self.rtnl.set_mac(self.index(name), mac)

    def op_create_bridge(self, name: str) -> None:
        self.rtnl.create_bridge(name)

    def op_rename(self, name: str, to: str) -> None:
        self.rtnl.rename(self.index(name), to)

    def op_delete_link(self, name: str) -> None:
        self.rtnl.delete_link(self.index(name))

    def op_enslave(self, name: str, master: str) -> None:
        self.rtnl.set_master(self.index(name), self.index(master))

    def op_release(self, name: str) -> None:
        self.rtnl.set_master(self.index(name), None)

    # --- tc ---
    def op_add_ingress(self, name: str) -> None:
        self.rtnl.add_ingress_qdisc(self.index(name))

    def op_delete_ingress(self, name: str) -> None:
        self.rtnl.delete_ingress_qdisc(self.index(name))

    def op_add_redirect(self, source: str, target: str) -> None:
        self.rtnl.add_redirect(self.index(source), self.index(target))

    # --- addresses ---
    def op_delete_address(self, address) -> None:
        try:
            self.rtnl.delete_address(address)
        except OSError as e:
            if e.errno != errno.EADDRNOTAVAIL:  # already gone (with its primary)
                raise

    def op_delete_route(self, route) -> None:
        self.rtnl.delete_route(route)

    def op_restore_addresses(self, interface: str, addresses, routes) -> None:
        present = {a.interface for a in self.rtnl.addresses(self.index(interface))}
        for address in addresses:
            if address.interface not in present:
                self.rtnl.add_address(address)
        have = {_route_key(r) for r in self.rtnl.routes(family=_socket.AF_UNSPEC)}
        # Routes through a gateway need the routes that reach it first: connected ones lead.
        for route in sorted(routes, key=lambda r: r.gateway is not None):
            if _route_key(route) not in have:
                self.rtnl.add_route(route)


# The operations after which a name may stand for another link, or for none.
_RENAMING = frozenset(("create_tap", "delete_tap", "create_bridge", "rename", "delete_link"))


def _route_key(route):
    return (route.family, route.dst, route.gateway, route.oif, route.table, route.type,
            route.priority)
