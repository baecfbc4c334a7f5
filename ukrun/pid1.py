"""ukrun-init, the small program that stays as PID 1 when ukrun forks the unikernel.

It is built from csrc/init.c by setup.py and ships inside this package, executable.
``ukrun-init CHILD_PID``, exec'd with every signal blocked by the process that forked
CHILD_PID, forwards every signal but SIGCHLD to it, reaps every zombie and exits with the
child's status (its exit code, or 128 + the signal that killed it).

On the run path: imports nothing but os and ukrun.errors.
"""
import os

from ukrun.errors import UkrunError

INIT_NAME = "ukrun-init"


class InitProgramError(UkrunError):
    """ukrun's own init is missing or cannot be executed: the installation is broken."""

    exit_status = 1


def init_program() -> str:
    """The absolute path of the shipped ukrun-init; InitProgramError when it is not an
    executable regular file (checked for this process's real uid, as os.access does)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), INIT_NAME)
    if not os.path.isfile(path):
        raise InitProgramError("ukrun's init %s is missing" % path, "reinstall ukrun")
    if not os.access(path, os.X_OK):
        raise InitProgramError("ukrun's init %s is not executable" % path, "reinstall ukrun")
    return path
