"""MirageOS's unix target: no tender, the unikernel is itself the program, and it opens its tap
by name."""
from __future__ import annotations


def command_line(target, launch) -> list:
    """``target``'s command line (a ukrun.guest.targets.Target) for ``launch`` (a Launch)."""
    # MirageOS unix reads one --interface: a second device would need its own key.
    if launch.more_nics:
        raise ValueError("the %s target takes one network device, not %d"
                         % (target.name, len(launch.nics)))
    # Exactly the old runner's: UNIKERNEL --interface=TAP ARGS... --ipv4=... --ipv4-gateway=...
    return [launch.unikernel, "--interface=%s" % launch.tap, *launch.guest_args]
