"""ELF files made by hand, for the cases a compiler will not produce."""
import struct

from ukrun.guest import elf
from ukrun.guest.elf import ET_EXEC

PT_LOAD = 1


def make_elf(cls=64, little=True, e_type=ET_EXEC, phdrs=(), phentsize=None, phnum=None,
             payload=b"", machine=62):
    """An ELF header, program headers (p_type, p_offset, p_filesz) and a payload after them."""
    order = "<" if little else ">"
    ehsize, phsize = (64, 56) if cls == 64 else (52, 32)
    ident = elf.ELFMAG + bytes([elf.ELFCLASS64 if cls == 64 else elf.ELFCLASS32,
                                elf.ELFDATA2LSB if little else elf.ELFDATA2MSB, 1]) + bytes(9)
    fmt = "HHIQQQIHHHHHH" if cls == 64 else "HHIIIIIHHHHHH"
    header = ident + struct.pack(order + fmt, e_type, machine, 1, 0, ehsize, 0, 0, ehsize,
                                 phsize if phentsize is None else phentsize,
                                 len(phdrs) if phnum is None else phnum, 0, 0, 0)
    table = b""
    for p_type, p_offset, p_filesz in phdrs:
        if cls == 64:
            table += struct.pack(order + "IIQQQQQQ", p_type, 0, p_offset, 0, 0, p_filesz, 0, 0)
        else:
            table += struct.pack(order + "IIIIIIII", p_type, p_offset, 0, 0, p_filesz, 0, 0, 0)
    return header + table + payload
