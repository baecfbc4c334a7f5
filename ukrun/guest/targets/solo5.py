"""Solo5's tenders, solo5-hvt (KVM) and solo5-spt (seccomp): one ``--net:NAME=TAP`` (and
``--net-mac:NAME=MAC``) per device, NAME being the one the unikernel's manifest declares."""
from __future__ import annotations


def command_line(target, launch) -> list:
    """``target``'s command line (a ukrun.guest.targets.Target) for ``launch`` (a Launch):
    each tap attached by name unless an fd was asked for."""
    argv = [launch.tender] + (["--mem=%d" % launch.mem] if launch.mem is not None else [])
    for nic in launch.nics:
        # Attaching by name is the default: --net:NAME=@FD has been broken since Solo5 0.10.
        attach = "@%d" % nic.tap_fd if nic.tap_fd is not None else nic.tap
        argv.append("--net:%s=%s" % (nic.net_name, attach))
        if nic.mac is not None:
            argv.append("--net-mac:%s=%s" % (nic.net_name, nic.mac))
    return argv + [*launch.tender_args, "--", launch.unikernel, *launch.guest_args]
