"""The devices a run opens: /dev/net/tun for the taps, /dev/kvm for a hardware tender.
Each check opens the device as ukrun or the tender will: that it exists is not enough.
"""
from __future__ import annotations

import errno
import os
import stat

from ukrun.errors import PrivilegeError
from ukrun.kernel.tap import TUN_DEVICE

KVM_DEVICE = "/dev/kvm"


def open_device(path: str) -> None:
    """Open ``path`` read-write and close it, as ukrun or the tender will (existing is not
    enough): OSError when it cannot, ENODEV when it is not a character device. The one probe
    behind a run's preflight and ``ukrun docker-args``, which word its failure each their way."""
    if not stat.S_ISCHR(os.stat(path).st_mode):
        raise OSError(errno.ENODEV, "not a character device", path)
    os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))


def check_device(path: str, hint: str) -> None:
    """``path`` is a character device this process can open read-write."""
    try:
        open_device(path)
    except FileNotFoundError:
        raise PrivilegeError("%s not found" % path, hint) from None
    except OSError as e:
        raise PrivilegeError("cannot open %s: %s" % (path, e.strerror), hint) from None


def check_tun() -> None:
    check_device(TUN_DEVICE, "docker run --device /dev/net/tun")


def check_kvm(target: str) -> None:
    check_device(KVM_DEVICE, "the %s target needs KVM: docker run --device /dev/kvm" % target)
