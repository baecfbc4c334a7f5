"""Signals across a run: held back while it works, and given back to the program as a program
started directly has them.

A network namespace's init drops every signal it has no handler for, unless the signal is
blocked: blocked, `docker stop` stays pending until the program (or ukrun's init) takes it.
"""
from __future__ import annotations

import _signal

def block_signals():
    """Block every signal; returns the mask to restore. A blocked signal is kept pending, even
    for a namespace's init, so a ``docker stop`` during the run reaches the program later.
    As PID 1, ukrun's command blocks them first thing (bin/ukrun, ukrun.__main__), and a run
    (ukrun.runner.run) in any case."""
    return _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())


def restore_signals(mask) -> None:
    _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)


# Signals whose default action is not to end the process: ignore (SIGCHLD, SIGCONT, SIGURG,
# SIGWINCH) or stop (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU).
_HARMLESS = frozenset(getattr(_signal, name) for name in (
    "SIGCHLD", "SIGCONT", "SIGURG", "SIGWINCH", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU"))


def pending_stop() -> int | None:
    """A pending (blocked) signal whose default action ends the process, or None: delivered
    once the mask is emptied for an in-place exec, it would end ukrun instead of the program."""
    pending = sorted(set(_signal.sigpending()) - _HARMLESS)
    return int(pending[0]) if pending else None


def reset_signals() -> None:
    """Default dispositions and an empty mask, as a program started directly has: execve
    keeps ignored signals (CPython ignores SIGPIPE and SIGXFSZ) and the mask."""
    for signum in _signal.valid_signals():
        if signum in (_signal.SIGKILL, _signal.SIGSTOP):
            continue
        try:
            _signal.signal(signum, _signal.SIG_DFL)
        except (OSError, ValueError):  # numbers libc keeps for itself
            pass
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
