"""ukrun.guest.elf: real binaries built with gcc, hand-made headers for every other case, and fuzzing."""
import re
import struct
import subprocess

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from elfs import PT_LOAD, make_elf
from ukrun.guest import elf
from ukrun.guest.elf import ET_CORE, ET_DYN, ET_EXEC, ET_REL, PT_DYNAMIC, PT_INTERP, ElfError

HELLO_C = "int main(void) { return 0; }\n"
@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    """static, static-pie, dynamic (glibc) and musl-loader executables, built here with gcc."""
    d = tmp_path_factory.mktemp("elf")
    (d / "hello.c").write_text(HELLO_C)
    flags = {"static": ["-static"], "static_pie": ["-static-pie"], "dynamic": [],
             "musl": ["-Wl,--dynamic-linker=/lib/ld-musl-x86_64.so.1"]}
    for name, extra in flags.items():
        # -static needs libc6-dev's libc.a, which the cffi build needs anyway.
        subprocess.run(["gcc", "-O0", "-o", str(d / name), str(d / "hello.c")] + extra,
                       check=True, capture_output=True)
    return d


def with_interp(path=b"/lib/ld-musl-x86_64.so.1\0", cls=64, little=True, e_type=ET_DYN):
    start = (64 + 56 * 2) if cls == 64 else (52 + 32 * 2)
    return make_elf(cls, little, e_type, [(PT_INTERP, start, len(path)), (PT_LOAD, 0, 0)],
                    payload=path)


def test_constants_match_the_system_elf_h():
    header = open("/usr/include/elf.h").read()
    for name in ("EI_NIDENT", "EI_CLASS", "EI_DATA", "ELFCLASS32", "ELFCLASS64", "ELFDATA2LSB",
                 "ELFDATA2MSB", "ET_REL", "ET_EXEC", "ET_DYN", "ET_CORE", "PT_DYNAMIC",
                 "PT_INTERP", "PN_XNUM"):
        m = re.search(r"^#define\s+%s\s+\(?(0x[0-9a-fA-F]+|\d+)\)?" % name, header, re.M)
        assert m, name
        assert int(m.group(1), 0) == getattr(elf, name), name


def test_static_executable(binaries):
    info = elf.read_elf(binaries / "static")
    assert (info.type, info.interpreter, info.static) == (ET_EXEC, None, True)
    assert (info.elf_class, info.little_endian, info.machine) == (64, True, 62)
    assert info.describe() == "statically linked"


def test_static_pie_has_dynamic_but_no_loader(binaries):
    info = elf.read_elf(binaries / "static_pie")
    assert (info.type, info.dynamic, info.interpreter, info.static) == (ET_DYN, True, None, True)
    assert info.describe() == "statically linked (static-pie)"


def test_dynamic_executable_names_its_loader(binaries):
    info = elf.read_elf(binaries / "dynamic")
    loader = subprocess.run(["readelf", "-l", str(binaries / "dynamic")], capture_output=True,
                            text=True).stdout
    expected = re.search(r"interpreter: (\S+)\]", loader)
    assert info.interpreter == (expected.group(1) if expected else "/lib64/ld-linux-x86-64.so.2")
    assert info.dynamic and not info.static
    assert info.describe() == "dynamically linked (loader %s)" % info.interpreter


def test_loader_chosen_at_link_time(binaries):
    assert elf.read_elf(binaries / "musl").interpreter == "/lib/ld-musl-x86_64.so.1"


@pytest.mark.parametrize("cls", [32, 64])
@pytest.mark.parametrize("little", [True, False])
def test_both_classes_and_byte_orders(cls, little):
    info = elf.parse_elf(with_interp(cls=cls, little=little))
    assert (info.elf_class, info.little_endian) == (cls, little)
    assert info.interpreter == "/lib/ld-musl-x86_64.so.1"
    static = elf.parse_elf(make_elf(cls, little, ET_EXEC, [(PT_LOAD, 0, 0), (PT_DYNAMIC, 0, 0)]))
    assert static.static and static.dynamic


def test_the_first_pt_interp_is_the_one_the_kernel_loads():
    data = make_elf(phdrs=[(PT_INTERP, 176, 4), (PT_INTERP, 180, 4)], payload=b"/ld\0/xx\0")
    assert elf.parse_elf(data).interpreter == "/ld"


def test_pt_interp_of_path_max_bytes_is_read():
    path = b"/" * 4095 + b"\0"
    assert elf.parse_elf(make_elf(phdrs=[(PT_INTERP, 120, 4096)], payload=path)).interpreter \
        == "/" * 4095


def test_larger_program_header_entries_are_stepped_over():
    table = struct.pack("<IIQQQQQQ", PT_INTERP, 0, 64 + 64, 0, 0, 5, 0, 0) + bytes(8)
    data = make_elf(phdrs=(), phnum=1, phentsize=64, payload=table + b"/ld\0\0")
    assert elf.parse_elf(data).interpreter == "/ld"


@pytest.mark.parametrize("data, message", [
    (b"", "not an ELF file"),
    (b"#!/bin/sh\necho hello\n", "not an ELF file"),
    (elf.ELFMAG + bytes([3, 1, 1]) + bytes(60), "unknown ELF class 3"),
    (elf.ELFMAG + bytes([2, 0, 1]) + bytes(60), "unknown ELF data encoding 0"),
    (make_elf()[:40], "truncated ELF header"),
    (make_elf(e_type=ET_REL, phnum=1), "not an executable but a relocatable object"),
    (make_elf(e_type=ET_CORE, phnum=1), "not an executable but a core dump"),
    (make_elf(e_type=7, phnum=1), "not an executable but ELF type 7"),
    (make_elf(phdrs=()), "without program headers"),
    (make_elf(phnum=0xFFFF), "PN_XNUM"),
    (make_elf(phdrs=[(PT_LOAD, 0, 0)], phentsize=40), "program header size 40 is too small"),
    (make_elf(phdrs=[(PT_LOAD, 0, 0)])[:100], "truncated program headers"),
    (make_elf(phdrs=[(PT_INTERP, 10 ** 6, 10)]), "beyond the end of the file"),
    (make_elf(phdrs=[(PT_INTERP, 120, 2 ** 40)]), "PT_INTERP of 1099511627776 bytes"),
    (make_elf(phdrs=[(PT_INTERP, 120, 0)]), "PT_INTERP of 0 bytes"),
    # The kernel's own bounds (load_elf_binary()): 2 to PATH_MAX bytes, the last one a NUL.
    (make_elf(phdrs=[(PT_INTERP, 120, 1)], payload=b"/"), "PT_INTERP of 1 bytes"),
    (make_elf(phdrs=[(PT_INTERP, 120, 4097)], payload=b"/" * 4096 + b"\0"),
     "PT_INTERP of 4097 bytes"),
    (make_elf(phdrs=[(PT_INTERP, 120, 3)], payload=b"/ld"), "not NUL-terminated"),
    (make_elf(phdrs=[(PT_INTERP, 120, 2)], payload=b"\0\0"), "empty PT_INTERP"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_malformed(data, message):
    with pytest.raises(ElfError, match=re.escape(message)):
        elf.parse_elf(data)


def test_read_elf_errors_release_the_mapping(tmp_path):
    # An ElfError raised while a view of the mmap is alive would turn into BufferError on close.
    bad = tmp_path / "bad"
    bad.write_bytes(make_elf(phdrs=[(PT_INTERP, 10 ** 6, 10)]))
    with pytest.raises(ElfError, match="beyond the end"):
        elf.read_elf(bad)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(ElfError, match="empty file"):
        elf.read_elf(empty)


def test_read_elf_passes_oserror_through(tmp_path):
    with pytest.raises(FileNotFoundError):
        elf.read_elf(tmp_path / "absent")


@given(st.binary(max_size=400))
@example(make_elf(phdrs=[(PT_INTERP, 2 ** 63, 2)]))
@example(make_elf(cls=32, phdrs=[(PT_INTERP, 2 ** 32 - 1, 1)]))
def test_arbitrary_bytes_raise_only_elferror(data):
    try:
        elf.parse_elf(data)
    except ElfError:
        pass


@given(st.data())
def test_mutated_headers_raise_only_elferror(data):
    base = bytearray(with_interp(cls=data.draw(st.sampled_from([32, 64]))))
    for _ in range(data.draw(st.integers(1, 8))):
        base[data.draw(st.integers(0, len(base) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(base)))
    try:
        info = elf.parse_elf(bytes(base[:cut]))
    except ElfError:
        return
    assert info.interpreter is None or isinstance(info.interpreter, str)
