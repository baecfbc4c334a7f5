"""A route-netlink socket: the link, address, route and tc operations ukrun needs.

One AF_NETLINK/NETLINK_ROUTE socket per ``Rtnl`` (close-on-exec, in the network namespace
of the thread that made it); ``Netlink`` is the exchange itself, for any netlink protocol
(ukrun.kernel.process's lock speaks netfilter's). Every change is a request with NLM_F_ACK whose NLMSG_ERROR
answer is read before returning, so a failure surfaces where it happened, as a
``NetlinkError`` naming the operation: ``creating bridge br0: [Errno 17] File exists``.
Dumps are read until NLMSG_DONE. Replies carrying another sequence number are leftovers of
an exchange cut short (by an exception) and are skipped.
"""
from __future__ import annotations

import _socket  # not socket, which makes enums of all its constants at import (~2 ms)
import errno
import os

# For annotations only: collections.abc loads collections, ~1 ms of a run's start
# (typing's TYPE_CHECKING, without importing typing).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

from ukrun.kernel.ffi import lib
from ukrun.kernel.ifname import validate_ifname
from ukrun.kernel.mac import mac_bytes
from ukrun.kernel.netlink import (Attr, ack_error, attr_nested, attr_string, attr_u32,
                                  pack_message, split)
from ukrun.kernel.netlink_bodies import IfAddrMsg, IfInfoMsg, RtMsg, TcMsg, decode_body
from ukrun.kernel.rtnl_objects import (INGRESS_HANDLE, Address, Link, Route,
                                       addr_gen_mode_attrs, address_from_message, address_request,
                                       filter_from_message, ingress_qdisc_request,
                                       link_from_message, qdisc_from_message, redirect_request,
                                       route_from_message, route_request)

__all__ = ["NetlinkError", "Netlink", "Rtnl"]

_CREATE = lib.NLM_F_CREATE | lib.NLM_F_EXCL
# Read in the loop that takes every answer apart: module globals, not cffi look-ups.
_NLM_F_REQUEST, _NLMSG_ERROR, _NLMSG_DONE = lib.NLM_F_REQUEST, lib.NLMSG_ERROR, lib.NLMSG_DONE
_NOISE = (lib.NLMSG_NOOP, lib.NLMSG_OVERRUN)
_DUMP_ATTEMPTS = 5  # a dump the kernel marks NLM_F_DUMP_INTR (changed meanwhile) is retried


class NetlinkError(OSError):
    """The kernel refused a request: errno, its extended-ack text (or None), and the
    operation, e.g. "adding address 172.30.0.2/16 to eth0"."""

    def __init__(self, errno_: int, op: str, ext_ack: str | None = None):
        super().__init__(errno_, os.strerror(errno_))
        self.op = op
        self.ext_ack = ext_ack

    def __str__(self):
        text = "%s: [Errno %d] %s" % (self.op, self.errno, self.strerror)
        return "%s (%s)" % (text, self.ext_ack) if self.ext_ack else text


class Netlink:
    """A netlink socket of one ``protocol``: requests answered by an ack, and dumps."""

    def __init__(self, protocol: int):
        sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC,
                              protocol)
        try:
            # Ask for the kernel's error text, and for errors without an echo of our request.
            for option in (lib.NETLINK_EXT_ACK, lib.NETLINK_CAP_ACK):
                try:
                    sock.setsockopt(lib.SOL_NETLINK, option, 1)
                except OSError as e:
                    if e.errno != errno.ENOPROTOOPT:  # an old kernel: plain errors still work
                        raise
            sock.bind((0, 0))
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._seq = 0
        self._abandoned = False  # an exchange was cut short: its answer may still be queued
        self._peek = bytearray(1)

    def close(self):
        self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- the exchange ------------------------------------------------------------------

    def _recv(self) -> bytes:
        # A dump part can be larger than any buffer we would guess: peek at its real size.
        size = self._sock.recv_into(self._peek, 0, _socket.MSG_PEEK | _socket.MSG_TRUNC)
        return self._sock.recv(max(size, 1))

    def _exchange(self, type_: int, flags: int, body, op: str | Callable[[], str]) -> list:
        """Send one request and return the replies answering it, up to the ack or DONE, as
        (type, flags, body); raise NetlinkError when the kernel refuses it. ``op`` names the
        operation for that error: a str, or a callable called only then (wording it costs a
        link look-up)."""
        if self._abandoned:
            self._drain()
        self._seq = self._seq % 0xFFFFFFFF + 1
        self._abandoned = True  # until the answer has been read to its end
        replies, refusal = self._answer(type_, flags, body, self._seq)
        self._abandoned = False
        if refusal is not None:
            errno_, ext_ack = refusal
            raise NetlinkError(errno_, op if isinstance(op, str) else op(), ext_ack)
        return replies

    def _answer(self, type_: int, flags: int, body, seq: int) -> tuple:
        """(replies, None), or ([], (errno, ext_ack)) when the kernel refuses. Only the
        replies are decoded whole: of an ack, its error field alone (a run reads a dozen)."""
        self._sock.send(pack_message(type_, _NLM_F_REQUEST | flags, seq, 0, body))
        replies = []
        while True:
            for offset, type_, flags, seq_, _, payload in split(self._recv()):
                if seq_ != seq:
                    continue
                if type_ == _NLMSG_ERROR:
                    if ack_error(offset, payload) == 0:
                        return replies, None
                    error = decode_body(offset, type_, flags, payload)
                    return [], (error.errno, error.ext_ack)
                if type_ == _NLMSG_DONE:
                    done = decode_body(offset, type_, flags, payload)
                    if done.status < 0:  # the dump failed part-way
                        text = done.attrs.string(lib.NLMSGERR_ATTR_MSG, errors="replace")
                        return [], (-done.status, text)
                    return replies, None
                if type_ not in _NOISE:
                    replies.append((type_, flags, decode_body(offset, type_, flags, payload)))

    def _drain(self):
        """Drop what an exchange cut short (by an exception) left queued. The kernel runs a
        dump as its parts are read and refuses another on this socket (EBUSY) until then."""
        while True:
            try:
                self._sock.recv(1 << 16, _socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
        self._abandoned = False

    def _request(self, type_: int, body, op: str | Callable[[], str], flags: int = 0) -> list:
        return self._exchange(type_, lib.NLM_F_ACK | flags, body, op)

    def _dump(self, type_: int, body, op: str) -> list:
        for _ in range(_DUMP_ATTEMPTS):
            replies = self._exchange(type_, lib.NLM_F_DUMP, body, op)
            if not any(flags & lib.NLM_F_DUMP_INTR for _, flags, _ in replies):
                return replies
        raise NetlinkError(errno.EINTR, op + " (the kernel's tables kept changing)")


class Rtnl(Netlink):
    def __init__(self):
        super().__init__(_socket.NETLINK_ROUTE)

    def _name(self, index: int) -> Callable[[], str]:
        """The link's name, looked up only when an error message needs it."""
        def lookup():
            try:
                return self.link(index).name
            except NetlinkError:
                return "ifindex %d" % index
        return lookup

    # --- links ---------------------------------------------------------------------------

    def links(self) -> list:
        body = IfInfoMsg(attrs=[attr_u32(lib.IFLA_EXT_MASK, lib.RTEXT_FILTER_SKIP_STATS)])
        return [link_from_message(found) for type_, _, found
                in self._dump(lib.RTM_GETLINK, body, "listing links") if type_ == lib.RTM_NEWLINK]

    def link(self, name_or_index: str | int) -> Link:
        """The link of that name or index; NetlinkError ENODEV when there is none."""
        attrs = [attr_u32(lib.IFLA_EXT_MASK, lib.RTEXT_FILTER_SKIP_STATS)]
        if isinstance(name_or_index, int):
            body = IfInfoMsg(index=name_or_index, attrs=attrs)
        else:
            body = IfInfoMsg(attrs=attrs + [attr_string(lib.IFLA_IFNAME, validate_ifname(name_or_index))])
        op = "looking up link %s" % name_or_index
        for type_, _, found in self._request(lib.RTM_GETLINK, body, op):
            if type_ == lib.RTM_NEWLINK:
                return link_from_message(found)
        raise NetlinkError(errno.ENODEV, op)

    def create_bridge(self, name: str) -> Link:
        kind = attr_nested(lib.IFLA_LINKINFO, [attr_string(lib.IFLA_INFO_KIND, "bridge")])
        body = IfInfoMsg(attrs=[attr_string(lib.IFLA_IFNAME, validate_ifname(name)), kind])
        self._request(lib.RTM_NEWLINK, body, "creating bridge %s" % name, _CREATE)
        return self.link(name)

    def rename(self, index: int, name: str):
        """Give the link a new name (the kernel wants it down)."""
        self._set_link(index, [attr_string(lib.IFLA_IFNAME, validate_ifname(name))],
                       lambda old: "renaming %s to %s" % (old, name))

    def delete_link(self, index: int):
        name = self._name(index)
        self._request(lib.RTM_DELLINK, IfInfoMsg(index=index), lambda: "deleting link %s" % name())

    def _set_link(self, index: int, attrs: list, op: Callable[[str], str], flags=0, change=0):
        name = self._name(index)
        body = IfInfoMsg(index=index, flags=flags, change=change, attrs=attrs)
        self._request(lib.RTM_NEWLINK, body, lambda: op(name()))

    def set_master(self, index: int, master_index: int | None):
        """Enslave the link to ``master_index`` (a bridge); None or 0 releases it."""
        if master_index:
            master = self._name(master_index)
            op = lambda name: "enslaving %s to %s" % (name, master())  # noqa: E731
        else:
            op = lambda name: "releasing %s from its master" % name  # noqa: E731
        self._set_link(index, [attr_u32(lib.IFLA_MASTER, master_index or 0)], op)

    def set_up(self, index: int, up: bool = True):
        state = "up" if up else "down"
        self._set_link(index, [], lambda name: "setting %s %s" % (name, state),
                       flags=lib.IFF_UP if up else 0, change=lib.IFF_UP)

    def set_mac(self, index: int, mac: str):
        self._set_link(index, [Attr(lib.IFLA_ADDRESS, mac_bytes(mac))],
                       lambda name: "setting the MAC address of %s to %s" % (name, mac))

    def set_mtu(self, index: int, mtu: int):
        self._set_link(index, [attr_u32(lib.IFLA_MTU, mtu)],
                       lambda name: "setting the MTU of %s to %d" % (name, mtu))

    def set_addr_gen_mode(self, index: int, mode: int):
        """IFLA_INET6_ADDR_GEN_MODE: IN6_ADDR_GEN_MODE_NONE keeps the kernel from giving the
        link a link-local address (and so from DAD, router solicitations and MLD on it)."""
        self._set_link(index, addr_gen_mode_attrs(mode),
                       lambda name: "setting the IPv6 address generation mode of %s to %d"
                       % (name, mode))

    def set_alias(self, index: int, alias: str):
        """Set IFLA_IFALIAS; "" clears it."""
        if "\0" in alias:
            raise ValueError("an alias cannot hold a NUL: %r" % alias)
        # No NUL terminator: the kernel keeps exactly the bytes sent, and 0 bytes clear it.
        self._set_link(index, [Attr(lib.IFLA_IFALIAS, alias.encode())],
                       lambda name: "setting the alias of %s to %r" % (name, alias))

    # --- addresses and routes ------------------------------------------------------------

    def addresses(self, index: int | None = None, family: int | None = None) -> list:
        body = IfAddrMsg(family=family or _socket.AF_UNSPEC)
        # Other links' addresses are not decoded: nothing of theirs can make this fail.
        found = (address_from_message(reply) for type_, _, reply
                 in self._dump(lib.RTM_GETADDR, body, "listing addresses")
                 if type_ == lib.RTM_NEWADDR and index in (None, reply.index))
        return [a for a in found if a is not None and index in (None, a.index)
                and family in (None, _socket.AF_UNSPEC, a.family)]

    def add_address(self, addr: Address):
        name = self._name(addr.index)
        self._request(lib.RTM_NEWADDR, address_request(addr),
                      lambda: "adding address %s to %s" % (addr.interface, name()), _CREATE)

    def delete_address(self, addr: Address):
        name = self._name(addr.index)
        self._request(lib.RTM_DELADDR, address_request(addr),
                      lambda: "deleting address %s from %s" % (addr.interface, name()))

    def routes(self, family: int = _socket.AF_INET, table: int | None = lib.RT_TABLE_MAIN) -> list:
        """The routes of a family (AF_UNSPEC: IPv4 and IPv6) in ``table`` (None: every table),
        without cached clones. One dump: for AF_UNSPEC the kernel dumps every family's."""
        routes = []
        for type_, _, reply in self._dump(lib.RTM_GETROUTE, RtMsg(family=family), "listing routes"):
            if type_ != lib.RTM_NEWROUTE or reply.flags & lib.RTM_F_CLONED:
                continue
            # Other tables' routes are not decoded (IPv6's local table alone holds several):
            # RTA_TABLE, where a table id beyond rtm_table's 8 bits goes, as route.table reads it.
            if table is not None and reply.attrs.u32(lib.RTA_TABLE, reply.table) != table:
                continue
            route = route_from_message(reply)  # None for families but IPv4 and IPv6
            if route is not None:
                routes.append(route)
        return routes

    def _route_op(self, verb: str, route: Route) -> Callable[[], str]:
        def op():
            text = "%s route %s" % (verb, "default" if route.is_default else route.dst)
            if route.gateway is not None:
                text += " via %s" % route.gateway
            if route.oif is not None:
                text += " dev %s" % self._name(route.oif)()
            return text
        return op

    def add_route(self, route: Route):
        self._request(lib.RTM_NEWROUTE, route_request(route), self._route_op("adding", route),
                      _CREATE)

    def delete_route(self, route: Route):
        """Delete the route (an IPv6 route through a gateway stays after its link's addresses
        are gone, unlike an IPv4 one)."""
        self._request(lib.RTM_DELROUTE, route_request(route), self._route_op("deleting", route))

    # --- traffic control -----------------------------------------------------------------

    def add_ingress_qdisc(self, index: int):
        name = self._name(index)
        self._request(lib.RTM_NEWQDISC, ingress_qdisc_request(index),
                      lambda: "adding an ingress qdisc to %s" % name(), _CREATE)

    def delete_ingress_qdisc(self, index: int):
        """Delete the ingress qdisc and with it every filter under it."""
        name = self._name(index)
        self._request(lib.RTM_DELQDISC, ingress_qdisc_request(index),
                      lambda: "deleting the ingress qdisc of %s" % name())

    def qdiscs(self, index: int | None = None) -> list:
        found = (qdisc_from_message(reply) for type_, _, reply
                 in self._dump(lib.RTM_GETQDISC, TcMsg(), "listing qdiscs")
                 if type_ == lib.RTM_NEWQDISC)
        return [q for q in found if index in (None, q.index)]

    def add_redirect(self, from_index: int, to_index: int):
        """Send every packet arriving on ``from_index`` out of ``to_index``: a u32 filter
        matching everything on from's ingress qdisc (which must exist), with a mirred
        egress redirect action."""
        source, target = self._name(from_index), self._name(to_index)
        self._request(lib.RTM_NEWTFILTER, redirect_request(from_index, to_index),
                      lambda: "redirecting ingress of %s to %s" % (source(), target()), _CREATE)

    def filters(self, index: int) -> list:
        """The filter rules on the link's ingress qdisc (none when it has no such qdisc)."""
        body = TcMsg(index=index, parent=INGRESS_HANDLE)
        found = (filter_from_message(reply) for type_, _, reply
                 in self._dump(lib.RTM_GETTFILTER, body, "listing filters")
                 if type_ == lib.RTM_NEWTFILTER)
        return [f for f in found if f is not None]
