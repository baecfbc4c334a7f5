"""Solo5's old ukvm tender, in the old runner's form: one device, whose tap is always an
inherited fd (``--net=@FD``)."""
from __future__ import annotations


def command_line(target, launch) -> list:
    """``target``'s command line (a ukrun.guest.targets.Target) for ``launch`` (a Launch)."""
    if launch.more_nics:
        raise ValueError("the %s target takes one network device, not %d"
                         % (target.name, len(launch.nics)))
    if launch.tap_fd is None:
        raise ValueError("ukvm needs the tap as an fd")
    # The start of every Solo5 tender's line (ukrun.guest.targets.solo5's too).
    argv = [launch.tender] + (["--mem=%d" % launch.mem] if launch.mem is not None else [])
    argv += ["--net=@%d" % launch.tap_fd, *launch.tender_args]
    return argv + ["--", launch.unikernel, *launch.guest_args]
