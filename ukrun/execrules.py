"""What the kernel decides when a program is exec'd, as pure functions over bytes and numbers.

Each mirrors one piece of Linux that ukrun.preflight uses to tell, before the network is
touched, that an execve would fail: how binfmt_script reads a ``#!`` line, how binfmt_misc
matches a file, which ELF machines a machine runs, whom a file's mode bits let in, how
much room execve gives arguments, and how /proc writes the stack limit that room depends on.
Nothing here reads a file or raises a ukrun error.
"""
from __future__ import annotations

import stat

from ukrun.valueclass import value_class

# --- #! lines (fs/binfmt_script.c) ----------------------------------------------------------

_SPACETAB = b" \t"


class ShebangError(ValueError):
    """A ``#!`` line the kernel refuses: ENOEXEC, or EACCES for an empty interpreter name."""


@value_class(frozen=True)
class Shebang:
    interpreter: bytes  # the path the kernel opens
    argument: bytes | None  # everything after it, as ONE argument, or None

    @property
    def dos_line_end(self) -> bool:
        """The line ended in CR LF: the CR stuck to the last word."""
        return (self.argument if self.argument is not None else self.interpreter).endswith(b"\r")


def _next_non_spacetab(buf, first, last):
    for i in range(first, last + 1):
        if buf[i] not in _SPACETAB:
            return i
    return None


def _next_terminator(buf, first, last):
    for i in range(first, last + 1):
        if buf[i] in _SPACETAB or buf[i] == 0:
            return i
    return None


def parse_shebang(buf: bytes) -> Shebang | None:
    """The interpreter and argument the kernel takes from ``buf``, None when it is no script.

    ``buf`` is what the kernel reads: the file's first BINPRM_BUF_SIZE bytes, padded with NULs.
    Mirrors load_script(): the line ends at the first newline; the interpreter runs up to a
    space, tab or NUL; the rest, trimmed, is one argument. Without a newline the interpreter
    must end inside the buffer (the kernel will not exec a cut path). ShebangError otherwise.
    """
    if buf[:2] != b"#!":
        return None
    last = len(buf) - 1
    end = buf.find(b"\n")
    if end < 0:
        start = _next_non_spacetab(buf, 2, last)
        if start is None:
            raise ShebangError("its #! line names no interpreter")
        if _next_terminator(buf, start, last) is None:
            raise ShebangError("its #! line is longer than the %d bytes the kernel reads"
                               % len(buf))
        end = last
    while buf[end - 1] in _SPACETAB:
        end -= 1
    name = _next_non_spacetab(buf, 2, end)
    if name is None or name == end:
        raise ShebangError("its #! line names no interpreter")
    sep = _next_terminator(buf, name, end)
    if sep == name:  # a NUL right away: the kernel looks up "" (and fails with EACCES)
        raise ShebangError("its #! line names no interpreter")
    argument = None
    if sep is not None and buf[sep] != 0:
        start = _next_non_spacetab(buf, sep, end)
        if start is not None:
            argument = bytes(buf[start:end]).split(b"\0", 1)[0]
    return Shebang(interpreter=bytes(buf[name:end if sep is None else sep]), argument=argument)


# --- binfmt_misc (fs/binfmt_misc.c) ---------------------------------------------------------

@value_class(frozen=True)
class BinfmtEntry:
    enabled: bool
    extension: bytes | None  # matched against the file name, or None for magic matching
    offset: int
    magic: bytes
    mask: bytes | None


def parse_binfmt_entry(text: str) -> BinfmtEntry:
    """A /proc/sys/fs/binfmt_misc/NAME file as entry_status() writes it. ValueError if not."""
    lines = text.split("\n")
    if lines[0] not in ("enabled", "disabled"):
        raise ValueError("binfmt_misc entry starts with %r" % lines[0][:40])
    fields = {}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        fields[key] = value
    if "extension" in fields:
        ext = fields["extension"]
        if not ext.startswith("."):
            raise ValueError("binfmt_misc extension %r" % ext[:40])
        return BinfmtEntry(enabled=lines[0] == "enabled", extension=ext[1:].encode(),
                           offset=0, magic=b"", mask=None)
    if "offset" not in fields or "magic" not in fields:
        raise ValueError("binfmt_misc entry with neither extension nor magic")
    offset = int(fields["offset"], 10)
    magic = bytes.fromhex(fields["magic"])
    mask = bytes.fromhex(fields["mask"]) if "mask" in fields else None
    if offset < 0 or not magic or (mask is not None and len(mask) != len(magic)):
        raise ValueError("binfmt_misc magic at %d of %d bytes" % (offset, len(magic)))
    return BinfmtEntry(enabled=lines[0] == "enabled", extension=None, offset=offset,
                       magic=magic, mask=mask)


def binfmt_matches(entry: BinfmtEntry, buf: bytes, filename: bytes) -> bool:
    """Whether the kernel hands this file to ``entry``'s interpreter (check_file())."""
    if not entry.enabled:
        return False
    if entry.extension is not None:
        dot = filename.rfind(b".")
        return dot >= 0 and filename[dot + 1:] == entry.extension
    window = bytes(buf[entry.offset:entry.offset + len(entry.magic)])
    if len(window) != len(entry.magic):
        return False
    mask = entry.mask or b"\xff" * len(entry.magic)
    return all((b ^ m) & k == 0 for b, m, k in zip(window, entry.magic, mask))


# --- ELF machines ---------------------------------------------------------------------------

# (ELF class, e_machine name from <elf.h>) a machine's kernel runs, by `uname -m`. The 32-bit
# names also list their 64-bit sibling: `setarch i686` (or linux32) makes a 64-bit kernel
# report the 32-bit name, and it still runs 64-bit programs. A real 32-bit kernel then goes
# unchecked for those, which only leaves the failure to execve.
_X86 = ((64, "EM_X86_64"), (32, "EM_386"), (32, "EM_X86_64"))  # x32 is ELFCLASS32 x86-64
_ARM = ((64, "EM_AARCH64"), (32, "EM_ARM"))
_PPC = ((64, "EM_PPC64"), (32, "EM_PPC"))
_S390 = ((64, "EM_S390"), (32, "EM_S390"))
_RISCV = ((64, "EM_RISCV"), (32, "EM_RISCV"))
MACHINE_FAMILIES = {"x86_64": _X86, "i386": _X86, "i486": _X86, "i586": _X86, "i686": _X86,
                    "aarch64": _ARM, "aarch64_be": _ARM, "arm64": _ARM,
                    "ppc64le": _PPC, "ppc64": _PPC, "ppc": _PPC, "s390x": _S390, "s390": _S390,
                    "riscv64": _RISCV, "riscv32": _RISCV}
# What to call a file's machine in a message.
MACHINE_LABELS = {"EM_X86_64": "x86-64", "EM_386": "i386", "EM_AARCH64": "aarch64",
                  "EM_ARM": "arm", "EM_PPC64": "ppc64", "EM_PPC": "ppc", "EM_S390": "s390",
                  "EM_RISCV": "riscv"}


def runnable_machines(uname_machine: str, em) -> frozenset | None:
    """{(ELF class, e_machine)} this machine's kernel execs; None when ukrun cannot tell.

    ``em`` maps an <elf.h> name to its number (the cffi lib).
    """
    family = MACHINE_FAMILIES.get(uname_machine)
    if family is None and uname_machine.startswith("arm"):
        family = _ARM  # armv6l, armv7l, armv8l, ...
    if family is None:
        return None
    return frozenset((cls, getattr(em, name)) for cls, name in family)


def machine_label(e_machine: int, em) -> str:
    for name, label in MACHINE_LABELS.items():
        if getattr(em, name) == e_machine:
            return label
    return "machine %d" % e_machine


# --- file permissions (fs/namei.c, acl_permission_check()) ---------------------------------

def mode_grants(mode: int, owner: int, group: int, want: int, uid: int, gids) -> bool:
    """Whether the mode bits alone give ``uid`` (in groups ``gids``) every bit of ``want``.

    ``want`` is in the "other" position (stat.S_IROTH, S_IXOTH). The owner's bits are used
    when the uid owns the file, even if its group or everyone else would get more; then the
    group's; then everyone else's. That is what a process without CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH gets, uid 0 included. POSIX ACLs are not evaluated here.
    """
    if uid == owner:
        bits = (mode >> 6) & 7
    elif group in gids:
        bits = (mode >> 3) & 7
    else:
        bits = mode & 7
    return bits & want == want


READ = stat.S_IROTH
SEARCH = EXECUTE = stat.S_IXOTH


# --- execve's room for strings (fs/exec.c) --------------------------------------------------

# linux/resource.h and linux/limits.h, as Python names: the first cannot be included next to
# glibc's headers (both define struct timeval), and glibc's <limits.h> #undefs ARG_MAX, which
# is no limit on Linux but the floor below. tests/test_preflight.py checks them against the
# system headers.
STK_LIM = 8 * 1024 * 1024  # _STK_LIM
ARG_MAX = 131072


def arg_space(stack_limit: int) -> int:
    """Bytes execve lets the strings and their pointers take, for RLIMIT_STACK ``stack_limit``.

    fs/exec.c, bprm_stack_limits() (Linux 5.x-6.x; before it, the same rule in
    get_arg_page()): a quarter of the stack limit, at most 3/4 of _STK_LIM, at least ARG_MAX
    ("we've historically supported up to 32 pages (ARG_MAX) of argument strings even with
    small stacks"). A negative limit is RLIM_INFINITY.
    """
    limit = STK_LIM // 4 * 3
    if stack_limit >= 0:
        limit = min(limit, stack_limit // 4)
    return max(limit, ARG_MAX)


def string_bytes(strings) -> int:
    """The strings execve copies, each with its NUL: the file name, environment, arguments."""
    return sum(len(s) + 1 for s in strings)


def exec_bytes(strings, argc: int, envc: int, pointer_size: int) -> int:
    """What execve charges against arg_space(): string_bytes() and a pointer per argument and
    variable; an empty argv is charged one, for the name the kernel puts there
    (bprm_stack_limits())."""
    return string_bytes(strings) + (max(argc, 1) + envc) * pointer_size


def stack_room(stack_limit: int, page_size: int, pointer_size: int) -> int | None:
    """The most string bytes execve can copy under RLIMIT_STACK ``stack_limit`` (None: no limit).

    The strings go to the new program's stack, below its top word (__bprm_mm_init()), whose
    mapping grows a page at a time and may not outgrow the stack limit (get_arg_page() ->
    expand_downwards() -> acct_stack_growth()). This binds only below 4 x ARG_MAX, where
    arg_space()'s floor would allow more (measured here: 65528 bytes under a 64 KiB limit).
    """
    if stack_limit < 0:
        return None
    return stack_limit // page_size * page_size - pointer_size


# --- /proc/PID/limits (fs/proc/base.c, proc_pid_limits()) ---------------------------------

STACK_LIMIT_NAME = b"Max stack size"


def soft_limit(text: bytes, name: bytes) -> int:
    """The soft limit on the line ``name`` (``STACK_LIMIT_NAME``) of a /proc/PID/limits file:
    the kernel writes each as its name, the soft and the hard limit, in padded columns, a
    limit as a decimal number or "unlimited" (RLIM_INFINITY, returned as -1). ValueError when
    no line has that name or its soft limit is neither."""
    for line in text.split(b"\n"):
        if line.startswith(name) and line[len(name):len(name) + 1] == b" ":
            words = line[len(name):].split()
            soft = words[0] if words else b""
            if soft == b"unlimited":
                return -1
            if soft.isdigit():
                return int(soft)
            raise ValueError("%r is not a limit" % soft[:40])
    raise ValueError("no %r line" % name)
