"""QEMU (qemu-system-x86_64), with software emulation (the qemu target) or KVM (kvm): the
unikernel as ``-kernel``, its arguments as ``-append``, one virtio-net device per tap."""
from __future__ import annotations


def _escape(value: str) -> str:
    # QEMU's option lists (-netdev a=b,c=d) read ",," as a literal comma.
    return value.replace(",", ",,")


def _nic(nic, number: int) -> list:
    """-device and -netdev for one device (a ukrun.guest.targets.Nic), whose netdev is n0,
    n1, ..."""
    device = "virtio-net-pci,netdev=n%d" % number
    if nic.mac is not None:
        device += ",mac=%s" % nic.mac
    if nic.tap_fd is not None:
        # fd= cannot be combined with ifname=/script=/downscript=.
        netdev = "tap,id=n%d,fd=%d" % (number, nic.tap_fd)
    else:
        netdev = "tap,id=n%d,ifname=%s,script=no,downscript=no" % (number, _escape(nic.tap))
    return ["-device", device, "-netdev", netdev]


def command_line(target, launch) -> list:
    """``target``'s command line (a ukrun.guest.targets.Target) for ``launch`` (a Launch):
    with -enable-kvm when the target runs under KVM."""
    # The old runner passed -no-acpi; it is deprecated since QEMU 8.0 and gone in 9.0.
    # -machine acpi=off does the same and already works in QEMU 7.2.
    mem = launch.mem if launch.mem is not None else target.default_mem
    argv = [launch.tender, "-nodefaults", "-machine", "acpi=off", "-display", "none",
            "-serial", "stdio", "-m", str(mem)]
    if target.needs_kvm:
        argv.append("-enable-kvm")
    argv += ["-cpu", launch.cpu or target.default_cpu]
    for number, nic in enumerate(launch.nics):
        argv += _nic(nic, number)
    argv += ["-kernel", launch.unikernel, "-append", " ".join(launch.guest_args)]
    # Extra tender arguments (-initrd FILE, ...) go last: QEMU does not care about order.
    return argv + list(launch.tender_args)
