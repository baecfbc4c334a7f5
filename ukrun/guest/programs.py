"""Will execve take the program? The cheap checks a run makes before anything changes.

What makes the execve of a unikernel, tender or QEMU fail, found before the network is
handed over (and by --dry-run): a file the kernel cannot exec (empty, text, truncated, another
machine's ELF, a missing ELF loader or #! interpreter, DOS line ends), a file the program
cannot use once ukrun has dropped CAP_DAC_OVERRIDE, arguments over the kernel's size limits.
Each check flags only what surely fails. Whatever ukrun cannot tell (a file it cannot read, an
unknown machine, POSIX ACLs, LSMs) it leaves to the execve, whose failure the runner reports
after giving the network back. ukrun.preflight exports the three checks; the rules they
mirror are pure functions in ukrun.guest.execrules (and ukrun.guest.binfmt, for scripts).
"""
from __future__ import annotations

import errno
import os
import stat

from ukrun.errors import NotExecutableError, NotFoundError, UkrunError

_BINFMT_MISC = "/proc/sys/fs/binfmt_misc"
# How many #! interpreters deep the checks follow; the kernel stops at 5 (ELOOP).
_MAX_DEPTH = 4
_ACL_ACCESS = "system.posix_acl_access"
_DOS_HINT = "convert it: sed -i 's/\\r$//' %s"


def check_program_image(path: str, what: str, keep: frozenset = frozenset(),
                        dropped: bool = False) -> str:
    """``path`` is something execve runs: an ELF executable for this machine whose loader is
    here, or a script whose #! interpreter is. Reads its first BINPRM_BUF_SIZE bytes (and, for
    an ELF, its program headers), as the kernel does.

    NotFoundError (127) where execve would say ENOENT: the file, a #! interpreter (CRLF line
    ends included) or an ELF loader (an Alpine binary on glibc) missing. NotExecutableError
    (126) for the rest: empty, neither ELF nor #!, truncated or malformed ELF, another
    machine's ELF, a script the program cannot read once capabilities are dropped (``keep``:
    the capability numbers it keeps). ``dropped``: the execve itself runs without them (the
    forked and dropped exec modes), so the file, interpreter and loader need their x bits for
    this process's ids. A file binfmt_misc hands to an emulator is not refused.
    """
    _check_image(path, what, keep, dropped, 0)
    return path


def _check_image(path, what, keep, dropped, depth):
    head, size = _read_head(path, what)
    if head is None:
        return  # ukrun cannot read it (an execute-only file, as non-root); execve can
    try:
        if dropped:
            check_usable_unprivileged(path, what, execute=True, keep=keep, read=False)
        if size == 0:
            raise NotExecutableError("%s %s is an empty file" % (what, path),
                                     "rebuild it, or pass the right path")
        from ukrun.guest import elf

        if head.startswith(elf.ELFMAG):
            _check_elf(path, what, keep, dropped)
        elif head.startswith(b"#!"):
            _check_script(path, what, head, keep, dropped, depth)
        else:
            raise NotExecutableError("%s %s is not an ELF executable or a script" % (what, path),
                                     "pass the built program, or start the script with #!")
    except (NotFoundError, NotExecutableError):
        if _binfmt_misc_claims(head, path):
            return  # tried before ELF and #!: an emulator (qemu-user) runs it
        raise


def _read_head(path, what):
    """(the file's first BINPRM_BUF_SIZE bytes, NUL-padded as the kernel reads them, its size);
    (None, size) when this process may not read it."""
    from ukrun.kernel.ffi import lib

    try:
        st = os.stat(path)
    except OSError as e:
        raise _path_error(e, what, path) from None
    except ValueError:  # a NUL byte in it: no path execve could be given
        raise NotExecutableError("%s %r is not a path" % (what, path)) from None
    if stat.S_ISDIR(st.st_mode):
        raise NotExecutableError("%s %s is a directory" % (what, path))
    if not stat.S_ISREG(st.st_mode):
        raise NotExecutableError("%s %s is not a regular file" % (what, path),
                                 "execve runs regular files only")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except PermissionError:
        return None, st.st_size
    except OSError as e:
        raise _path_error(e, what, path) from None
    try:
        head = os.pread(fd, lib.BINPRM_BUF_SIZE, 0)
    finally:
        os.close(fd)
    return head.ljust(lib.BINPRM_BUF_SIZE, b"\0"), st.st_size


def _path_error(e: OSError, what, path):
    if e.errno == errno.ENOENT:
        return NotFoundError("%s %s not found" % (what, path))
    return NotExecutableError("%s %s: %s" % (what, path, e.strerror))


def _check_elf(path, what, keep, dropped, loader=False):
    import sys

    from ukrun.guest import elf, execrules
    from ukrun.kernel.ffi import lib

    try:
        info = elf.read_elf(path)
    except elf.ElfError as e:
        raise NotExecutableError("%s %s is not a valid ELF executable: %s" % (what, path, e),
                                 "rebuild it, or copy it again") from None
    except OSError:
        return  # execve reports it
    machine = os.uname().machine
    runs = execrules.runnable_machines(machine, lib)
    native = info.little_endian == (sys.byteorder == "little")
    if runs is not None and (not native or (info.elf_class, info.machine) not in runs):
        label = execrules.machine_label(info.machine, lib)
        raise NotExecutableError("%s %s is a %d-bit %s%s program; this machine is %s"
                                 % (what, path, info.elf_class, label,
                                    "" if native else " (other byte order)", machine),
                                 "use the build for %s" % machine)
    if info.interpreter is not None and not loader:
        _check_loader(info.interpreter, what, path, keep, dropped)


def _check_loader(loader, what, path, keep, dropped):
    base = os.path.basename(loader)
    if base.startswith("ld-musl-"):
        hint = "it was linked against musl (Alpine): run it on a musl image, or link it statically"
    elif base.startswith("ld-linux"):
        hint = "it was linked against glibc: run it on a glibc image, or link it statically"
    else:
        hint = "install the C library it was linked against, or link it statically"
    try:
        st = os.stat(loader)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise NotFoundError("%s %s needs the loader %s, which is not here"
                                % (what, path, loader), hint) from None
        raise NotExecutableError("%s %s needs the loader %s: %s"
                                 % (what, path, loader, e.strerror)) from None
    whose = "%s %s's loader" % (what, path)
    if not stat.S_ISREG(st.st_mode) or not os.access(loader, os.X_OK):
        raise NotExecutableError("%s %s is not an executable file" % (whose, loader), hint)
    if dropped:
        check_usable_unprivileged(loader, whose, execute=True, keep=keep, read=False)
    _check_elf(loader, whose, keep, dropped, loader=True)


def _check_script(path, what, head, keep, dropped, depth):
    from ukrun.guest import binfmt

    try:
        line = binfmt.parse_shebang(head)
    except binfmt.ShebangError as e:
        raise NotExecutableError("%s %s cannot be run: %s" % (what, path, e),
                                 "give it a #!/path/to/interpreter line") from None
    interpreter = os.fsdecode(line.interpreter)
    try:
        st = os.stat(interpreter)
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise NotExecutableError("%s %s names interpreter %s: %s"
                                     % (what, path, interpreter, e.strerror)) from None
        if line.interpreter.endswith(b"\r"):
            raise NotFoundError("%s %s has DOS line endings: its #! line names %r"
                                % (what, path, interpreter), _DOS_HINT % path) from None
        raise NotFoundError("%s %s names interpreter %s, which is not here"
                            % (what, path, interpreter),
                            "install it, or change the #! line") from None
    if line.dos_line_end:
        raise NotExecutableError("%s %s has DOS line endings: its #! line ends in \\r"
                                 % (what, path), _DOS_HINT % path)
    if stat.S_ISDIR(st.st_mode) or not os.access(interpreter, os.X_OK):
        raise NotExecutableError("%s %s names interpreter %s, which is not executable"
                                 % (what, path, interpreter), "change the #! line")
    # The interpreter runs after the drop and opens the script by its path.
    check_usable_unprivileged(path, what, keep=keep)
    if depth < _MAX_DEPTH:
        _check_image(interpreter, "%s %s's interpreter" % (what, path), keep, dropped,
                     depth + 1)


def _binfmt_misc_claims(head: bytes, path: str) -> bool:
    """Whether an enabled binfmt_misc entry takes this file (tried before ELF and #!).

    What this mount of binfmt_misc shows (per user namespace since Linux 6.7, global before);
    an entry ukrun cannot parse counts as a claim, so that nothing runnable is refused.
    """
    from ukrun.guest import binfmt

    try:
        with open(os.path.join(_BINFMT_MISC, "status")) as f:
            if f.read().strip() != "enabled":
                return False
        names = os.listdir(_BINFMT_MISC)
    except OSError:
        return False  # not mounted: nothing registered that ukrun could see
    for name in names:
        if name in ("status", "register"):
            continue
        try:
            with open(os.path.join(_BINFMT_MISC, name)) as f:
                entry = binfmt.parse_binfmt_entry(f.read())
        except OSError:
            continue  # removed meanwhile
        except ValueError:
            return True
        if binfmt.binfmt_matches(entry, head, os.fsencode(path)):
            return True
    return False


def check_usable_unprivileged(path: str, what: str, execute: bool = False,
                              keep: frozenset = frozenset(), read: bool = True) -> str:
    """What the program ukrun execs will have of ``path``: this process's uid, gid and groups,
    without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (unless ``keep`` keeps them).

    Root passes os.access() on a 0700 file of another uid, and the program then cannot open
    it. Decided from the mode bits: every directory on the path must let these ids search it,
    the file must let them read it (``read``) and, with ``execute``, execute it.
    NotExecutableError (126) when it would not; NotFoundError (127) when it is not there.
    POSIX ACLs are not evaluated: a file or directory that carries one is given the benefit of
    the doubt. Neither are LSMs (AppArmor, SELinux).
    """
    from ukrun.guest import execrules
    from ukrun.kernel.caps import cap_number

    if cap_number("CAP_DAC_OVERRIDE") in keep:
        return path
    reads_all = cap_number("CAP_DAC_READ_SEARCH") in keep
    ids = (os.geteuid(), {os.getegid(), *os.getgroups()})
    if not reads_all:
        for directory in _directories_on(path):
            _require(directory, execrules.SEARCH, ids, what, path, "search (x)")
    want = (execrules.READ if read and not reads_all else 0)
    want |= execrules.EXECUTE if execute else 0
    if want:
        done = {execrules.READ: "read (r)", execrules.EXECUTE: "execute (x)"}
        _require(path, want, ids, what, path,
                 " and ".join(v for k, v in done.items() if want & k))
    return path


def _directories_on(path):
    """Every directory a lookup of ``path`` searches: each prefix as written (from the working
    directory when relative) and each of the real path, once."""
    start = "/" if path.startswith("/") else "."
    seen = [start]
    current = start
    for part in path.split("/")[:-1]:
        if part:
            current = os.path.join(current, part)
            seen.append(current)
    current = "/"
    for part in os.path.dirname(os.path.realpath(path)).split("/"):
        current = os.path.join(current, part)
        if current not in seen:
            seen.append(current)
    return seen


def _require(target, want, ids, what, path, permission):
    from ukrun.guest import execrules

    try:
        st = os.stat(target)
    except OSError as e:
        raise _path_error(e, what, path) from None
    uid, gids = ids
    if execrules.mode_grants(st.st_mode, st.st_uid, st.st_gid, want, uid, gids):
        return
    if _has_acl(target):
        return
    who = "u" if uid == st.st_uid else "g" if st.st_gid in gids else "o"
    letters = "".join(c for bit, c in ((execrules.READ, "r"), (execrules.EXECUTE, "x"))
                      if want & bit)
    where = "" if target == path else ": directory %s" % target
    raise NotExecutableError(
        "%s %s%s gives uid %d no %s permission once ukrun drops its capabilities "
        "(mode %04o, owner %d:%d)" % (what, path, where, uid, permission,
                                      stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid),
        "chmod %s+%s %s, or chown it" % (who, letters, target))


def _has_acl(path) -> bool:
    """Whether PATH carries an access ACL (which may grant what its mode does not): through
    os.getxattr, or the C core's getxattr(2) where CPython lacks it (musl, before 3.11.3)."""
    try:
        if hasattr(os, "getxattr"):
            os.getxattr(path, _ACL_ACCESS)
        else:
            from ukrun.kernel.ffi import check, lib

            check(lib.ukrun_xattr_size(os.fsencode(path), _ACL_ACCESS.encode()), "getxattr")
    except OSError:
        return False
    return True


def check_exec_size(argv, env, path: str | None = None, stack_limit: int | None = None) -> None:
    """execve(``path`` or argv[0], ``argv``, ``env``) fits the kernel's limits on arguments.

    ``env``: a mapping (as os.environ) or a sequence of "NAME=value" strings; ``stack_limit``:
    the RLIMIT_STACK to judge by (this process's, which the program inherits, by default; -1
    for none). UkrunError (exit 1) naming the argument and how many bytes over, where execve
    would fail with E2BIG: one string longer than MAX_ARG_STRLEN; the strings and their
    pointers over a quarter of the stack limit (execrules.arg_space); the strings over the
    stack limit itself (execrules.stack_room). A NUL byte in any of them (which execve cannot
    pass) is refused too. The words a #! line adds are not counted.
    """
    import struct

    from ukrun.guest import execrules
    from ukrun.kernel.ffi import lib

    if not argv:
        raise ValueError("argv must not be empty")  # as os.execve
    if path is None:
        path = argv[0]
    # The path, the arguments, the environment: execve's strings, named (for a message) only
    # once one is found wrong, so that a run that fits words none.
    strings = [os.fsencode(path)] + [os.fsencode(a) for a in argv] + _environment(env)
    argc = len(argv)
    if b"\0" in b"".join(strings):
        index = next(i for i, s in enumerate(strings) if b"\0" in s)
        raise UkrunError("%s contains a NUL byte, which execve cannot pass"
                         % _describe(strings, index, argc))
    page = os.sysconf("SC_PAGE_SIZE")
    most = lib.UKRUN_ARG_STRLEN_PAGES * page  # MAX_ARG_STRLEN
    if max(map(len, strings)) + 1 > most:
        index = next(i for i, s in enumerate(strings) if len(s) + 1 > most)
        size = len(strings[index]) + 1
        raise UkrunError("%s is %d bytes with its NUL, %d over the kernel's limit of %d "
                         "for one string" % (_describe(strings, index, argc), size,
                                             size - most, most),
                         "pass large data in a file")
    if stack_limit is None:
        stack_limit = _stack_limit()
    pointer = struct.calcsize("P")
    need = execrules.exec_bytes(strings, argc, len(strings) - 1 - argc, pointer)
    space = execrules.arg_space(stack_limit)
    copied = execrules.string_bytes(strings)
    room = execrules.stack_room(stack_limit, page, pointer)
    if need > space:
        over, limit = need - space, "limit of %d (a quarter of the stack limit, at most %d)" % (
            space, execrules.STK_LIM // 4 * 3)
    elif room is not None and copied > room:
        need, over, limit = copied, copied - room, "stack limit of %d" % stack_limit
    else:
        return
    index = max(range(len(strings)), key=lambda i: len(strings[i]))
    raise UkrunError("the arguments and environment take %d bytes, %d over the kernel's %s; "
                     "the longest is %s, %d bytes" % (need, over, limit,
                                                      _describe(strings, index, argc),
                                                      len(strings[index])),
                     "pass large data in a file, or raise the stack limit (ulimit -s)")


def _stack_limit() -> int:
    """This process's RLIMIT_STACK soft limit (-1: none), which the program inherits, as
    /proc/self/limits says: the resource module is a C extension, whose loading would cost a
    run ~0.4 ms, dozens of times the read. Without /proc, resource answers."""
    from ukrun.guest import execrules

    try:
        fd = os.open("/proc/self/limits", os.O_RDONLY | os.O_CLOEXEC)
        try:
            text = os.read(fd, 1 << 16)
        finally:
            os.close(fd)
        return execrules.soft_limit(text, execrules.STACK_LIMIT_NAME)
    except (OSError, ValueError):
        import resource

        soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
        return -1 if soft == resource.RLIM_INFINITY else soft


def _environment(env) -> list:
    if hasattr(env, "items"):
        return [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
    return [os.fsencode(s) for s in env]


def _describe(strings: list, index: int, argc: int) -> str:
    """How a message names ``strings[index]``, of an execve's path, ``argc`` arguments and
    environment."""
    s = strings[index]
    if index == 0:
        return "the program path"
    if index > argc:
        return "environment variable %s" % os.fsdecode(s.split(b"=", 1)[0])
    shown = s[:24].decode("utf-8", "backslashreplace")
    return "argument %d (%r%s)" % (index - 1, shown, "..." if len(s) > 24 else "")
