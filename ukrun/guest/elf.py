"""Just enough ELF to tell whether an executable needs a dynamic loader (pure Python).

``ukrun dockerfile`` copies a tender (or a unix-target unikernel) into an Alpine image, whose C
library is musl: a program linked against glibc's loader cannot start there, and the failure is
a confusing "not found" from execve. The answer is in the program headers: an executable that
names a loader carries a PT_INTERP segment; a static one (ET_EXEC) and a static-pie (ET_DYN with
PT_DYNAMIC but no PT_INTERP: it relocates itself) carry none. ``ldd`` is not used because it runs
the loader, and cannot say anything about a foreign-libc binary. A run's preflight reads the
same headers (ukrun.guest.programs) to name a missing loader before execve fails with ENOENT.

The numbers below are fixed by the System V gABI (``<elf.h>``); tests/guest/test_elf.py checks them
against the system header. No ukrun C is involved, so this module stays cheap to import.
"""
from __future__ import annotations

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
_TABLE_AT_ONCE = 1 << 16  # the kernel's own bound on a program header table (load_elf_phdrs())


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
        return _parse(len(view), lambda offset, size: bytes(view[offset:offset + size]))


def _parse(length: int, read):
    """The ElfInfo of a file of ``length`` bytes; ``read(offset, size)`` returns those bytes,
    within the file: every offset and size is checked against ``length`` first."""
    ident = read(0, min(length, EI_NIDENT))
    if length < EI_NIDENT or ident[:4] != ELFMAG:
        raise ElfError("not an ELF file")
    elf_class, data_encoding = ident[EI_CLASS], ident[EI_DATA]
    if elf_class not in _EHDR:
        raise ElfError("unknown ELF class %d" % elf_class)
    if data_encoding not in (ELFDATA2LSB, ELFDATA2MSB):
        raise ElfError("unknown ELF data encoding %d" % data_encoding)
    order = "<" if data_encoding == ELFDATA2LSB else ">"
    if length < _EHDR_SIZE[elf_class]:
        raise ElfError("truncated ELF header")
    (e_type, e_machine, _version, _entry, e_phoff, _shoff, _flags, _ehsize, e_phentsize,
     e_phnum) = struct.unpack_from(order + _EHDR[elf_class], read(0, _EHDR_SIZE[elf_class]),
                                   EI_NIDENT)
    if e_type not in (ET_EXEC, ET_DYN):
        raise ElfError("not an executable but %s" % _TYPE_NAMES.get(e_type, "ELF type %d" % e_type))
    if e_phnum == 0:
        raise ElfError("an executable without program headers")
    if e_phnum == PN_XNUM:
        # Needs the section headers; no program that ukrun starts has 65535 segments.
        raise ElfError("too many program headers (PN_XNUM)")
    if e_phentsize < _PHDR_SIZE[elf_class]:
        raise ElfError("program header size %d is too small" % e_phentsize)
    if e_phoff > length or e_phnum * e_phentsize > length - e_phoff:
        raise ElfError("truncated program headers")

    interpreter = None
    dynamic = False
    for header in _entries(read, e_phoff, e_phnum, e_phentsize, _PHDR_SIZE[elf_class]):
        p_type, p_offset, p_filesz = struct.unpack_from(order + _PHDR[elf_class], header)
        if p_type == PT_DYNAMIC:
            dynamic = True
        elif p_type == PT_INTERP and interpreter is None:
            # The kernel loads the first one and ignores the rest (load_elf_binary()).
            interpreter = _read_interpreter(length, read, p_offset, p_filesz)
    return ElfInfo(elf_class=32 if elf_class == ELFCLASS32 else 64,
                   little_endian=data_encoding == ELFDATA2LSB, type=e_type,
                   machine=e_machine, interpreter=interpreter, dynamic=dynamic)


def _entries(read, offset: int, count: int, stride: int, size: int) -> list:
    """The ``count`` entries of ``size`` bytes, one every ``stride`` from ``offset``: read at
    once when the table is small (the kernel execs none over 64 KiB), else one by one, so
    that a forged entry size cannot make a large file be read whole."""
    if count * stride <= _TABLE_AT_ONCE:
        table = read(offset, count * stride)
        return [table[i * stride:i * stride + size] for i in range(count)]
    return [read(offset + i * stride, size) for i in range(count)]


def _read_interpreter(length, read, offset, size):
    # The kernel's own limits (load_elf_binary()): ENOEXEC for a path of fewer than 2 or more
    # than PATH_MAX bytes, or one without its NUL; EIO for one past the end of the file.
    if size < 2 or size > _MAX_INTERP:
        raise ElfError("PT_INTERP of %d bytes" % size)
    if offset > length or size > length - offset:
        raise ElfError("PT_INTERP lies beyond the end of the file")
    data = read(offset, size)
    if data[-1] != 0:
        raise ElfError("PT_INTERP is not NUL-terminated")
    path = data.split(b"\0", 1)[0]
    if not path:
        raise ElfError("empty PT_INTERP")
    return os.fsdecode(path)


def read_elf(path) -> ElfInfo:
    """parse_elf() on a file, of which only the headers and the loader's path are read (a unix
    unikernel can be large; mmap, the other way, costs a run its import).

    OSError (missing, unreadable) passes through; ElfError for what is not an ELF executable.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        length = os.fstat(fd).st_size
        if length == 0:
            raise ElfError("empty file")
        return _parse(length, lambda offset, size: _pread_all(fd, size, offset))
    finally:
        os.close(fd)


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset``, which the caller checked lie within the file; ElfError
    when the file ends sooner (it shrank meanwhile)."""
    data = os.pread(fd, size, offset)
    while len(data) < size:
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            raise ElfError("the file ended at %d bytes while being read" % (offset + len(data)))
        data += more
    return data
