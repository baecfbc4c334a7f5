"""What a run says when it fails after it started changing things, and the giving back that
goes with it: the errors ukrun.runner raises when a step, the program's execve or the forked
child fails. Loaded only then: a run that works builds none of these messages.

A plan and what was applied are read by their attributes (ukrun.runner's Plan, Handover and
Applied), so nothing here imports the runner.
"""
from __future__ import annotations

import errno
import os

from ukrun.errors import (NetworkError, NotExecutableError, NotFoundError, PrivilegeError,
                          UkrunError, UsageError)


def listed(names) -> str:
    return ", ".join(names)


def given_back_text(handovers) -> str:
    """"eth0 was given back", or "eth0, net1 were given back"."""
    return "%s %s given back" % (listed(h.each.interface for h in handovers),
                                 "was" if len(handovers) == 1 else "were")


def handed_text(handovers) -> str:
    """"eth0 stays handed over to tap0", or "eth0, net1 stay handed over to tap0, tap1"."""
    return "%s %s handed over to %s" % (listed(h.each.interface for h in handovers),
                                        "stays" if len(handovers) == 1 else "stay",
                                        listed(h.tap for h in handovers))


def _reason(e: OSError) -> str:
    reason = e.strerror or str(e)
    ext_ack = getattr(e, "ext_ack", None)
    return "%s (%s)" % (reason, ext_ack) if ext_ack else reason


def step_failed(step, e: OSError, failures: list) -> UkrunError:
    """A wiring step failed with ``e``; ``failures``: what its undo could not revert."""
    hint = ("undoing failed too, the namespace is half-wired: %s" % "; ".join(failures)
            if failures else "everything done before was undone")
    kind = PrivilegeError if e.errno in (errno.EPERM, errno.EACCES) else NetworkError
    return kind("%s: %s" % (step.text, _reason(e)), hint)


def exec_failed(plan, e: OSError, given_back: bool) -> UkrunError:
    """The plan's execve failed with ``e``; ``given_back``: the network will be."""
    message = "executing %s: %s" % (plan.argv[0], e.strerror or e)
    hint = None if given_back else "%s; the next run reuses it" % handed_text(plan.handovers)
    if e.errno == errno.ENOENT:
        return NotFoundError(message, hint)
    if e.errno in (errno.EACCES, errno.ENOEXEC, errno.EPERM, errno.ETXTBSY):
        return NotExecutableError(message, hint)
    return UkrunError(message, hint)


def child_failed(plan, report: bytes) -> UkrunError:
    """The error a forked child reported instead of exec'ing (ukrun.handover.encode_failure)."""
    from ukrun.handover import decode_failure

    errno_, status, message = decode_failure(report)
    if errno_ is not None:
        return exec_failed(plan, OSError(errno_, os.strerror(errno_)), given_back=True)
    kinds = {cls.exit_status: cls for cls in (UsageError, PrivilegeError, NotExecutableError,
                                              NotFoundError)}
    error = kinds.get(status, UkrunError)(message)
    error.exit_status = status
    return error


def give_back(applied, error: UkrunError) -> UkrunError:
    """Undo the wiring after ``error``; say so in the error when that fails too."""
    handovers = applied.plan.handovers
    given_back = given_back_text(handovers)
    try:
        applied.undo()
        outcome = given_back
    except UkrunError as undo_error:
        outcome = "giving %s back failed: %s" % (listed(h.each.interface for h in handovers),
                                                 undo_error)
    if not error.hint or given_back not in error.hint:
        error.hint = "%s; %s" % (error.hint, outcome) if error.hint else outcome
    return error
