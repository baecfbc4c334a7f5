"""Tap devices: create or attach one by name, make it persistent, turn its offloads off.

Every name is checked before any syscall, by the one rule in ukrun.ifname (re-exported
here as ``validate_ifname``); the C in csrc/ only does TUNSETIFF and SIOCETHTOOL.
Kernel failures raise OSError with the errno.
"""
from __future__ import annotations

import errno
import os

from ukrun._ffi import check, ffi, lib
from ukrun.ifname import ifname_bytes, validate_ifname  # also ukrun.tap.validate_ifname

TUN_DEVICE = "/dev/net/tun"

# What disable_offloads turns off, as (name ethtool -k shows, get command, set command).
# GRO/GSO on a tap hand the guest frames larger than its MTU, which Solo5 truncates;
# Solo5 >= 0.11 tries to turn them off itself but needs CAP_NET_ADMIN, gone by then.
OFFLOADS = (
    ("gro", lib.ETHTOOL_GGRO, lib.ETHTOOL_SGRO),
    ("gso", lib.ETHTOOL_GGSO, lib.ETHTOOL_SGSO),
    ("tso", lib.ETHTOOL_GTSO, lib.ETHTOOL_STSO),
)


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
    asked = ifname_bytes(validate_ifname(name))
    actual = ffi.new("char[]", lib.IFNAMSIZ)
    fd = check(lib.ukrun_tap_open(asked, int(bool(exclusive)), actual), "opening tap %s" % name)
    tap = Tap(fd, name)
    try:
        got = ffi.string(actual)
        if got != asked:
            # validate_ifname makes this unreachable; never hand out a tap we did not ask for.
            raise OSError(errno.EINVAL, "the kernel named it %r" % got.decode("utf-8", "replace"),
                          "opening tap %s" % name)
        # Persist only once the name is checked, so no stray persistent tap is left behind.
        if persist:
            tap.set_persist(True)
    except BaseException:
        tap.close()
        raise
    return tap


def _ethtool(name: str, cmd: int, value: int, what: str) -> int:
    data = ffi.new("uint32_t *", value)
    check(lib.ukrun_ethtool_value(ifname_bytes(name), cmd, data), what)
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
