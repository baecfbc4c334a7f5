"""Just enough ELF to tell whether an executable needs a dynamic loader (pure Python).

``ukrun dockerfile`` copies a tender (or a unix-target unikernel) into an Alpine image, whose C
library is musl: a program linked against glibc's loader cannot start there, and the failure is
a confusing "not found" from execve. The answer is in the program headers: an executable that
names a loader carries a PT_INTERP segment; a static one (ET_EXEC) and a static-pie (ET_DYN with
PT_DYNAMIC but no PT_INTERP: it relocates itself) carry none. ``ldd`` is not used because it runs
the loader, and cannot say anything about a foreign-libc binary. A run's preflight reads the
same headers (ukrun.programs) to name a missing loader before execve fails with ENOENT.

The numbers below are fixed by the System V gABI (``<elf.h>``); tests/test_elf.py checks them
against the system header. No ukrun C is involved, so this module stays cheap to import.
"""
from __future__ import annotations

import mmap
import os
import struct

from ukrun.valueclass import value_class

ELFMAG = b"\x7fELF"
EI_NIDENT = 16
EI_CLASS = 4
EI_DATA = 5
ELFCLASS32 = 1
ELFCLASS64 = 2
ELFDATA2LSB = 1
ELFDATA2MSB = 2
ET_REL = 1
ET_EXEC = 2
ET_DYN = 3
ET_CORE = 4
PT_DYNAMIC = 2
PT_INTERP = 3
PN_XNUM = 0xFFFF  # e_phnum escape: the real count lives in section header 0

# After e_ident: e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize,
# e_phentsize, e_phnum (the rest is not needed). Addresses and offsets are 4 or 8 bytes wide.
_EHDR = {ELFCLASS32: "HHIIIIIHHH", ELFCLASS64: "HHIQQQIHHH"}
_EHDR_SIZE = {ELFCLASS32: 52, ELFCLASS64: 64}
# Program header: p_type, then p_offset and p_filesz, whose places differ between the classes
# (Elf64_Phdr moves p_flags up to keep the 8-byte fields aligned).
_PHDR = {ELFCLASS32: "II8xI", ELFCLASS64: "I4xQ16xQ"}
_PHDR_SIZE = {ELFCLASS32: 32, ELFCLASS64: 56}
_TYPE_NAMES = {ET_REL: "a relocatable object", ET_CORE: "a core dump"}
# A loader path longer than this is not a real one (PATH_MAX); it also bounds what we read.
_MAX_INTERP = 4096


class ElfError(ValueError):
    """The bytes are not an ELF executable this module can read."""


@value_class(frozen=True)
class ElfInfo:
    elf_class: int  # 32 or 64 (bits)
    little_endian: bool
    type: int  # ET_EXEC or ET_DYN
    machine: int  # e_machine (EM_X86_64 == 62)
    interpreter: str | None  # the PT_INTERP path, None when there is none
    dynamic: bool  # has a PT_DYNAMIC segment

    @property
    def static(self) -> bool:
        """True when the kernel can start it without a loader (static or static-pie)."""
        return self.interpreter is None

    def describe(self) -> str:
        if self.interpreter is not None:
            return "dynamically linked (loader %s)" % self.interpreter
        if self.type == ET_DYN:
            return "statically linked (static-pie)"
        return "statically linked"


def parse_elf(data) -> ElfInfo:
    """Read the ELF header and program headers from ``data`` (bytes, mmap, memoryview).

    Raises ElfError, and only ElfError, for anything that is not a well-formed ELF executable:
    every offset and size is checked against the data before it is used.
    """
    # Released on the way out, even through an exception, so a caller may close its mmap.
    with memoryview(data) as view:
        return _parse(view)


def _parse(view):
    if len(view) < EI_NIDENT or bytes(view[:4]) != ELFMAG:
        raise ElfError("not an ELF file")
    elf_class, data_encoding = view[EI_CLASS], view[EI_DATA]
    if elf_class not in _EHDR:
        raise ElfError("unknown ELF class %d" % elf_class)
    if data_encoding not in (ELFDATA2LSB, ELFDATA2MSB):
        raise ElfError("unknown ELF data encoding %d" % data_encoding)
    order = "<" if data_encoding == ELFDATA2LSB else ">"
    if len(view) < _EHDR_SIZE[elf_class]:
        raise ElfError("truncated ELF header")
    (e_type, e_machine, _version, _entry, e_phoff, _shoff, _flags, _ehsize, e_phentsize,
     e_phnum) = struct.unpack_from(order + _EHDR[elf_class], view, EI_NIDENT)
    if e_type not in (ET_EXEC, ET_DYN):
        raise ElfError("not an executable but %s" % _TYPE_NAMES.get(e_type, "ELF type %d" % e_type))
    if e_phnum == 0:
        raise ElfError("an executable without program headers")
    if e_phnum == PN_XNUM:
        # Needs the section headers; no program that ukrun starts has 65535 segments.
        raise ElfError("too many program headers (PN_XNUM)")
    if e_phentsize < _PHDR_SIZE[elf_class]:
        raise ElfError("program header size %d is too small" % e_phentsize)
    if e_phoff > len(view) or e_phnum * e_phentsize > len(view) - e_phoff:
        raise ElfError("truncated program headers")

    interpreter = None
    dynamic = False
    for i in range(e_phnum):
        p_type, p_offset, p_filesz = struct.unpack_from(
            order + _PHDR[elf_class], view, e_phoff + i * e_phentsize)
        if p_type == PT_DYNAMIC:
            dynamic = True
        elif p_type == PT_INTERP and interpreter is None:
            # The kernel loads the first one and ignores the rest (load_elf_binary()).
            interpreter = _read_interpreter(view, p_offset, p_filesz)
    return ElfInfo(elf_class=32 if elf_class == ELFCLASS32 else 64,
                   little_endian=data_encoding == ELFDATA2LSB, type=e_type,
                   machine=e_machine, interpreter=interpreter, dynamic=dynamic)


def _read_interpreter(view, offset, size):
    # The kernel's own limits (load_elf_binary()): ENOEXEC for a path of fewer than 2 or more
    # than PATH_MAX bytes, or one without its NUL; EIO for one past the end of the file.
    if size < 2 or size > _MAX_INTERP:
        raise ElfError("PT_INTERP of %d bytes" % size)
    if offset > len(view) or size > len(view) - offset:
        raise ElfError("PT_INTERP lies beyond the end of the file")
    if view[offset + size - 1] != 0:
        raise ElfError("PT_INTERP is not NUL-terminated")
    path = bytes(view[offset:offset + size]).split(b"\0", 1)[0]
    if not path:
        raise ElfError("empty PT_INTERP")
    return os.fsdecode(path)


def read_elf(path) -> ElfInfo:
    """parse_elf() on a file, mapped rather than read (a unix unikernel can be large).

    OSError (missing, unreadable) passes through; ElfError for what is not an ELF executable.
    """
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise ElfError("empty file")  # mmap refuses empty files
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return parse_elf(mapped)
