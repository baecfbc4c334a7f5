"""Netlink framing codec: message headers and attributes, the same in every family, no I/O.

``split(data)`` walks the messages in the bytes of one recv, each as its header's fields and
a payload left undecoded; ``encode(message)`` and ``pack_message`` frame one. ``split`` trusts
no length it reads: every length is checked against the bytes that remain, every loop
advances, and the only exception it raises is ``NetlinkParseError`` (a ValueError), whatever
the input. What a payload holds depends on the message type and family, so decoding it
(and ``parse``, which decodes whole datagrams) is ukrun.kernel.netlink_bodies' business.

Attributes are kept as raw bytes (``Attr``) and decoded on request (``Attrs.u32``,
``Attr.nested`` ...), because whether an attribute is nested depends on its type and
message kind, not on anything the bytes say (the kernel often leaves NLA_F_NESTED unset).
Readers raise NetlinkParseError too when the bytes do not fit the type asked for. Encoding
raises ValueError (never struct.error) for a field that does not fit its C type.

Numbers come from the system headers through csrc/netlink.cdef; the struct formats below
are checked against the C compiler's layouts by the tests (tests/support/sysheaders.py).
"""
from __future__ import annotations

import struct
from _operator import itemgetter  # not collections.namedtuple: collections costs a run ~1 ms

from ukrun.kernel.ffi import lib
from ukrun.valueclass import value_class


class NetlinkParseError(ValueError):
    """The bytes are not a well-formed netlink message (or attribute of the type asked for)."""


# The kernel's alignment macros (include/uapi/linux/netlink.h, rtnetlink.h). The
# constants are read from cffi's lib once: attribute access on it is slow in a hot loop.
_NLMSG_ALIGNTO, _RTA_ALIGNTO, _NLA_ALIGNTO = lib.NLMSG_ALIGNTO, lib.RTA_ALIGNTO, lib.NLA_ALIGNTO


def NLMSG_ALIGN(length: int) -> int:
    return (length + _NLMSG_ALIGNTO - 1) & ~(_NLMSG_ALIGNTO - 1)


def RTA_ALIGN(length: int) -> int:
    return (length + _RTA_ALIGNTO - 1) & ~(_RTA_ALIGNTO - 1)


def NLA_ALIGN(length: int) -> int:
    return (length + _NLA_ALIGNTO - 1) & ~(_NLA_ALIGNTO - 1)


class Layout:
    """A kernel struct as a ``struct.Struct`` (native byte order, standard sizes) plus
    its C field names, so that tests can compare sizes and offsets with ``ffi``'s."""

    def __init__(self, cname: str, fields: list):
        self.cname = cname
        self.fields = fields
        self.struct = struct.Struct("=" + "".join(code for _, code in fields))
        self.size = self.struct.size

    def offsetof(self, name: str) -> int:
        codes = []
        for field_name, code in self.fields:
            if field_name == name:
                return struct.calcsize("=" + "".join(codes))
            codes.append(code)
        raise KeyError(name)


# The message header, the struct nlmsgerr opening an NLMSG_ERROR (``ack_error`` reads its
# error) and the attribute header.
NLMSGHDR = Layout("struct nlmsghdr", [("nlmsg_len", "I"), ("nlmsg_type", "H"),
                                      ("nlmsg_flags", "H"), ("nlmsg_seq", "I"), ("nlmsg_pid", "I")])
NLMSGERR = Layout("struct nlmsgerr", [("error", "i"), ("msg", "IHHII")])
RTATTR = Layout("struct rtattr", [("rta_len", "H"), ("rta_type", "H")])
_SCALARS = {"u8": struct.Struct("=B"), "u16": struct.Struct("=H"), "u32": struct.Struct("=I"),
            "s32": struct.Struct("=i"), "u64": struct.Struct("=Q")}
_S32 = _SCALARS["s32"]
# NLA_TYPE_MASK is ~(flag bits), a negative int in C: keep the 16 bits rta_type has.
_TYPE_MASK = lib.NLA_TYPE_MASK & 0xFFFF
_FLAG_BITS = lib.NLA_F_NESTED | lib.NLA_F_NET_BYTEORDER


# --- attributes ------------------------------------------------------------------------

class Attr(tuple):
    """One attribute: its ``type`` (NLA_F_* bits masked off), its payload ``data``, and
    ``flags``, the NLA_F_NESTED / NLA_F_NET_BYTEORDER bits as found or to be sent.

    A named tuple (type, data, flags): a 64 KiB dump can hold 16000 of them, and a tuple is
    the cheapest to make.
    """

    __slots__ = ()

    def __new__(cls, type: int, data: bytes = b"", flags: int = 0):
        return tuple.__new__(cls, (type, data, flags))

    type = property(itemgetter(0))
    data = property(itemgetter(1))
    flags = property(itemgetter(2))

    def __repr__(self) -> str:
        return "Attr(type=%r, data=%r, flags=%r)" % self

    def __getnewargs__(self):
        return tuple(self)

    def scalar(self, kind: str) -> int:
        """The payload as "u8", "u16", "u32", "s32" or "u64"; its size must be exact."""
        codec = _scalar_codec(kind)
        if len(self.data) != codec.size:
            raise NetlinkParseError("attribute %d: %d bytes, not a %s" % (self.type, len(self.data), kind))
        return codec.unpack(self.data)[0]

    def string(self, errors: str = "strict") -> str:
        """The payload up to its first NUL (the kernel sends NUL-terminated strings), as
        UTF-8. ``errors`` is codecs': "strict" raises NetlinkParseError on other bytes;
        "surrogateescape" never raises and keeps them, so the text encodes back to them."""
        try:
            return self.data.split(b"\0", 1)[0].decode("utf-8", errors)
        except UnicodeDecodeError as e:
            raise NetlinkParseError("attribute %d: not UTF-8 text: %s" % (self.type, e)) from None

    def nested(self) -> "Attrs":
        return parse_attrs(self.data)


class Attrs(tuple):
    """The attributes of a message or of a nested attribute, in order, with typed look-ups.

    A look-up finds the last attribute of a type, as the kernel's nla_parse does, or
    returns ``default`` when there is none.
    """

    def get(self, type_: int) -> Attr | None:
        for attr in reversed(self):
            if attr.type == type_:
                return attr
        return None

    def all(self, type_: int) -> list:
        return [attr for attr in self if attr.type == type_]

    def data(self, type_: int, default=None):
        attr = self.get(type_)
        return default if attr is None else attr.data

    def scalar(self, type_: int, kind: str, default=None):
        """The value of a "u8", "u16", "u32", "s32" or "u64" attribute."""
        attr = self.get(type_)
        return default if attr is None else attr.scalar(kind)

    def u32(self, type_: int, default=None):
        return self.scalar(type_, "u32", default)

    def string(self, type_: int, default=None, errors: str = "strict"):
        attr = self.get(type_)
        return default if attr is None else attr.string(errors)

    def nested(self, type_: int) -> "Attrs":
        """The attributes nested in ``type_``; empty when it is absent."""
        attr = self.get(type_)
        return Attrs() if attr is None else attr.nested()

    def pack(self) -> bytes:
        return b"".join(pack_attr(attr) for attr in self)


def pack_attr(attr: Attr) -> bytes:
    if not 0 <= attr.type <= _TYPE_MASK:
        raise ValueError("attribute type %r out of range" % (attr.type,))
    if attr.flags & ~_FLAG_BITS:
        raise ValueError("attribute flags %#x are not NLA_F_* bits" % attr.flags)
    length = RTATTR.size + len(attr.data)
    if length > 0xFFFF:
        raise ValueError("attribute %d: %d bytes do not fit rta_len" % (attr.type, len(attr.data)))
    padding = b"\0" * (RTA_ALIGN(length) - length)
    return RTATTR.struct.pack(length, attr.type | attr.flags) + bytes(attr.data) + padding


def parse_attrs(data) -> Attrs:
    """Decode a run of attributes; each rta_len must be >= 4 and within what remains."""
    data = bytes(data)  # slicing bytes makes the payloads in one step
    end = len(data)
    unpack_from, header_size = RTATTR.struct.unpack_from, RTATTR.size  # the hot loop: locals
    new = tuple.__new__  # Attr's own __new__, without its call: a link holds fifty attributes
    attrs = []
    offset = 0
    while offset < end:
        remaining = end - offset
        if remaining < header_size:
            raise NetlinkParseError("%d stray bytes after the attributes" % remaining)
        length, raw_type = unpack_from(data, offset)
        # Don't allow a misleading length: too short to hold its header, or past the end.
        if length < header_size or length > remaining:
            raise NetlinkParseError("attribute length %d with %d bytes left" % (length, remaining))
        attrs.append(new(Attr, (raw_type & _TYPE_MASK, data[offset + header_size:offset + length],
                                raw_type & _FLAG_BITS)))
        offset += min(RTA_ALIGN(length), remaining)  # >= 4: always advances
    return Attrs(attrs)


def _scalar_codec(kind: str) -> struct.Struct:
    try:
        return _SCALARS[kind]
    except KeyError:
        raise ValueError("%r is not one of %s" % (kind, ", ".join(_SCALARS))) from None


def pack_fields(codec: struct.Struct, what: str, *values) -> bytes:
    """codec.pack, with ValueError naming ``what`` instead of struct.error: a value out
    of its field's range is the caller's mistake, found before anything is sent."""
    try:
        return codec.pack(*values)
    except struct.error as e:
        raise ValueError("%s: %s: %r" % (what, e, values)) from None


# Builders for the attribute kinds the kernel uses.
def attr_scalar(type_: int, kind: str, value: int) -> Attr:
    """A "u8", "u16", "u32", "s32" or "u64" attribute; ValueError when ``value`` is out
    of the kind's range or not an integer."""
    return Attr(type_, pack_fields(_scalar_codec(kind), "attribute %d (%s)" % (type_, kind),
                                   value))


def attr_u32(type_: int, value: int) -> Attr:
    return attr_scalar(type_, "u32", value)


def attr_string(type_: int, value: str) -> Attr:
    """A NUL-terminated string (NLA_STRING / NLA_NUL_STRING both accept it), UTF-8 with lone
    surrogates as the bytes they stand for: what ``Attr.string("surrogateescape")`` read
    goes back as it came."""
    encoded = value.encode("utf-8", "surrogateescape")
    if b"\0" in encoded:
        raise ValueError("attribute %d: string %r holds a NUL" % (type_, value))
    return Attr(type_, encoded + b"\0")


def attr_nested(type_: int, attrs, nested_flag: bool = False) -> Attr:
    """An attribute holding ``attrs``; ``nested_flag`` sets NLA_F_NESTED, as tc does."""
    return Attr(type_, Attrs(attrs).pack(), lib.NLA_F_NESTED if nested_flag else 0)


# --- messages --------------------------------------------------------------------------

@value_class(frozen=True)
class Message:
    """One netlink message; ``body`` is decoded by type (ukrun.kernel.netlink_bodies), raw
    bytes for unknown types."""

    type: int
    flags: int = 0
    seq: int = 0
    pid: int = 0
    body: object = b""  # IfInfoMsg, IfAddrMsg, RtMsg, TcMsg, NlMsgErr, Done or bytes


def encode(message: Message) -> bytes:
    return pack_message(message.type, message.flags, message.seq, message.pid, message.body)


def pack_message(type_: int, flags: int, seq: int, pid: int, body) -> bytes:
    """``encode(Message(type_, flags, seq, pid, body))``, without making the Message."""
    payload = bytes(body) if isinstance(body, (bytes, bytearray)) else body.pack()
    length = NLMSGHDR.size + len(payload)
    if length > 0xFFFFFFFF:
        raise ValueError("message of %d bytes does not fit nlmsg_len" % length)
    header = pack_fields(NLMSGHDR.struct, NLMSGHDR.cname, length, type_, flags, seq, pid)
    return header + payload + b"\0" * (NLMSG_ALIGN(length) - length)


def split(data):
    """Each message in ``data`` as (offset, type, flags, seq, pid, payload), in order, its
    payload a memoryview left undecoded (``ack_error``; ukrun.kernel.netlink_bodies'
    ``decode_body``): what its ``parse`` makes Messages of, for a reader that decodes only the
    messages it wants. A generator; raises
    NetlinkParseError, and nothing else, when a length does not fit what remains."""
    view = memoryview(data).cast("B")
    end = len(view)
    unpack_from, header_size = NLMSGHDR.struct.unpack_from, NLMSGHDR.size
    offset = 0
    while offset < end:
        remaining = end - offset
        if remaining < header_size:
            raise NetlinkParseError("%d stray bytes after the messages" % remaining)
        length, type_, flags, seq, pid = unpack_from(view, offset)
        # Don't allow a misleading length: shorter than its own header, or past the end.
        if length < header_size or length > remaining:
            raise NetlinkParseError("message length %d with %d bytes left" % (length, remaining))
        yield offset, type_, flags, seq, pid, view[offset + header_size:offset + length]
        offset += min(NLMSG_ALIGN(length), remaining)  # >= 16: always advances


def ack_error(offset: int, payload) -> int:
    """The error of an NLMSG_ERROR payload, 0 for an ack, -errno for a refusal: the one field
    a request's answer needs when it is an ack (``netlink_bodies.decode_body`` reads the rest,
    for a refusal).
    NetlinkParseError when the payload cannot hold a struct nlmsgerr."""
    if len(payload) < NLMSGERR.size:
        raise NetlinkParseError("message type %d at offset %d: %d bytes are too few for %s (%d)"
                                % (lib.NLMSG_ERROR, offset, len(payload), NLMSGERR.cname,
                                   NLMSGERR.size))
    return _S32.unpack_from(payload, 0)[0]
