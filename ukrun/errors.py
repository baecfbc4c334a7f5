"""The errors a run reports to its user: one line each, with the exit status the CLI uses.

Kernel calls raise OSError (from ``ukrun.kernel.ffi.check``) or ``ukrun.kernel.rtnl.NetlinkError``;
the runner turns what the user must act on into one of these, with a hint saying what to do.
"""


class UkrunError(Exception):
    """A failure the CLI prints as ``ukrun: error: MESSAGE`` and exits with ``exit_status``."""

    exit_status = 1

    def __init__(self, message, hint=None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self):
        return self.message if not self.hint else "%s (%s)" % (self.message, self.hint)


class UsageError(UkrunError, ValueError):
    """Bad options or arguments: nothing was touched."""

    exit_status = 2


class NotFoundError(UkrunError):
    """The unikernel, tender or QEMU binary does not exist."""

    exit_status = 127


class NotExecutableError(UkrunError):
    """The unikernel, tender or QEMU binary exists but cannot be executed."""

    exit_status = 126


class PrivilegeError(UkrunError):
    """A capability or a device (/dev/net/tun, /dev/kvm) is missing, or a drop failed."""

    exit_status = 77


class DiscoveryError(UkrunError):
    """The interface to hand over is missing or has no IPv4 configuration."""

    exit_status = 1


class NetworkError(UkrunError):
    """A kernel operation failed while wiring; everything done before it was undone."""

    exit_status = 1
