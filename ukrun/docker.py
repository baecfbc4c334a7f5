"""What a unikernel container needs from Docker besides its Dockerfile: the ``docker run`` flags.

``docker_args()`` probes this host's /dev/net/tun and /dev/kvm and returns the flags that pass
them in; ``ARP_NOTE`` is what the CLI prints with them. What an image holds for a target (where
its tender goes, which program its packages must provide) is derived here from
ukrun.guest.targets, for ukrun.docker_build, which writes the Dockerfile (``ukrun dockerfile``),
and for the help ukrun.parser words.
"""
from __future__ import annotations

import errno
import os

from ukrun.errors import PrivilegeError, UsageError
from ukrun.guest.targets import TARGETS

IMAGE_DIR = "/unikernel"  # where an image holds the unikernel and its tender

# What `ukrun docker-args` prints on stderr after the flags.
ARP_NOTE = (
    "note: ukrun gives the unikernel the container's own MAC address (--mac inherit, the "
    "default), so the Docker host's neighbour entry for the container stays right: the old "
    "runner's warning about arp_accept and gratuitous ARP on the Docker bridge no longer "
    "applies (with --mac random it would again).")

# ---- what an image holds for a target, derived from ukrun.guest.targets ----

def target_named(name):
    """The ukrun.guest.targets.Target called ``name``; UsageError naming the choices otherwise."""
    try:
        return TARGETS[name]
    except (KeyError, TypeError):
        raise UsageError("unknown target %r" % (name,),
                         "choose one of %s" % ", ".join(TARGETS)) from None


def tender_in_image(target) -> str | None:
    """Where an image holds ``target``'s tender (a ukrun.guest.targets.Target), copied from the
    build context under the name ukrun runs it by; None when there is nothing to copy."""
    if target.tender_file is None:
        return None
    return IMAGE_DIR + "/" + os.path.basename(target.default_tender)


def packaged_program(target) -> str | None:
    """The program the image's packages must provide (QEMU), or None."""
    return target.default_tender if target.tender_file is None else None


def listed(words, conjunction: str) -> str:
    """``a, b and c``: how messages and help name several things."""
    words = list(words)
    if len(words) < 2:
        return "".join(words)
    return "%s %s %s" % (", ".join(words[:-1]), conjunction, words[-1])


# ---- ukrun docker-args ----

def docker_args(target) -> list:
    """The ``docker run`` flags a TARGET container needs on this host, after probing it.

    Raises PrivilegeError when /dev/net/tun, or /dev/kvm for hvt, ukvm and kvm, cannot be opened.
    ``ARP_NOTE`` is what the CLI prints with them.
    """
    spec = target_named(target)
    # Loaded here: they load the cffi module, which dockerfile() never needs.
    from ukrun.kernel import devices

    flags = ["--cap-add=NET_ADMIN",
             _device_flag(devices.TUN_DEVICE, "load the tun module: modprobe tun")]
    if spec.needs_kvm:
        flags.append(_device_flag(devices.KVM_DEVICE, "the %s target needs KVM: load kvm_intel "
                                  "or kvm_amd, enable virtualisation, or use the %s target" % (
                                      target, "qemu" if target == "kvm" else "spt or qemu")))
    return flags


def _device_flag(path, hint_missing) -> str:
    """``--device=PATH:PATH``, once PATH opened as the tender will open it."""
    from ukrun.kernel.devices import open_device

    try:
        open_device(path)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            hint = "run as root or as a member of the group that owns %s" % path
        else:  # ENOENT, or ENXIO/ENODEV: a device node without its driver, or no device
            hint = hint_missing
        raise PrivilegeError("%s is not usable: %s" % (path, e.strerror), hint) from None
    return "--device=%s:%s" % (path, path)
