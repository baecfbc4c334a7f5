"""Tap devices: create or attach one by name, make it persistent and give it an owner, turn
its offloads off; and whether a link the kernel reports can be a guest's tap (tap_problem).

Every name is checked before any syscall, by the one rule in ukrun.kernel.ifname (re-exported
here as ``validate_ifname``); the C in csrc/ only does the tun ioctls and SIOCETHTOOL.
Kernel failures raise OSError with the errno.
"""
from __future__ import annotations

import errno
import os

from ukrun.kernel.ffi import check, ffi, lib
from ukrun.kernel.ifname import ifname_bytes, validate_ifname
from ukrun.kernel.netlink import NetlinkParseError

TUN_DEVICE = "/dev/net/tun"
_NO_UID = 2 ** 32 - 1  # (uid_t)-1

# What disable_offloads turns off, as (name ethtool -k shows, get command, set command).
# GRO/GSO on a tap hand the guest frames larger than its MTU, which Solo5 truncates;
# Solo5 >= 0.11 tries to turn them off itself but needs CAP_NET_ADMIN, gone by then.
OFFLOADS = (
    ("gro", lib.ETHTOOL_GGRO, lib.ETHTOOL_SGRO),
    ("gso", lib.ETHTOOL_GGSO, lib.ETHTOOL_SGSO),
    ("tso", lib.ETHTOOL_GTSO, lib.ETHTOOL_STSO),
)


def _check_uid(uid: int) -> int:
    if type(uid) is not int:
        raise TypeError("uid must be an int, not %s" % type(uid).__name__)
    # (uid_t)-1 is no uid: the kernel refuses it (EINVAL), as the setuid family does.
    if not 0 <= uid < _NO_UID:
        raise ValueError("uid %d is out of range" % uid)
    return uid


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

    def set_owner(self, uid: int) -> None:
        """TUNSETOWNER: from now on only effective uid ``uid`` (or CAP_NET_ADMIN) attaches.

        A persistent tap without an owner takes any process that can open /dev/net/tun; its
        owner is the uid the guest runs as, which then needs no capability to attach.
        """
        _check_uid(uid)
        check(lib.ukrun_tap_set_owner(self.fd, uid), "giving tap %s to uid %d" % (self.name, uid))

    def set_group(self, gid: int) -> None:
        """TUNSETGROUP: from now on a caller without CAP_NET_ADMIN must be in group ``gid``
        (its effective gid or a supplementary one) to attach, and be the owner if any."""
        _check_uid(gid)
        check(lib.ukrun_tap_set_group(self.fd, gid), "giving tap %s to group %d" % (self.name, gid))

    def __enter__(self) -> Tap:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return "Tap(fd=%d, name=%r)" % (self.fd, self.name)


def open_tap(name: str, persist: bool = False, exclusive: bool = False,
             owner: int | None = None, group: int | None = None) -> Tap:
    """Attach to tap ``name``, creating it when absent (IFF_TAP | IFF_NO_PI, O_CLOEXEC).

    ``exclusive`` refuses (EBUSY) to attach to one that already exists. ``owner``: the uid
    that alone may attach without CAP_NET_ADMIN (Tap.set_owner), set before the tap is made
    persistent; ``group`` likewise the group (Tap.set_group). Creating needs CAP_NET_ADMIN; attaching to a persistent tap does not when the
    caller's euid is the tap's owner and the caller is in its group, where it has them.
    """
    asked = ifname_bytes(validate_ifname(name))
    for uid in (owner, group):
        if uid is not None:
            _check_uid(uid)
    actual = ffi.new("char[]", lib.IFNAMSIZ)
    fd = check(lib.ukrun_tap_open(asked, int(bool(exclusive)), actual), "opening tap %s" % name)
    tap = Tap(fd, name)
    try:
        got = ffi.string(actual)
        if got != asked:
            # validate_ifname makes this unreachable; never hand out a tap we did not ask for.
            raise OSError(errno.EINVAL, "the kernel named it %r" % got.decode("utf-8", "replace"),
                          "opening tap %s" % name)
        # Persist only once the name and the owner are set, so that a failure leaves no
        # persistent tap behind, least of all one without an owner.
        if owner is not None:
            tap.set_owner(owner)
        if group is not None:
            tap.set_group(group)
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


def tap_problem(link, euid: int, groups=frozenset()) -> str | None:
    """Why ``link`` (a ukrun.kernel.rtnl_objects.Link) cannot be the tap of a guest that runs as
    effective uid ``euid`` in ``groups`` (its effective gid and supplementary groups) with no
    CAP_NET_ADMIN; None when it can. Pure: the kernel's report of the link is all it reads.

    A guest attaches with IFF_TAP | IFF_NO_PI and without IFF_MULTI_QUEUE, the way
    ``open_tap`` does, to a device that must outlive ukrun's fds, and only as its owner and
    in its group where it has them. Packet information is each attacher's choice (the
    kernel keeps the last one's), so a tap ukrun made and guests used never has it on: on,
    it is someone else's. A kernel before 4.15 reports no tun settings: then only the kind
    is judged, and attaching is the test.
    """
    if link.kind != "tun":
        return "it is not a tun/tap device (kind %s)" % (link.kind or "none")
    try:
        info = link.tun
    except NetlinkParseError as e:
        return "its tun settings cannot be read (%s)" % e
    if info is None:
        return None
    problems = []
    if info.type == lib.IFF_TUN:
        problems.append("it is an L3 tun device, which carries no Ethernet frames")
    elif info.type not in (None, lib.IFF_TAP):
        problems.append("it is a tun device of unknown type %d" % info.type)
    if info.pi:
        problems.append("it adds packet information to every frame (IFF_NO_PI is off)")
    if info.multi_queue:
        problems.append("it is multi-queue, which refuses a guest attaching to one queue")
    if info.persist is False:
        problems.append("it is not persistent: it goes away with its holder's last fd")
    if info.owner is not None and info.owner != euid:
        problems.append("it belongs to uid %d, and the guest runs as uid %d" % (info.owner, euid))
    if info.group is not None and info.group not in groups:
        problems.append("it belongs to group %d, which the guest is not in" % info.group)
    return "; ".join(problems) or None


def await_carrier(rtnl, taps, timeout: float, every: bool = True, give_up=None) -> frozenset:
    """Wait until every tap of ``taps`` (``every`` False: any one) has carrier, for at most
    ``timeout`` seconds and not once ``give_up()`` is true; return the taps seen with it. A
    tap has carrier (IFF_LOWER_UP) exactly while some process holds it open: its guest.
    ``rtnl``: a ukrun.kernel.rtnl.Rtnl."""
    import time

    deadline = time.monotonic() + timeout
    held = frozenset()
    while time.monotonic() < deadline and not (give_up is not None and give_up()):
        held = frozenset(tap for tap in taps if rtnl.link(tap).flags & lib.IFF_LOWER_UP)
        if len(held) == len(taps) if every else held:
            break
        time.sleep(0.002)
    return held
