"""What route netlink reports and accepts, as plain objects: links, addresses, routes,
qdiscs and filters; and the message bodies that ask the kernel for them.

Pure like the codec (no sockets): ``*_from_message`` builds an object from a parsed body
and raises only NetlinkParseError on bytes that do not fit; ``*_request`` builds the body
of a request. ``ukrun.kernel.rtnl`` re-exports the objects and sends the requests.
"""
from __future__ import annotations

import _socket  # not socket: see ukrun.kernel.rtnl

from ukrun.kernel import inet
from ukrun.kernel.ffi import lib
from ukrun.kernel.mac import format_mac
from ukrun.kernel.netlink import (Attr, Layout, NetlinkParseError, attr_nested, attr_scalar,
                                  attr_string, attr_u32, parse_attrs)
from ukrun.kernel.netlink_bodies import IfAddrMsg, IfInfoMsg, RtMsg, TcMsg
from ukrun.valueclass import value_class

# Addresses are ukrun.kernel.inet values (ipaddress's interface, without its import cost): the
# packed bytes of each family are this long.
_PACKED_SIZE = {_socket.AF_INET: 4, _socket.AF_INET6: 16}
_FAMILY = {4: _socket.AF_INET, 6: _socket.AF_INET6}

# The payloads of u32's selector and of the mirred action (tests check them against the C
# layout). __be32/__be16 fields stay raw bytes: they are in network order, unlike the rest.
TC_U32_KEY = Layout("struct tc_u32_key", [("mask", "4s"), ("val", "4s"), ("off", "i"),
                                          ("offmask", "i")])
TC_U32_SEL = Layout("struct tc_u32_sel", [("flags", "B"), ("offshift", "B"), ("nkeys", "B"),
                                          ("", "x"), ("offmask", "2s"), ("off", "H"),
                                          ("offoff", "h"), ("hoff", "h"), ("hmask", "4s")])
TC_MIRRED = Layout("struct tc_mirred", [("index", "I"), ("capab", "I"), ("action", "i"),
                                        ("refcnt", "i"), ("bindcnt", "i"), ("eaction", "i"),
                                        ("ifindex", "I")])

# The ingress qdisc's handle, ffff:0 (TC_H_MAKE(TC_H_INGRESS, 0) in tc's terms).
INGRESS_HANDLE = lib.TC_H_INGRESS & lib.TC_H_MAJ_MASK


def _ip(data: bytes | None, family: int, what: str) -> inet.IP | None:
    if data is None:
        return None
    if len(data) != _PACKED_SIZE[family]:
        raise NetlinkParseError("%s: %d bytes are no address of family %d"
                                % (what, len(data), family))
    return inet.IP(bytes(data))


@value_class(frozen=True)
class Link:
    """A network interface as RTM_NEWLINK reports it.

    ``name`` holds bytes that are not UTF-8 as lone surrogates (surrogateescape), so it goes
    back to the kernel unchanged. ``alias`` is IFLA_IFALIAS when it is UTF-8 text, else None:
    ukrun writes its records as UTF-8, so any other alias is someone else's and no record.
    ``kind`` is IFLA_INFO_KIND ("veth", "tun", "bridge" ...; None for a real NIC or lo).
    ``parent_dev`` and ``parent_bus`` are the device the interface sits on and its bus
    (IFLA_PARENT_DEV_NAME / _BUS_NAME: "0000:00:03.0" on "pci", "virtio2" on "virtio"),
    None when it has none: veth, macvlan, ipvlan, netkit, tun, bridges and lo have none.
    ``tun_data`` is a tun device's IFLA_INFO_DATA, raw: ``tun`` decodes it (TunInfo).
    """

    index: int
    name: str
    mac: str | None
    mtu: int
    flags: int
    master: int | None
    kind: str | None
    alias: str | None
    parent_dev: str | None = None
    parent_bus: str | None = None
    addr_gen_mode: int | None = None  # IFLA_INET6_ADDR_GEN_MODE; None without IPv6
    tun_data: bytes | None = None  # IFLA_INFO_DATA of a tun device, as sent; see ``tun``

    @property
    def up(self) -> bool:
        return bool(self.flags & lib.IFF_UP)

    @property
    def tun(self) -> TunInfo | None:
        """A tun device's settings; None for other kinds, and for a tun device of a kernel
        before 4.15, which reports none. Decoded only when asked for, so that a device no
        one asks about never fails a dump: NetlinkParseError, naming the link, when the
        bytes do not fit."""
        if self.kind != "tun" or self.tun_data is None:
            return None
        return _link_attr(self.index, "IFLA_INFO_DATA", lambda: tun_info(self.tun_data))


@value_class(frozen=True)
class TunInfo:
    """What the kernel reports of a tun device (IFLA_INFO_DATA, kind "tun"); None where an
    attribute is missing. ``type`` is IFF_TUN (an L3 device: bare IP packets) or IFF_TAP
    (Ethernet frames); ``pi``: each packet comes with a packet-information header (IFF_NO_PI
    off); ``owner`` and ``group``: who alone may attach without CAP_NET_ADMIN (None: anyone).
    """

    type: int | None = None
    pi: bool | None = None
    persist: bool | None = None
    multi_queue: bool | None = None
    owner: int | None = None
    group: int | None = None


# TunInfo's fields: (field, attribute, its name in errors, its kind, whether a flag).
_TUN_FIELDS = (("type", lib.IFLA_TUN_TYPE, "IFLA_TUN_TYPE", "u8", False),
               ("pi", lib.IFLA_TUN_PI, "IFLA_TUN_PI", "u8", True),
               ("persist", lib.IFLA_TUN_PERSIST, "IFLA_TUN_PERSIST", "u8", True),
               ("multi_queue", lib.IFLA_TUN_MULTI_QUEUE, "IFLA_TUN_MULTI_QUEUE", "u8", True),
               ("owner", lib.IFLA_TUN_OWNER, "IFLA_TUN_OWNER", "u32", False),
               ("group", lib.IFLA_TUN_GROUP, "IFLA_TUN_GROUP", "u32", False))


def tun_info(data: bytes) -> TunInfo:
    """The TunInfo in a tun device's IFLA_INFO_DATA payload. Attributes it does not know are
    ignored; one of the wrong size raises NetlinkParseError naming it."""
    attrs = parse_attrs(data)
    values = {}
    for field, type_, name, kind, as_bool in _TUN_FIELDS:
        try:
            value = attrs.scalar(type_, kind)
        except NetlinkParseError as e:
            raise NetlinkParseError("%s: %s" % (name, e)) from None
        values[field] = bool(value) if as_bool and value is not None else value
    return TunInfo(**values)


def _link_attr(index: int, what: str, read):
    """``read()``, with a NetlinkParseError naming the attribute and the link."""
    try:
        return read()
    except NetlinkParseError as e:
        raise NetlinkParseError("link %d: %s: %s" % (index, what, e)) from None


def link_from_message(body: IfInfoMsg) -> Link:
    """The link in an RTM_NEWLINK body. Only the attributes a Link holds are read, so no
    other attribute can make it fail; among those, text never fails (see Link), and one
    of the wrong size raises NetlinkParseError naming it."""
    attrs, index = body.attrs, body.index
    name = attrs.string(lib.IFLA_IFNAME, errors="surrogateescape")
    if name is None:
        raise NetlinkParseError("link %d comes without IFLA_IFNAME" % index)
    try:
        alias = attrs.string(lib.IFLA_IFALIAS) or None
    except NetlinkParseError:
        alias = None
    mac = attrs.data(lib.IFLA_ADDRESS)
    linkinfo = _link_attr(index, "IFLA_LINKINFO", lambda: attrs.nested(lib.IFLA_LINKINFO))
    kind = linkinfo.string(lib.IFLA_INFO_KIND, errors="surrogateescape")
    return Link(index=index, name=name, mac=format_mac(mac) if mac else None,
                mtu=_link_attr(index, "IFLA_MTU", lambda: attrs.u32(lib.IFLA_MTU, 0)),
                flags=body.flags,
                master=_link_attr(index, "IFLA_MASTER", lambda: attrs.u32(lib.IFLA_MASTER)) or None,
                kind=kind, alias=alias,
                parent_dev=attrs.string(lib.IFLA_PARENT_DEV_NAME, errors="surrogateescape"),
                parent_bus=attrs.string(lib.IFLA_PARENT_DEV_BUS_NAME, errors="surrogateescape"),
                addr_gen_mode=_link_attr(index, "IFLA_INET6_ADDR_GEN_MODE",
                                         lambda: _addr_gen_mode(attrs)),
                # Kept for tun devices only: a bridge's data holds timers that change.
                tun_data=linkinfo.data(lib.IFLA_INFO_DATA) if kind == "tun" else None)


def _addr_gen_mode(attrs) -> int | None:
    inet6 = attrs.nested(lib.IFLA_AF_SPEC).nested(_socket.AF_INET6)
    mode = inet6.data(lib.IFLA_INET6_ADDR_GEN_MODE)
    if mode is None:
        return None
    if len(mode) != 1:
        raise NetlinkParseError("%d bytes, not 1" % len(mode))
    return mode[0]


def addr_gen_mode_attrs(mode: int) -> list:
    """The IFLA_AF_SPEC attribute that sets a link's IPv6 address generation mode."""
    inet6 = attr_nested(_socket.AF_INET6, [attr_scalar(lib.IFLA_INET6_ADDR_GEN_MODE, "u8", mode)])
    return [attr_nested(lib.IFLA_AF_SPEC, [inet6])]


@value_class(frozen=True)
class Address:
    """An address on a link as RTM_NEWADDR reports it. Its addresses are ukrun.kernel.inet values
    when read from the kernel; ipaddress objects serve as well (ukrun.kernel.inet.public)."""

    index: int
    interface: inet.Interface
    scope: int = 0
    flags: int = 0  # IFA_F_*
    broadcast: inet.IP | None = None
    label: str | None = None
    peer: inet.IP | None = None  # the other end of a point-to-point address

    @property
    def family(self) -> int:
        return _FAMILY[self.interface.version]


def address_from_message(body: IfAddrMsg) -> Address | None:
    """The address in an RTM_NEWADDR body; None for families other than IPv4/IPv6."""
    if body.family not in _PACKED_SIZE:
        return None
    attrs = body.attrs
    # IFA_LOCAL is this host's address; IFA_ADDRESS is the same, or the peer's on a
    # point-to-point link (IPv6 sends IFA_LOCAL only in that case).
    local = _ip(attrs.data(lib.IFA_LOCAL), body.family, "IFA_LOCAL")
    address = _ip(attrs.data(lib.IFA_ADDRESS), body.family, "IFA_ADDRESS")
    if local is None and address is None:
        raise NetlinkParseError("address on link %d has neither IFA_LOCAL nor IFA_ADDRESS" % body.index)
    try:
        interface = inet.Interface(address if local is None else local, body.prefixlen)
    except ValueError as e:
        raise NetlinkParseError("address on link %d: %s" % (body.index, e)) from None
    return Address(index=body.index, interface=interface, scope=body.scope,
                   flags=attrs.u32(lib.IFA_FLAGS, body.flags),
                   broadcast=_ip(attrs.data(lib.IFA_BROADCAST), body.family, "IFA_BROADCAST"),
                   label=attrs.string(lib.IFA_LABEL, errors="surrogateescape"),
                   peer=address if local is not None and address != local else None)


def address_request(addr: Address) -> IfAddrMsg:
    """The body of RTM_NEWADDR/RTM_DELADDR, as `ip addr add|del` sends it."""
    ip = addr.interface.ip
    attrs = [Attr(lib.IFA_LOCAL, ip.packed), Attr(lib.IFA_ADDRESS, (addr.peer or ip).packed)]
    if addr.broadcast is not None:
        attrs.append(Attr(lib.IFA_BROADCAST, addr.broadcast.packed))
    if addr.label:
        attrs.append(attr_string(lib.IFA_LABEL, addr.label))
    # ifa_flags holds the low 8 bits; IFA_FLAGS the whole set (IFA_F_NOPREFIXROUTE & co).
    attrs.append(attr_u32(lib.IFA_FLAGS, addr.flags))
    return IfAddrMsg(addr.family, addr.interface.network.prefixlen, addr.flags & 0xFF,
                     addr.scope, addr.index, attrs)


@value_class(frozen=True)
class Route:
    """A route as RTM_NEWROUTE reports it; addresses as in Address."""

    family: int
    dst: inet.Network
    gateway: inet.IP | None = None
    oif: int | None = None
    table: int = lib.RT_TABLE_MAIN
    protocol: int = lib.RTPROT_BOOT
    scope: int = lib.RT_SCOPE_UNIVERSE
    type: int = lib.RTN_UNICAST
    priority: int | None = None
    onlink: bool = False  # RTNH_F_ONLINK: the gateway is on the link even if no prefix says so
    prefsrc: inet.IP | None = None

    @property
    def is_default(self) -> bool:
        return self.dst.prefixlen == 0


def route_from_message(body: RtMsg) -> Route | None:
    """The route in an RTM_NEWROUTE body; None for families other than IPv4/IPv6."""
    if body.family not in _PACKED_SIZE:
        return None
    attrs = body.attrs
    dst = _ip(attrs.data(lib.RTA_DST), body.family, "RTA_DST")
    if dst is None:  # default routes come without RTA_DST
        dst = inet.IP(bytes(_PACKED_SIZE[body.family]))
    try:
        network = inet.Network(dst, body.dst_len, strict=False)
    except ValueError as e:
        raise NetlinkParseError("route: %s" % e) from None
    return Route(family=body.family, dst=network,
                 gateway=_ip(attrs.data(lib.RTA_GATEWAY), body.family, "RTA_GATEWAY"),
                 oif=attrs.u32(lib.RTA_OIF), table=attrs.u32(lib.RTA_TABLE, body.table),
                 protocol=body.protocol, scope=body.scope, type=body.type,
                 priority=attrs.u32(lib.RTA_PRIORITY), onlink=bool(body.flags & lib.RTNH_F_ONLINK),
                 prefsrc=_ip(attrs.data(lib.RTA_PREFSRC), body.family, "RTA_PREFSRC"))


def route_request(route: Route) -> RtMsg:
    """The body of RTM_NEWROUTE/RTM_DELROUTE, as `ip route add|del` sends it."""
    attrs = [attr_u32(lib.RTA_TABLE, route.table)]
    if route.dst.prefixlen:
        attrs.append(Attr(lib.RTA_DST, route.dst.network_address.packed))
    if route.gateway is not None:
        attrs.append(Attr(lib.RTA_GATEWAY, route.gateway.packed))
    if route.oif is not None:
        attrs.append(attr_u32(lib.RTA_OIF, route.oif))
    if route.priority is not None:
        attrs.append(attr_u32(lib.RTA_PRIORITY, route.priority))
    if route.prefsrc is not None:
        attrs.append(Attr(lib.RTA_PREFSRC, route.prefsrc.packed))
    # rtm_table has 8 bits; larger table ids travel in RTA_TABLE only.
    table = route.table if route.table < 256 else lib.RT_TABLE_UNSPEC
    return RtMsg(route.family, route.dst.prefixlen, 0, 0, table, route.protocol, route.scope,
                 route.type, lib.RTNH_F_ONLINK if route.onlink else 0, attrs)


@value_class(frozen=True)
class Qdisc:
    index: int
    kind: str
    handle: int
    parent: int


def qdisc_from_message(body: TcMsg) -> Qdisc:
    return Qdisc(body.index, body.attrs.string(lib.TCA_KIND, "", "surrogateescape"), body.handle,
                 body.parent)


def ingress_qdisc_request(index: int) -> TcMsg:
    """The body of `tc qdisc add|del dev X ingress`."""
    return TcMsg(index=index, handle=INGRESS_HANDLE, parent=lib.TC_H_INGRESS,
                 attrs=[attr_string(lib.TCA_KIND, "ingress")])


@value_class(frozen=True)
class Filter:
    index: int
    kind: str
    parent: int
    redirect_to: int | None  # ifindex a mirred egress redirect action sends packets to
    handle: int = 0
    priority: int = 0
    protocol: int = 0  # ETH_P_*, host order


def filter_from_message(body: TcMsg) -> Filter | None:
    """The rule in an RTM_NEWTFILTER body, or None for what a dump also reports but is no
    rule: the per-priority header (no TCA_OPTIONS) and u32's hash tables (no selector)."""
    kind = body.attrs.string(lib.TCA_KIND, "", "surrogateescape")
    if body.attrs.get(lib.TCA_OPTIONS) is None:
        return None
    redirect_to = None
    if kind == "u32":  # the only classifier whose options ukrun reads
        options = body.attrs.nested(lib.TCA_OPTIONS)
        if options.get(lib.TCA_U32_SEL) is None:
            return None
        redirect_to = _mirred_redirect(options.nested(lib.TCA_U32_ACT))
    return Filter(body.index, kind, body.parent, redirect_to, body.handle,
                  priority=body.info >> 16, protocol=_socket.ntohs(body.info & 0xFFFF))


def _mirred_redirect(actions) -> int | None:
    for action in actions:  # each is nested, typed by its order (1, 2, ...)
        action = action.nested()
        if action.string(lib.TCA_ACT_KIND, errors="surrogateescape") != "mirred":
            continue
        parms = action.nested(lib.TCA_ACT_OPTIONS).data(lib.TCA_MIRRED_PARMS)
        if parms is None or len(parms) < TC_MIRRED.size:
            raise NetlinkParseError("mirred action without a whole struct tc_mirred")
        *_, eaction, ifindex = TC_MIRRED.struct.unpack_from(parms, 0)
        if eaction == lib.TCA_EGRESS_REDIR:
            return ifindex
    return None


def redirect_request(from_index: int, to_index: int) -> TcMsg:
    """The body `tc filter add dev FROM parent ffff: protocol all u32 match u8 0 0 action
    mirred egress redirect dev TO` sends (tests compare it with tc's own bytes)."""
    zero32 = b"\0" * 4
    selector = (TC_U32_SEL.struct.pack(lib.TC_U32_TERMINAL, 0, 1, b"\0\0", 0, 0, 0, zero32)
                + TC_U32_KEY.struct.pack(zero32, zero32, 0, 0))  # mask 0: matches every packet
    mirred = TC_MIRRED.struct.pack(0, 0, lib.TC_ACT_STOLEN, 0, 0, lib.TCA_EGRESS_REDIR, to_index)
    action = attr_nested(1, [attr_string(lib.TCA_ACT_KIND, "mirred"),
                             attr_nested(lib.TCA_ACT_OPTIONS, [Attr(lib.TCA_MIRRED_PARMS, mirred)],
                                         nested_flag=True)])
    options = attr_nested(lib.TCA_OPTIONS, [attr_nested(lib.TCA_U32_ACT, [action]),
                                            Attr(lib.TCA_U32_SEL, selector)])
    # tcm_info: priority (0: the kernel picks one) << 16 | protocol in network order.
    return TcMsg(index=from_index, handle=0, parent=INGRESS_HANDLE,
                 info=_socket.htons(lib.ETH_P_ALL), attrs=[attr_string(lib.TCA_KIND, "u32"), options])
