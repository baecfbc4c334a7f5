"""The process a run hands over: the fds the program inherits, the forked exec that reports
whether the program's execve worked, and ukrun-init, the small program that stays as PID 1
when ukrun forks the program.

ukrun-init is built from csrc/init.c by setup.py and ships in the ukrun package, executable.
``ukrun-init CHILD_PID``, exec'd with every signal blocked by the process that forked
CHILD_PID, forwards every signal but SIGCHLD to it, reaps every zombie and exits with the
child's status (its exit code, or 128 + the signal that killed it).
"""
import os
import sys

from ukrun.errors import UkrunError

# --- file descriptors -----------------------------------------------------------------------

def reserve_fd(fd: int):
    """Put /dev/null on ``fd`` (close-on-exec) when it is free, so no socket a run opens lands
    there before the tap is dup2()'d onto it; returns whether it did."""
    try:
        os.fstat(fd)
        return False
    except OSError:
        pass
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    if null != fd:
        os.dup2(null, fd, inheritable=False)
        os.close(null)
    return True


def hand_fds(taps: dict) -> None:
    """Leave only 0, 1, 2 and the taps inheritable, all else close-on-exec. ``taps`` maps the
    fd each tap goes to (``reserve_fd`` kept them free) to the fd that holds it now."""
    keep = {0, 1, 2}
    for as_fd, tap_fd in taps.items():
        if tap_fd != as_fd:
            os.dup2(tap_fd, as_fd, inheritable=True)  # the original stays close-on-exec
        else:
            os.set_inheritable(as_fd, True)
        keep.add(as_fd)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:  # the fd listdir itself used, closed by now
                pass


# --- the forked exec's report ------------------------------------------------------------------

def encode_failure(exc: BaseException) -> bytes:
    """What the child tells its parent when it cannot exec: b"errno:N" or b"error:S:MESSAGE"."""
    if isinstance(exc, OSError) and exc.errno:
        return b"errno:%d" % exc.errno
    status = getattr(exc, "exit_status", 1)
    return ("error:%d:%s" % (status, exc)).encode(errors="replace")


def decode_failure(data: bytes):
    """(errno or None, exit status or None, message or None) from ``encode_failure``'s bytes."""
    kind, _, rest = data.partition(b":")
    if kind == b"errno" and rest.isdigit():
        return int(rest), None, None
    status, _, message = rest.partition(b":")
    if kind == b"error" and status.isdigit():
        return None, int(status), message.decode(errors="replace")
    return None, 1, "the child reported %r" % data[:200]


def read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def fork_exec(argv: list, env, prepare) -> tuple:
    """Fork a child that runs ``prepare()`` then execs ``argv``: (pid, b"") when its execve
    worked, (pid, report) when it did not (the child has exited; reap it)."""
    flush_stdio()
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child never returns into the caller's code
        try:
            os.close(read_end)
            prepare()
            os.execve(argv[0], argv, env)
        except BaseException as e:
            try:
                os.write(write_end, encode_failure(e))
            finally:
                os._exit(127)
        os._exit(127)
    os.close(write_end)
    try:
        return pid, read_all(read_end)
    finally:
        os.close(read_end)


def flush_stdio() -> None:
    """Flush Python's buffers before an exec or a fork; a stream closed when ukrun started is
    None, and one whose fd is gone fails: neither may stop a run that has wired the network."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


# --- ukrun-init ---------------------------------------------------------------------------------

INIT_NAME = "ukrun-init"


class InitProgramError(UkrunError):
    """ukrun's own init is missing or cannot be executed: the installation is broken."""

    exit_status = 1


def init_program() -> str:
    """The absolute path of the shipped ukrun-init; InitProgramError when it is not an
    executable regular file (checked for this process's real uid, as os.access does)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), INIT_NAME)
    if not os.path.isfile(path):
        raise InitProgramError("ukrun's init %s is missing" % path, "reinstall ukrun")
    if not os.access(path, os.X_OK):
        raise InitProgramError("ukrun's init %s is not executable" % path, "reinstall ukrun")
    return path
