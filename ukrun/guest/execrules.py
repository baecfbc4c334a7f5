"""What the kernel decides when a program is exec'd, as pure functions over bytes and numbers.

Each mirrors one piece of Linux that ukrun.preflight uses to tell, before the network is
touched, that an execve would fail: which ELF machines a machine runs, whom a file's mode bits
let in, how much room execve gives arguments, and how /proc writes the stack limit that room
depends on; how a file that is no ELF finds its interpreter (#! lines, binfmt_misc) is
ukrun.guest.binfmt's, which a run that execs an ELF program does not load. Nothing here reads a file
or raises a ukrun error.
"""
from __future__ import annotations

import stat

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
# is no limit on Linux but the floor below. tests/guest/test_programs.py checks them against the
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
