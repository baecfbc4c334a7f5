"""Tap devices: create or attach one by name, make it persistent, turn its offloads off.

Every rule about names lives here, checked before any syscall; the C in csrc/ only
does TUNSETIFF and SIOCETHTOOL. Kernel failures raise OSError with the errno.
"""
from __future__ import annotations

import errno
import os

from ukrun._ffi import check, ffi, lib

TUN_DEVICE = "/dev/net/tun"

# What disable_offloads turns off, as (name ethtool -k shows, get command, set command).
# GRO/GSO on a tap hand the guest frames larger than its MTU, which Solo5 truncates;
# Solo5 >= 0.11 tries to turn them off itself but needs CAP_NET_ADMIN, gone by then.
OFFLOADS = (
    ("gro", lib.ETHTOOL_GGRO, lib.ETHTOOL_SGRO),
    ("gso", lib.ETHTOOL_GGSO, lib.ETHTOOL_SGSO),
    ("tso", lib.ETHTOOL_GTSO, lib.ETHTOOL_STSO),
)


def validate_ifname(name: str) -> str:
    """Return ``name`` if the kernel would take it as an interface name as it is.

    Mirrors the kernel's dev_valid_name() and refuses ``%`` as well, since a
    ``%d`` makes the kernel pick the name itself ("yes, that's really in the
    Linux API", Solo5's tap_attach).
    """
    if not isinstance(name, str):
        raise TypeError("interface name must be a str, not %s" % type(name).__name__)
    if not name:
        raise ValueError("interface name is empty")
    if len(name.encode()) >= lib.IFNAMSIZ:
        raise ValueError("interface name %r is longer than %d bytes" % (name, lib.IFNAMSIZ - 1))
    if name in (".", ".."):
        raise ValueError("interface name %r is not allowed" % name)
    if "%" in name:
        raise ValueError("interface name %r contains '%%': the kernel would choose the name" % name)
    for char in name:
        if char in "/:\0" or char.isspace():
            raise ValueError("interface name %r contains %r" % (name, char))
    return name


class Tap:
    """An open tap: the fd (close-on-exec unless made inheritable) and its name."""

    def __init__(self, fd: int, name: str):
        self.fd = fd
        self.name = name

    def fileno(self) -> int:
        return self.fd

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        """Close the fd; a tap that is not persistent disappears with its last fd."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def set_persist(self, persist: bool) -> None:
        """TUNSETPERSIST: a persistent tap outlives its fds, so a guest can attach by name."""
        what = "making tap %s %s" % (self.name, "persistent" if persist else "non-persistent")
        check(lib.ukrun_tap_set_persist(self.fd, int(bool(persist))), what)

    def __enter__(self) -> Tap:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return "Tap(fd=%d, name=%r)" % (self.fd, self.name)


def open_tap(name: str, persist: bool = False, exclusive: bool = False) -> Tap:
    """Attach to tap ``name``, creating it when absent (IFF_TAP | IFF_NO_PI, O_CLOEXEC).

    ``exclusive`` refuses (EBUSY) to attach to one that already exists. Creating needs
    CAP_NET_ADMIN; attaching to a persistent tap with no owner or group does not.
    """
    validate_ifname(name)
    actual = ffi.new("char[]", lib.IFNAMSIZ)
    fd = check(lib.ukrun_tap_open(name.encode(), int(bool(exclusive)), actual),
               "opening tap %s" % name)
    tap = Tap(fd, name)
    try:
        got = ffi.string(actual).decode(errors="replace")
        if got != name:
            # validate_ifname makes this unreachable; never hand out a tap we did not ask for.
            raise OSError(errno.EINVAL, "the kernel named it %r" % got, "opening tap %s" % name)
        # Persist only once the name is checked, so no stray persistent tap is left behind.
        if persist:
            tap.set_persist(True)
    except BaseException:
        tap.close()
        raise
    return tap


def tun_usable() -> None:
    """Raise OSError naming /dev/net/tun when it cannot be opened read-write."""
    fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    os.close(fd)


def _ethtool(name: str, cmd: int, value: int, what: str) -> int:
    data = ffi.new("uint32_t *", value)
    check(lib.ukrun_ethtool_value(name.encode(), cmd, data), what)
    return data[0]


def offloads(name: str) -> dict:
    """The state of the offloads disable_offloads turns off: {"gro": bool, ...}."""
    validate_ifname(name)
    return {feature: bool(_ethtool(name, get, 0, "reading %s of %s (SIOCETHTOOL)" % (feature, name)))
            for feature, get, _ in OFFLOADS}


def disable_offloads(name: str) -> None:
    """Turn GRO, GSO and TSO off on ``name``, as ``ethtool -K NAME gro off gso off tso off``."""
    validate_ifname(name)
    for feature, get, set_ in OFFLOADS:
        what = "turning %s off on %s (SIOCETHTOOL)" % (feature, name)
        try:
            _ethtool(name, set_, 0, what)
        except OSError as e:
            # EOPNOTSUPP: the device cannot change this feature ("[fixed]" in ethtool -k).
            # That is fine when it is fixed off; read it back to know.
            if e.errno != errno.EOPNOTSUPP or _ethtool(name, get, 0, what):
                raise
