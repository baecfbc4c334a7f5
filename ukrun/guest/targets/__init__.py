"""The targets a unikernel runs on, as one table (``TARGETS``) of what the runner and the CLI
know about each, and the values a command line is made of (``Launch``, ``Nic``).

One module per tender family builds its command lines, a pure function of a ``Launch``:
``unix`` (MirageOS unix: the unikernel is the program), ``solo5`` (solo5-hvt, solo5-spt),
``ukvm`` (Solo5's old tender) and ``qemu`` (QEMU, with or without KVM). Each provides
``command_line(target, launch) -> list`` and imports nothing of this package: what it needs
comes in the ``Target`` row and the ``Launch``. A new target is one row here and, for a new
family, one module. Nothing here looks at the system; the runner resolves paths and decides the
MAC, the tap fd and the IP arguments first, then asks ``TARGETS[name].build(launch)`` for the
argv, which loads that target's family module alone: the CLI loads this table on every start.
"""
from __future__ import annotations

import sys

from ukrun.valueclass import value_class

# QEMU's guest memory (MB) unless given: the old runner's (its CPU model per target is the
# rows' default_cpu, and QEMU_CPU below).
QEMU_MEM = 512

# The fd number the tap is handed over as (qemu and kvm unless --tap-by-name, ukvm always,
# hvt and spt with --tap-fd): the runner dup2()s the tap to it
# right before execve, so the command line is known before anything is changed. With several
# interfaces, interface N's tap goes to TAP_FD + N.
TAP_FD = 3

# The formats of the guest's network words (--ip-args): the names of ukrun.guest.formats'
# table, which tests/test_cli.py checks this is. Written out here because the CLI's option
# table needs them on every start, and loading the formats (their values and ukrun.kernel.inet)
# there would cost every `ukrun --help` and `ukrun dockerfile` what only a run needs.
IP_ARG_FORMATS = ("mirage", "mirage-dns", "unikraft", "unikraft-lwip", "linux", "template",
                  "none")


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

    @property
    def guest_args(self) -> tuple:
        """The guest's arguments with the network words: after them (MirageOS's, the old
        runner's place), or before them for kernel parameters (Unikraft, Linux), which a kernel
        reads only in front of the "--" that starts its application's arguments."""
        if self.ip_args_first:
            return tuple(self.ip_args) + tuple(self.args)
        return tuple(self.args) + tuple(self.ip_args)


def _family_module(family: str):
    """The module of this package that builds ``family``'s command lines, imported now. It
    imports nothing of this package (a Target and a Launch are all it is given), so loading it
    here makes no cycle."""
    name = "%s.%s" % (__name__, family)
    # __import__ rather than importlib.import_module: importlib is not loaded on a run's start
    # (python -S), and this needs nothing of it.
    __import__(name)
    return sys.modules[name]


@value_class(frozen=True)
class Target:
    """What the runner and the CLI need to know about one target (which options it takes is
    said by ukrun.options' table)."""

    name: str
    family: str  # the module of ukrun.guest.targets that builds its command line
    default_tender: str | None  # None: the unikernel itself is executed (unix)
    needs_kvm: bool  # it runs the guest under KVM (/dev/kvm)
    sets_mac: bool  # False: --mac is ignored (the guest picks its own)
    # How the guest gets its tap: "never" as an fd (it opens the tap by name itself),
    # "optional" (by name unless --tap-fd), "default" (as an fd unless --tap-by-name) or
    # "always" as an fd. As an fd, the tap has a reader from before the run ends until the
    # guest does, so a later run that finds it without one knows at once there is no guest.
    tap_fd: str
    # The tender's file as its build names it, which `ukrun dockerfile` copies into an image
    # from the build context; None: no tender, or one the image's packages provide (QEMU).
    tender_file: str | None = None
    max_interfaces: int | None = None  # how many interfaces its command line can hand over
    default_mem: int | None = None  # MB when --mem is not given; None: the tender's own
    default_cpu: str | None = None  # the CPU model when --cpu is not given (QEMU)

    def hands_fd(self, tap_fd: bool = False, tap_by_name: bool = False) -> bool:
        """Whether this target's guest gets its taps as inherited fds, given --tap-fd and
        --tap-by-name (which preflight lets only a target that has the choice take)."""
        if self.tap_fd in ("never", "always"):
            return self.tap_fd == "always"
        return not tap_by_name if self.tap_fd == "default" else tap_fd

    def build(self, launch: Launch) -> list:
        """The command line that runs ``launch`` on this target (ValueError if it cannot)."""
        return _family_module(self.family).command_line(self, launch)


TARGETS = {
    "unix": Target("unix", "unix", None, needs_kvm=False, sets_mac=False, tap_fd="never",
                   max_interfaces=1),
    # Solo5's tenders attach by name unless --tap-fd: their --net:NAME=@FD checks an errno it
    # never cleared (tenders/common/tap_attach.c), so it fails whenever one was left set.
    "hvt": Target("hvt", "solo5", "solo5-hvt", needs_kvm=True, sets_mac=True,
                  tap_fd="optional", tender_file="solo5-hvt"),
    "spt": Target("spt", "solo5", "solo5-spt", needs_kvm=False, sets_mac=True,
                  tap_fd="optional", tender_file="solo5-spt"),
    "ukvm": Target("ukvm", "ukvm", "/unikernel/ukvm", needs_kvm=True, sets_mac=False,
                   tap_fd="always", tender_file="ukvm-bin",  # what Solo5's ukvm build wrote
                   max_interfaces=1),
    "qemu": Target("qemu", "qemu", "qemu-system-x86_64", needs_kvm=False, sets_mac=True,
                   tap_fd="default", default_mem=QEMU_MEM, default_cpu="Westmere"),
    "kvm": Target("kvm", "qemu", "qemu-system-x86_64", needs_kvm=True, sets_mac=True,
                  tap_fd="default", default_mem=QEMU_MEM, default_cpu="host"),
}

# The CPU model of each QEMU target unless given (--cpu's help).
QEMU_CPU = {name: t.default_cpu for name, t in TARGETS.items() if t.default_cpu is not None}

