"""Netlink message bodies: what each message type carries after its header, no I/O.

ukrun.kernel.netlink frames messages and attributes without knowing any family; this module
knows the payloads: NLMSG_ERROR and NLMSG_DONE, route netlink's family headers (ifinfomsg,
ifaddrmsg, rtmsg, tcmsg, each followed by attributes), and netfilter's nfgenmsg. ``parse(data)``
turns the bytes of one or more messages (what one recv returns) into ``Message`` objects
whose bodies are decoded by type; ``encode`` (ukrun.kernel.netlink's) does the reverse. Like
the framing beneath it, ``parse`` raises only ``NetlinkParseError``, whatever the input.

The struct formats below are checked against the C compiler's layouts by the tests
(tests/support/sysheaders.py).
"""
from __future__ import annotations

import struct

from ukrun.kernel.ffi import lib
from ukrun.kernel.netlink import (NLMSG_ALIGN, NLMSGERR, NLMSGHDR, Attrs, Layout, Message,
                                  NetlinkParseError, pack_fields, parse_attrs, split)
from ukrun.valueclass import value_class

# Unnamed fields ("") are the compiler's padding; "x" codes are named C padding fields.
IFINFOMSG = Layout("struct ifinfomsg", [("ifi_family", "B"), ("__ifi_pad", "x"), ("ifi_type", "H"),
                                        ("ifi_index", "i"), ("ifi_flags", "I"), ("ifi_change", "I")])
IFADDRMSG = Layout("struct ifaddrmsg", [("ifa_family", "B"), ("ifa_prefixlen", "B"),
                                        ("ifa_flags", "B"), ("ifa_scope", "B"), ("ifa_index", "I")])
RTMSG = Layout("struct rtmsg", [("rtm_family", "B"), ("rtm_dst_len", "B"), ("rtm_src_len", "B"),
                                ("rtm_tos", "B"), ("rtm_table", "B"), ("rtm_protocol", "B"),
                                ("rtm_scope", "B"), ("rtm_type", "B"), ("rtm_flags", "I")])
TCMSG = Layout("struct tcmsg", [("tcm_family", "B"), ("tcm__pad1", "x"), ("tcm__pad2", "xx"),
                                ("tcm_ifindex", "i"), ("tcm_handle", "I"), ("tcm_parent", "I"),
                                ("tcm_info", "I")])
# Netfilter's header (after nlmsghdr) and the NFQUEUE config command (ukrun.kernel.process's lock).
NFGENMSG = Layout("struct nfgenmsg", [("nfgen_family", "B"), ("version", "B"), ("res_id", "2s")])
NFQNL_MSG_CONFIG_CMD = Layout("struct nfqnl_msg_config_cmd", [("command", "B"), ("_pad", "x"),
                                                              ("pf", "2s")])
_DONE_STATUS = struct.Struct("=i")  # NLMSG_DONE's payload opens with an int


class _WithAttrs:
    """Lets callers pass attributes as any iterable; stored as Attrs so bodies compare equal."""

    def __post_init__(self):
        if not isinstance(self.attrs, Attrs):
            object.__setattr__(self, "attrs", Attrs(self.attrs))


def _fixed(layout: Layout, view: memoryview) -> tuple:
    if len(view) < layout.size:
        raise NetlinkParseError("%d bytes are too few for %s (%d)" % (len(view), layout.cname, layout.size))
    return layout.struct.unpack_from(view, 0)


# --- route netlink: a family header, then attributes -----------------------------------

class _StructAndAttrs(_WithAttrs):
    """A body that is one fixed struct (``_layout``, fields in the same order) then attributes."""

    _layout: Layout  # set by each subclass; not a field (no value here)

    @classmethod
    def unpack(cls, view: memoryview, msg_flags: int):
        layout = cls._layout
        return cls(*_fixed(layout, view), parse_attrs(view[min(NLMSG_ALIGN(layout.size), len(view)):]))

    def pack(self) -> bytes:
        values = [getattr(self, name) for name in self._fields if name != "attrs"]
        return pack_fields(self._layout.struct, self._layout.cname, *values) + self.attrs.pack()


@value_class(frozen=True)
class IfInfoMsg(_StructAndAttrs):
    """RTM_*LINK: struct ifinfomsg and IFLA_* attributes."""

    _layout = IFINFOMSG
    family: int = 0
    type: int = 0
    index: int = 0
    flags: int = 0
    change: int = 0
    attrs: Attrs = Attrs()


@value_class(frozen=True)
class IfAddrMsg(_StructAndAttrs):
    """RTM_*ADDR: struct ifaddrmsg and IFA_* attributes."""

    _layout = IFADDRMSG
    family: int = 0
    prefixlen: int = 0
    flags: int = 0
    scope: int = 0
    index: int = 0
    attrs: Attrs = Attrs()


@value_class(frozen=True)
class RtMsg(_StructAndAttrs):
    """RTM_*ROUTE: struct rtmsg and RTA_* attributes."""

    _layout = RTMSG
    family: int = 0
    dst_len: int = 0
    src_len: int = 0
    tos: int = 0
    table: int = 0
    protocol: int = 0
    scope: int = 0
    type: int = 0
    flags: int = 0
    attrs: Attrs = Attrs()


@value_class(frozen=True)
class TcMsg(_StructAndAttrs):
    """RTM_*QDISC, RTM_*TCLASS, RTM_*TFILTER: struct tcmsg and TCA_* attributes."""

    _layout = TCMSG
    family: int = 0
    index: int = 0
    handle: int = 0
    parent: int = 0
    info: int = 0
    attrs: Attrs = Attrs()


# --- every family: the answer to a request, the end of a dump ---------------------------

@value_class(frozen=True)
class Header:
    """A struct nlmsghdr as found inside an NLMSG_ERROR (the request it answers)."""

    len: int = NLMSGHDR.size
    type: int = 0
    flags: int = 0
    seq: int = 0
    pid: int = 0


def _ack_tlvs(view: memoryview, start: int, msg_flags: int) -> Attrs:
    # Extended-ack attributes follow only when the kernel says so.
    if not msg_flags & lib.NLM_F_ACK_TLVS:
        return Attrs()
    return parse_attrs(view[min(start, len(view)):])


@value_class(frozen=True)
class NlMsgErr(_WithAttrs):
    """NLMSG_ERROR: error 0 is an ack, else -errno; with the request's header, its payload
    (unless NLM_F_CAPPED) and extended-ack attributes (when NLM_F_ACK_TLVS).

    Kernels before 4.12 have neither flag: an ack, and an error on a NETLINK_CAP_ACK
    socket, carry the request's header alone, with nothing saying the payload is left out.
    So without both flags, a message that ends right after the header is read as capped.
    """

    error: int = 0
    request: Header = Header()
    request_payload: bytes = b""
    attrs: Attrs = Attrs()

    @property
    def errno(self) -> int:
        return -self.error

    @property
    def ext_ack(self) -> str | None:
        """The kernel's NLMSGERR_ATTR_MSG text, when it sent one (a message to show, so
        bytes that are not UTF-8 become U+FFFD rather than an error)."""
        return self.attrs.string(lib.NLMSGERR_ATTR_MSG, errors="replace")

    @classmethod
    def unpack(cls, view: memoryview, msg_flags: int) -> "NlMsgErr":
        error, *request = _fixed(NLMSGERR, view)
        request = Header(*request)
        if request.len < NLMSGHDR.size:
            raise NetlinkParseError("NLMSG_ERROR answers a request of length %d" % request.len)
        payload = b""
        room = len(view) - NLMSGERR.size
        capped_before_4_12 = room == 0 and not msg_flags & lib.NLM_F_ACK_TLVS
        if not msg_flags & lib.NLM_F_CAPPED and not capped_before_4_12:
            size = request.len - NLMSGHDR.size
            if size > room:
                raise NetlinkParseError("NLMSG_ERROR echoes a request of length %d in %d bytes"
                                        % (request.len, len(view)))
            payload = bytes(view[NLMSGERR.size:NLMSGERR.size + size])
        attrs = _ack_tlvs(view, NLMSG_ALIGN(NLMSGERR.size + len(payload)), msg_flags)
        return cls(error, request, payload, attrs)

    def pack(self) -> bytes:
        r = self.request
        head = (pack_fields(NLMSGERR.struct, NLMSGERR.cname, self.error, r.len, r.type, r.flags,
                            r.seq, r.pid)
                + self.request_payload)
        return head + b"\0" * (NLMSG_ALIGN(len(head)) - len(head)) + self.attrs.pack()


@value_class(frozen=True)
class Done(_WithAttrs):
    """NLMSG_DONE: the end of a dump; a negative status is the dump's -errno."""

    status: int = 0
    attrs: Attrs = Attrs()

    @classmethod
    def unpack(cls, view: memoryview, msg_flags: int) -> "Done":
        if len(view) < _DONE_STATUS.size:
            return cls()  # old kernels and some families end dumps with an empty DONE
        return cls(_DONE_STATUS.unpack_from(view, 0)[0],
                   _ack_tlvs(view, _DONE_STATUS.size, msg_flags))

    def pack(self) -> bytes:
        return pack_fields(_DONE_STATUS, "NLMSG_DONE status", self.status) + self.attrs.pack()


_BODIES = {lib.NLMSG_ERROR: NlMsgErr, lib.NLMSG_DONE: Done}
for _kind, _names in ((IfInfoMsg, "NEWLINK DELLINK GETLINK SETLINK"),
                      (IfAddrMsg, "NEWADDR DELADDR GETADDR"),
                      (RtMsg, "NEWROUTE DELROUTE GETROUTE"),
                      (TcMsg, "NEWQDISC DELQDISC GETQDISC NEWTCLASS DELTCLASS GETTCLASS "
                              "NEWTFILTER DELTFILTER GETTFILTER")):
    for _name in _names.split():
        _BODIES[getattr(lib, "RTM_" + _name)] = _kind


# --- decoding by type --------------------------------------------------------------------

def parse(data) -> list:
    """Decode every message in ``data`` (bytes-like: what one recv on a netlink socket returns).

    Returns the messages in order, NLMSG_DONE and NLMSG_ERROR included; a message type this
    codec does not know keeps its payload as raw bytes in ``body``. Raises NetlinkParseError,
    and nothing else, when a length does not fit what remains or a payload is cut short.

        >>> [m.type for m in parse(b"")]
        []
    """
    return [Message(type_, flags, seq, pid, decode_body(offset, type_, flags, payload))
            for offset, type_, flags, seq, pid, payload in split(data)]


def decode_body(offset: int, type_: int, flags: int, payload):
    """The body of the message of ``type_`` found at ``offset`` (``split``'s): decoded by its
    type, raw bytes for unknown types; NetlinkParseError naming the message when it does not
    fit."""
    kind = _BODIES.get(type_)
    try:
        return bytes(payload) if kind is None else kind.unpack(payload, flags)
    except NetlinkParseError as e:
        raise NetlinkParseError("message type %d at offset %d: %s" % (type_, offset, e)) from None
