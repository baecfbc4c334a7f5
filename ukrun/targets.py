"""The command line each target runs: pure functions of a ``Launch``, one row per target.

Nothing here looks at the system; the runner resolves paths and decides the MAC, the tap fd
and the IP arguments first, then asks ``TARGETS[name].build(launch)`` for the argv.
"""
from __future__ import annotations

# For annotations only: collections.abc loads collections, ~1 ms of a run's start
# (typing's TYPE_CHECKING, without importing typing).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

from ukrun.valueclass import value_class

# QEMU's guest memory (MB) and CPU model per target, unless given: the old runner's.
QEMU_MEM = 512
QEMU_CPU = {"qemu": "Westmere", "kvm": "host"}

# The fd number the tap is handed over as (--tap-fd, ukvm): the runner dup2()s the tap to it
# right before execve, so the command line is known before anything is changed. With several
# interfaces, interface N's tap goes to TAP_FD + N.
TAP_FD = 3


@value_class(frozen=True)
class Nic:
    """One network device of the guest: the tap it is attached to (by name, or as the inherited
    fd ``tap_fd``), the MAC it is given (None: the guest picks one) and, for Solo5, the name
    the unikernel's manifest gives it."""

    tap: str
    tap_fd: int | None = None
    mac: str | None = None
    net_name: str = "service"


@value_class(frozen=True)
class Launch:
    """Everything a target's command line is made of, already resolved and validated."""

    unikernel: str
    args: tuple[str, ...] = ()
    ip_args: tuple[str, ...] = ()
    ip_args_first: bool = False  # kernel parameters: before the guest's own words (and "--")
    tap: str = "tap0"
    tap_fd: int | None = None  # hand the tap over as this inherited fd instead of by name
    mac: str | None = None  # the guest's MAC; None leaves it to the guest
    tender: str | None = None  # solo5-hvt, solo5-spt, ukvm or qemu-system-x86_64
    tender_args: tuple[str, ...] = ()
    net_name: str = "service"
    mem: int | None = None  # MB
    cpu: str | None = None
    more_nics: tuple[Nic, ...] = ()  # the guest's devices after the first (tap, tap_fd, ...)

    @property
    def nics(self) -> tuple:
        """Every network device of the guest, in order: the first one is ``tap``, ``tap_fd``,
        ``mac`` and ``net_name``."""
        return (Nic(self.tap, self.tap_fd, self.mac, self.net_name),) + tuple(self.more_nics)


@value_class(frozen=True)
class Target:
    """What the runner and the CLI need to know about one target (which options it takes is
    said by ukrun.options' table)."""

    name: str
    build: Callable[[Launch], list]
    default_tender: str | None  # None: the unikernel itself is executed (unix)
    needs_kvm: bool
    sets_mac: bool  # False: --mac is ignored (the guest picks its own)
    tap_fd: str  # "never", "optional" (--tap-fd) or "always"
    # The tender's file as its build names it, which `ukrun dockerfile` copies into an image
    # from the build context; None: no tender, or one the image's packages provide (QEMU).
    tender_file: str | None = None
    max_interfaces: int | None = None  # how many interfaces its command line can hand over


# The formats of the guest's network words (--ip-args; ukrun.ipargs builds them).
IP_ARG_FORMATS = ("mirage", "mirage-dns", "unikraft", "unikraft-lwip", "linux", "template",
                  "none")


def _guest_words(launch: Launch) -> tuple:
    """The guest's arguments with the network words: after them (MirageOS's, the old runner's
    place), or before them for kernel parameters (Unikraft, Linux), which a kernel reads only
    in front of the "--" that starts its application's arguments."""
    if launch.ip_args_first:
        return tuple(launch.ip_args) + tuple(launch.args)
    return tuple(launch.args) + tuple(launch.ip_args)


def _one_nic(launch: Launch, target: str) -> None:
    if launch.more_nics:
        raise ValueError("the %s target takes one network device, not %d"
                         % (target, len(launch.nics)))


def build_unix(launch: Launch) -> list:
    # Exactly the old runner's: UNIKERNEL --interface=TAP ARGS... --ipv4=... --ipv4-gateway=...
    # (MirageOS unix reads one --interface: a second device would need its own key.)
    _one_nic(launch, "unix")
    return [launch.unikernel, "--interface=%s" % launch.tap, *_guest_words(launch)]


def _solo5_tender_head(launch: Launch) -> list:
    return [launch.tender] + (["--mem=%d" % launch.mem] if launch.mem is not None else [])


def build_solo5(launch: Launch) -> list:
    """solo5-hvt / solo5-spt: one --net:NAME=TAP (and --net-mac:NAME=MAC) per device, each tap
    attached by name unless an fd was asked for."""
    argv = _solo5_tender_head(launch)
    for nic in launch.nics:
        # Attaching by name is the default: --net:NAME=@FD has been broken since Solo5 0.10.
        attach = "@%d" % nic.tap_fd if nic.tap_fd is not None else nic.tap
        argv.append("--net:%s=%s" % (nic.net_name, attach))
        if nic.mac is not None:
            argv.append("--net-mac:%s=%s" % (nic.net_name, nic.mac))
    return argv + [*launch.tender_args, "--", launch.unikernel, *_guest_words(launch)]


def build_ukvm(launch: Launch) -> list:
    """The old runner's Solo5 ukvm form: the tap is always an inherited fd."""
    _one_nic(launch, "ukvm")
    if launch.tap_fd is None:
        raise ValueError("ukvm needs the tap as an fd")
    argv = _solo5_tender_head(launch) + ["--net=@%d" % launch.tap_fd, *launch.tender_args]
    return argv + ["--", launch.unikernel, *_guest_words(launch)]


def _qemu_escape(value: str) -> str:
    # QEMU's option lists (-netdev a=b,c=d) read ",," as a literal comma.
    return value.replace(",", ",,")


def _qemu_nic(nic: Nic, number: int) -> list:
    """-device and -netdev for one device, whose netdev is n0, n1, ..."""
    device = "virtio-net-pci,netdev=n%d" % number
    if nic.mac is not None:
        device += ",mac=%s" % nic.mac
    if nic.tap_fd is not None:
        # fd= cannot be combined with ifname=/script=/downscript=.
        netdev = "tap,id=n%d,fd=%d" % (number, nic.tap_fd)
    else:
        netdev = "tap,id=n%d,ifname=%s,script=no,downscript=no" % (number, _qemu_escape(nic.tap))
    return ["-device", device, "-netdev", netdev]


def _build_qemu(launch: Launch, kvm: bool) -> list:
    # The old runner passed -no-acpi; it is deprecated since QEMU 8.0 and gone in 9.0.
    # -machine acpi=off does the same and already works in QEMU 7.2.
    argv = [launch.tender, "-nodefaults", "-machine", "acpi=off", "-display", "none",
            "-serial", "stdio", "-m", str(launch.mem if launch.mem is not None else QEMU_MEM)]
    if kvm:
        argv.append("-enable-kvm")
    argv += ["-cpu", launch.cpu or QEMU_CPU["kvm" if kvm else "qemu"]]
    for number, nic in enumerate(launch.nics):
        argv += _qemu_nic(nic, number)
    argv += ["-kernel", launch.unikernel, "-append", " ".join(_guest_words(launch))]
    # Extra tender arguments (-initrd FILE, ...) go last: QEMU does not care about order.
    return argv + list(launch.tender_args)


def build_qemu(launch: Launch) -> list:
    return _build_qemu(launch, kvm=False)


def build_kvm(launch: Launch) -> list:
    return _build_qemu(launch, kvm=True)


TARGETS = {
    "unix": Target("unix", build_unix, None, needs_kvm=False, sets_mac=False, tap_fd="never",
                   max_interfaces=1),
    "hvt": Target("hvt", build_solo5, "solo5-hvt", needs_kvm=True, sets_mac=True,
                  tap_fd="optional", tender_file="solo5-hvt"),
    "spt": Target("spt", build_solo5, "solo5-spt", needs_kvm=False, sets_mac=True,
                  tap_fd="optional", tender_file="solo5-spt"),
    "ukvm": Target("ukvm", build_ukvm, "/unikernel/ukvm", needs_kvm=True, sets_mac=False,
                   tap_fd="always", tender_file="ukvm-bin",  # what Solo5's ukvm build wrote
                   max_interfaces=1),
    "qemu": Target("qemu", build_qemu, "qemu-system-x86_64", needs_kvm=False, sets_mac=True,
                   tap_fd="optional"),
    "kvm": Target("kvm", build_kvm, "qemu-system-x86_64", needs_kvm=True, sets_mac=True,
                  tap_fd="optional"),
}
