"""Interface names as the kernel takes them: one rule for taps, bridges and look-ups.

A name is bytes to the kernel, not text. ukrun holds it as a ``str`` whose non-UTF-8 bytes
are lone surrogates (``surrogateescape``, as Python decodes argv and file names), so a
name read from the kernel goes back to it unchanged.
"""
from __future__ import annotations

from ukrun.kernel.ffi import lib

# The kernel's isspace() (lib/ctype.c): \t \n \v \f \r, space, and 0xA0, Latin-1's no-break
# space, so a UTF-8 name holding a byte 0xA0 ("à" is C3 A0) is refused too.
_KERNEL_SPACE = frozenset(b"\t\n\v\f\r \xa0")


def ifname_bytes(name: str) -> bytes:
    """The bytes the kernel sees for ``name`` (UTF-8, lone surrogates as their bytes)."""
    return name.encode("utf-8", "surrogateescape")


def validate_ifname(name: str) -> str:
    """Return ``name`` if the kernel would take it as an interface name as it is.

    Mirrors the kernel's dev_valid_name() on the name's bytes: 1 to IFNAMSIZ - 1 bytes,
    not "." or "..", no "/", ":" or kernel whitespace. Refuses NUL, which would cut
    the name short, and ``%``, which makes the kernel pick the name itself ("yes,
    that's really in the Linux API", Solo5's tap_attach); no existing link has one.
    ValueError names the rule broken; TypeError for anything but a str.
    """
    if not isinstance(name, str):
        raise TypeError("interface name must be a str, not %s" % type(name).__name__)
    if not name:
        raise ValueError("interface name is empty")
    try:
        data = ifname_bytes(name)
    except UnicodeEncodeError:  # a lone surrogate that surrogateescape did not make
        raise ValueError("interface name %r is not text the kernel can take" % (name,)) from None
    if len(data) >= lib.IFNAMSIZ:
        raise ValueError("interface name %r is longer than %d bytes" % (name, lib.IFNAMSIZ - 1))
    if name in (".", ".."):
        raise ValueError("interface name %r is not allowed" % name)
    if "%" in name:
        raise ValueError("interface name %r contains '%%': the kernel would choose the name" % name)
    for byte in data:
        if byte in b"/:\0" or byte in _KERNEL_SPACE:
            raise ValueError("interface name %r contains %r" % (name, chr(byte)))
    return name
