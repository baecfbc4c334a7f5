"""Will execve take the program (ukrun.guest.programs, through ukrun.preflight; ukrun.guest.execrules and
ukrun.guest.binfmt).

Every case is a real file, and every case a check flags is also shown to fail a real execve
(or, for what the program meets after the drop, a real open/execve by a process without
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, or as uid 12345): the checks must match the kernel.
"""
import errno
import os
import re
import resource
import shutil
import stat
import struct
import subprocess
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from elfs import PT_LOAD, make_elf
from ukrun.guest import binfmt, execrules, programs
from ukrun.kernel.ffi import lib
from ukrun.guest.elf import ET_DYN, ET_EXEC, PT_INTERP
from ukrun.errors import NotExecutableError, NotFoundError, UkrunError
from ukrun.guest.binfmt import ShebangError

OTHER = 12345
# What the program has once ukrun has dropped its capabilities: root without the DAC ones.
NO_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
AS_OTHER = ["setpriv", "--reuid", str(OTHER), "--regid", str(OTHER), "--clear-groups", "--"]
EM_AARCH64 = lib.EM_AARCH64

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown and setpriv need root")
needs_setpriv = pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv")


def write(path, data, mode=0o755):
    path.write_bytes(data)
    path.chmod(mode)
    return str(path)


def execve_errno(argv, env=None, preexec_fn=None):
    """The errno of a failed execve of argv[0] (None when it ran): fork + execve, no PATH
    search and no shell fallback (execvp would run an ENOEXEC file with /bin/sh)."""
    try:
        subprocess.run(argv, env={} if env is None else env, capture_output=True,
                       preexec_fn=preexec_fn, timeout=30)
    except OSError as e:
        return e.errno
    return None


# A probe run as another identity: for each path, can it open it, and can it execve it.
PROBE = r"""
import os, subprocess, sys
for path in sys.argv[1:]:
    try:
        os.close(os.open(path, os.O_RDONLY))
        readable = 1
    except OSError:
        readable = 0
    try:
        subprocess.run([path], env={}, capture_output=True, timeout=30)
        runs = 1
    except OSError:
        runs = 0
    print(readable, runs, path)
"""


def probe(identity, paths):
    out = subprocess.run(identity + [sys.executable, "-c", PROBE] + list(paths),
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return {line.split(" ", 2)[2]: (line[0] == "1", line[2] == "1")
            for line in out.splitlines()}


def flags(check, *args, **kwargs):
    """The UkrunError the check raises, or None."""
    try:
        check(*args, **kwargs)
    except UkrunError as e:
        return e
    return None


@pytest.fixture
def shared_dir():
    """A directory every uid can reach (tmp_path's parents are root's 0700)."""
    d = tempfile.mkdtemp(prefix="ukrun-preflight-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d)


@pytest.fixture
def true_with_loader(tmp_path):
    """/bin/true with its PT_INTERP path bytes replaced: (path, the loader it now names)."""
    data = open("/bin/true", "rb").read()
    loader = preflight_loader("/bin/true")
    if loader is None:
        pytest.skip("/bin/true is static here: no loader to replace")
    fake = loader[:-2] + "zz"  # same length, so no offset moves
    assert not os.path.exists(fake)
    patched = data.replace(loader.encode() + b"\0", fake.encode() + b"\0", 1)
    return write(tmp_path / "true", patched), fake


def preflight_loader(path):
    from ukrun.guest import elf

    return elf.read_elf(path).interpreter


# --- the program image --------------------------------------------------------------------

def test_real_executables_pass():
    for path in ("/bin/true", sys.executable, shutil.which("setpriv") or "/bin/true"):
        assert programs.check_program_image(path, "tender") == path


def test_script_with_an_existing_interpreter_passes(tmp_path):
    script = write(tmp_path / "run", b"#!/bin/sh\nexit 0\n")
    assert programs.check_program_image(script, "unikernel") == script
    assert execve_errno([script]) is None


@pytest.mark.parametrize("name, data, error, message, errno_", [
    ("text", b"hello world\n", NotExecutableError, "is not an ELF executable or a script",
     errno.ENOEXEC),
    ("empty", b"", NotExecutableError, "is an empty file", errno.ENOEXEC),
    ("nul", b"\0" * 300, NotExecutableError, "is not an ELF executable or a script",
     errno.ENOEXEC),
    ("no-interpreter", b"#!\n", NotExecutableError, "names no interpreter", errno.ENOEXEC),
    ("blank-shebang", b"#!  \t \nexit 0\n", NotExecutableError, "names no interpreter",
     errno.ENOEXEC),
    ("bare-shebang", b"#!", NotExecutableError, "names no interpreter", errno.EACCES),
    ("nul-interpreter", b"#!\0/bin/sh\n", NotExecutableError, "names no interpreter",
     errno.EACCES),
    ("shebang-too-long", b"#!/" + b"x" * 300, NotExecutableError,
     "longer than the 256 bytes the kernel reads", errno.ENOEXEC),
    ("missing-interpreter", b"#!/nonexistent/sh\nexit 0\n", NotFoundError,
     "names interpreter /nonexistent/sh, which is not here", errno.ENOENT),
    ("crlf", b"#!/bin/sh\r\nexit 0\r\n", NotFoundError, "has DOS line endings",
     errno.ENOENT),
    ("missing-interpreter-crlf", b"#!/nonexistent/env sh\r\n", NotFoundError,
     "names interpreter /nonexistent/env, which is not here", errno.ENOENT),
    ("interpreter-is-a-directory", b"#!/tmp\n", NotExecutableError,
     "names interpreter /tmp, which is not executable", errno.EACCES),
    ("interpreter-not-executable", b"#!/etc/passwd\n", NotExecutableError,
     "names interpreter /etc/passwd, which is not executable", errno.EACCES),
], ids=lambda v: v if isinstance(v, str) and " " not in v else None)
def test_files_execve_refuses(tmp_path, name, data, error, message, errno_):
    path = write(tmp_path / name, data)
    e = flags(programs.check_program_image, path, "unikernel")
    assert type(e) is error and message in e.message, e
    assert e.message.startswith("unikernel %s " % path)
    assert "\n" not in str(e) and e.hint
    assert execve_errno([path]) == errno_


def test_crlf_message_names_the_fix(tmp_path):
    path = write(tmp_path / "crlf", b"#!/bin/sh\r\nexit 0\r\n")
    e = flags(programs.check_program_image, path, "unikernel")
    assert e.exit_status == 127
    assert str(e) == ("unikernel %s has DOS line endings: its #! line names '/bin/sh\\r' "
                      "(convert it: sed -i 's/\\r$//' %s)" % (path, path))


def test_crlf_after_an_argument(tmp_path):
    # execve itself succeeds (the interpreter exists); env then looks for "sh\r" and fails.
    path = write(tmp_path / "crlf", b"#!/usr/bin/env sh\r\nexit 0\r\n")
    e = flags(programs.check_program_image, path, "unikernel")
    assert type(e) is NotExecutableError and "its #! line ends in \\r" in e.message
    assert subprocess.run([path], capture_output=True).returncode == 127


def test_script_whose_interpreter_cannot_be_executed_either(tmp_path):
    inner = write(tmp_path / "inner", b"just text\n")
    outer = write(tmp_path / "outer", b"#!%s\n" % inner.encode())
    e = flags(programs.check_program_image, outer, "unikernel")
    assert type(e) is NotExecutableError
    assert e.message == ("unikernel %s's interpreter %s is not an ELF executable or a script"
                         % (outer, inner))
    assert execve_errno([outer]) == errno.ENOEXEC


def test_interpreters_are_followed_to_a_real_program(tmp_path):
    inner = write(tmp_path / "inner", b"#!/bin/sh\nexit 0\n")
    outer = write(tmp_path / "outer", b"#!%s\n" % inner.encode())
    assert programs.check_program_image(outer, "unikernel") == outer
    assert execve_errno([outer]) is None


def test_missing_and_directory(tmp_path):
    e = flags(programs.check_program_image, str(tmp_path / "absent"), "tender")
    assert type(e) is NotFoundError and e.exit_status == 127
    assert execve_errno([str(tmp_path / "absent")]) == errno.ENOENT
    e = flags(programs.check_program_image, str(tmp_path), "tender")
    assert type(e) is NotExecutableError and e.message.endswith("is a directory")
    assert execve_errno([str(tmp_path)]) == errno.EACCES
    e = flags(programs.check_program_image, "/dev/null", "tender")
    assert type(e) is NotExecutableError and "not a regular file" in e.message
    e = flags(programs.check_program_image, "/bin/true\0", "tender")
    assert type(e) is NotExecutableError and "is not a path" in e.message


def test_truncated_elf(tmp_path):
    head = open("/bin/true", "rb").read(40)
    path = write(tmp_path / "cut", head)
    e = flags(programs.check_program_image, path, "unikernel")
    assert type(e) is NotExecutableError
    assert e.message == "unikernel %s is not a valid ELF executable: truncated ELF header" % path
    assert execve_errno([path]) == errno.ENOEXEC


def test_elf_cut_after_its_header(tmp_path):
    path = write(tmp_path / "cut", open("/bin/true", "rb").read(100))
    e = flags(programs.check_program_image, path, "unikernel")
    assert "truncated program headers" in e.message
    assert execve_errno([path]) in (errno.EIO, errno.ENOEXEC)


def aarch64_elf():
    return make_elf(e_type=ET_EXEC, machine=EM_AARCH64, phdrs=[(PT_LOAD, 0, 0)])


def test_elf_for_another_machine(tmp_path):
    if os.uname().machine != "x86_64":
        pytest.skip("the crafted foreign ELF is for aarch64 and this test expects x86_64")
    path = write(tmp_path / "arm", aarch64_elf())
    e = flags(programs.check_program_image, path, "unikernel")
    assert type(e) is NotExecutableError and e.exit_status == 126
    assert str(e) == ("unikernel %s is a 64-bit aarch64 program; this machine is x86_64 "
                      "(use the build for x86_64)" % path)
    assert execve_errno([path]) == errno.ENOEXEC


def test_elf_in_the_other_byte_order(tmp_path):
    if sys.byteorder != "little" or os.uname().machine != "x86_64":
        pytest.skip("expects little-endian x86_64")
    path = write(tmp_path / "be", make_elf(little=False, phdrs=[(PT_LOAD, 0, 0)]))
    e = flags(programs.check_program_image, path, "unikernel")
    assert "64-bit x86-64 (other byte order) program" in e.message
    assert execve_errno([path]) == errno.ENOEXEC


def test_relocatable_object(tmp_path):
    path = write(tmp_path / "o", make_elf(e_type=1, phnum=1))
    e = flags(programs.check_program_image, path, "unikernel")
    assert "not an executable but a relocatable object" in e.message
    assert execve_errno([path]) == errno.ENOEXEC


def test_missing_loader_is_named(true_with_loader):
    path, fake = true_with_loader
    e = flags(programs.check_program_image, path, "tender")
    assert type(e) is NotFoundError and e.exit_status == 127
    assert e.message == "tender %s needs the loader %s, which is not here" % (path, fake)
    # What the user would otherwise see: ENOENT for a file that is plainly there.
    assert execve_errno([path]) == errno.ENOENT


def dynamic_elf(tmp_path, loader: str) -> str:
    """A dynamic ELF file whose PT_INTERP names LOADER (its path bytes right after the two
    program headers)."""
    path_bytes = loader.encode() + b"\0"
    start = 64 + 56 * 2
    data = make_elf(e_type=ET_DYN, phdrs=[(PT_INTERP, start, len(path_bytes)), (PT_LOAD, 0, 0)],
                    payload=path_bytes)
    return write(tmp_path / "dyn", data)


@pytest.mark.parametrize("loader, hint", [
    ("/lib/ld-musl-x86_64.so.9", "linked against musl (Alpine)"),
    ("/lib64/ld-linux-x86-64.so.3", "linked against glibc"),
    ("/opt/ld.so", "install the C library"),
])
def test_missing_loader_hint_says_which_c_library(tmp_path, loader, hint):
    if os.path.exists(loader):
        pytest.skip("%s exists here" % loader)
    path = dynamic_elf(tmp_path, loader)
    e = flags(programs.check_program_image, path, "tender")
    assert type(e) is NotFoundError and hint in e.hint
    assert execve_errno([path]) == errno.ENOENT


def test_loader_that_is_not_executable(tmp_path):
    loader = write(tmp_path / "ld.so", b"\x7fELF", mode=0o644)
    path = dynamic_elf(tmp_path, loader)
    e = flags(programs.check_program_image, path, "tender")
    assert type(e) is NotExecutableError and "loader %s is not an executable file" % loader \
        in e.message
    assert execve_errno([path]) == errno.EACCES


def test_unreadable_image_is_left_to_execve(tmp_path, monkeypatch):
    # As non-root, an execute-only program cannot be read by ukrun but runs fine.
    path = write(tmp_path / "x", b"hello\n")
    real_open = os.open

    def refuse(p, *args):
        if p == path:
            raise PermissionError(errno.EACCES, "Permission denied", p)
        return real_open(p, *args)

    monkeypatch.setattr(os, "open", refuse)
    assert programs.check_program_image(path, "unikernel") == path


@given(st.binary(max_size=700))
@example(b"#!")
@example(b"#!\0")
@example(b"#!" + b" " * 254 + b"/")
@example(b"\x7fELF")
@example(make_elf(phdrs=[(PT_INTERP, 2 ** 63, 2)]))
@example(make_elf(phdrs=[(PT_INTERP, 120, 6)], payload=b"\0/bin\0"))
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_files_raise_only_ukrun_errors(tmp_path, data):
    path = write(tmp_path / "fuzz", data)
    try:
        programs.check_program_image(path, "unikernel")
    except (NotFoundError, NotExecutableError) as e:
        assert "\n" not in str(e)


# --- #! lines (binfmt.parse_shebang) -----------------------------------------------------

def kernel_buffer(data):
    return data[:lib.BINPRM_BUF_SIZE].ljust(lib.BINPRM_BUF_SIZE, b"\0")


@pytest.mark.parametrize("line, interpreter, argument", [
    (b"#!/bin/sh\n", b"/bin/sh", None),
    (b"#! /bin/sh -e \n", b"/bin/sh", b"-e"),
    (b"#!/usr/bin/env python3 -u\n", b"/usr/bin/env", b"python3 -u"),
    (b"#!\t/bin/sh\t-e\t-x\t\n", b"/bin/sh", b"-e\t-x"),
    (b"#!/bin/sh\r\n", b"/bin/sh\r", None),
    (b"#!/usr/bin/env sh\r\n", b"/usr/bin/env", b"sh\r"),
    (b"#!/bin/sh\0 -e\n", b"/bin/sh", None),
    (b"#!/bin/sh -e\0-x\n", b"/bin/sh", b"-e"),
    (b"#!/bin/sh", b"/bin/sh", None),  # no newline: the NUL padding ends it
    (b"#!/bin/sh " + b"a" * 300, b"/bin/sh", b"a" * (255 - 10)),
])
def test_shebang_lines(line, interpreter, argument):
    parsed = binfmt.parse_shebang(kernel_buffer(line))
    assert (parsed.interpreter, parsed.argument) == (interpreter, argument)
    assert parsed.dos_line_end == line.rstrip(b"\n").endswith(b"\r")


def test_not_a_script():
    assert binfmt.parse_shebang(kernel_buffer(b"# !/bin/sh\n")) is None
    assert binfmt.parse_shebang(kernel_buffer(b"\x7fELF")) is None


@pytest.mark.parametrize("line", [b"#!\n", b"#!   \t\n", b"#!" + b" " * 254, b"#!/" * 100])
def test_shebang_lines_the_kernel_refuses(line):
    with pytest.raises(ShebangError):
        binfmt.parse_shebang(kernel_buffer(line))


PRINTF = shutil.which("printf", path="/usr/bin:/bin")
words = st.text(alphabet="abcxyz-_.", min_size=1, max_size=12)
blanks = st.text(alphabet=" \t", max_size=3)


@pytest.mark.skipif(PRINTF is None, reason="no printf binary")
@given(lead=blanks, gap=st.text(alphabet=" \t", min_size=1, max_size=3),
       argument=st.lists(words, max_size=4).map(" ".join), trail=blanks,
       filler=st.integers(0, 300))
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_shebang_parse_matches_the_kernel(tmp_path, lead, gap, argument, trail, filler):
    # printf prints its format, which is the #! argument (or, without one, the script's path).
    line = ("#!" + lead + PRINTF + (gap + argument if argument else "") + trail).encode()
    if filler:
        line += b"z" * filler  # pushes the line past the kernel's buffer
    path = write(tmp_path / "script", line + b"\n")
    try:
        parsed = binfmt.parse_shebang(kernel_buffer(line + b"\n"))
    except ShebangError:
        assert execve_errno([path]) == errno.ENOEXEC
        return
    if parsed.interpreter != PRINTF.encode():  # the filler lengthened the interpreter's path
        assert execve_errno([path]) == errno.ENOENT
        return
    ran = subprocess.run([path], capture_output=True, env={})
    expected = parsed.argument if parsed.argument is not None else path.encode()
    assert ran.stdout == expected


@given(st.binary(max_size=300))
@example(b"#!" + b"\t" * 254)
@example(b"#!\n")
@example(b"#!a\n")
def test_arbitrary_buffers_raise_only_shebang_error(data):
    try:
        parsed = binfmt.parse_shebang(kernel_buffer(data))
    except ShebangError:
        return
    if parsed is not None:
        assert parsed.interpreter and not any(c in parsed.interpreter for c in b" \t\0\n")


# --- binfmt_misc --------------------------------------------------------------------------

QEMU_AARCH64 = """enabled
interpreter /usr/bin/qemu-aarch64-static
flags: OCF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""
MONO = "enabled\ninterpreter /usr/bin/mono\nflags: \nextension .exe\n"


def test_binfmt_entries_as_the_kernel_writes_them():
    qemu = binfmt.parse_binfmt_entry(QEMU_AARCH64)
    assert (qemu.enabled, qemu.offset, len(qemu.magic), qemu.extension) == (True, 0, 20, None)
    assert binfmt.binfmt_matches(qemu, kernel_buffer(aarch64_elf()), b"/u/x")
    assert not binfmt.binfmt_matches(qemu, kernel_buffer(open("/bin/true", "rb").read(256)),
                                        b"/bin/true")
    mono = binfmt.parse_binfmt_entry(MONO)
    assert binfmt.binfmt_matches(mono, kernel_buffer(b"MZ"), b"/app/www.exe")
    assert not binfmt.binfmt_matches(mono, kernel_buffer(b"MZ"), b"/app/www.exe.bak")
    off = binfmt.parse_binfmt_entry(QEMU_AARCH64.replace("enabled", "disabled", 1))
    assert not binfmt.binfmt_matches(off, kernel_buffer(aarch64_elf()), b"/u/x")


@pytest.mark.parametrize("text", ["", "on\n", "enabled\n", "enabled\noffset 0\nmagic zz\n",
                                  "enabled\noffset -1\nmagic 00\n",
                                  "enabled\noffset 0\nmagic 0000\nmask ff\n",
                                  "enabled\nextension exe\n"])
def test_malformed_binfmt_entries(text):
    with pytest.raises(ValueError):
        binfmt.parse_binfmt_entry(text)


@given(st.text(max_size=200))
@example("enabled\noffset 1x\nmagic 00\n")
def test_arbitrary_binfmt_text_raises_only_value_error(text):
    try:
        entry = binfmt.parse_binfmt_entry(text)
    except ValueError:
        return
    binfmt.binfmt_matches(entry, kernel_buffer(b"x"), b"a.b")


def fake_binfmt_misc(tmp_path, monkeypatch, status, **entries):
    # Registering a real entry would change the whole machine; a copy of /proc's layout will do.
    d = tmp_path / ("binfmt_misc-%s-%s" % (status, "-".join(entries)))
    d.mkdir()
    (d / "status").write_text(status + "\n")
    (d / "register").write_text("")
    for name, text in entries.items():
        (d / name).write_text(text)
    monkeypatch.setattr(programs, "_BINFMT_MISC", str(d))


def test_a_file_binfmt_misc_takes_is_not_refused(tmp_path, monkeypatch):
    path = write(tmp_path / "arm", aarch64_elf())
    fake_binfmt_misc(tmp_path, monkeypatch, "enabled", qemu_aarch64=QEMU_AARCH64)
    assert programs.check_program_image(path, "unikernel") == path


def test_binfmt_misc_disabled_or_not_matching(tmp_path, monkeypatch):
    if os.uname().machine != "x86_64":
        pytest.skip("the crafted foreign ELF is for aarch64")
    path = write(tmp_path / "arm", aarch64_elf())
    fake_binfmt_misc(tmp_path, monkeypatch, "disabled", qemu_aarch64=QEMU_AARCH64)
    assert flags(programs.check_program_image, path, "unikernel")
    text = write(tmp_path / "text", b"hello\n")
    fake_binfmt_misc(tmp_path, monkeypatch, "enabled", mono=MONO, qemu=QEMU_AARCH64)
    assert flags(programs.check_program_image, text, "unikernel")


def test_an_unreadable_binfmt_entry_counts_as_a_claim(tmp_path, monkeypatch):
    fake_binfmt_misc(tmp_path, monkeypatch, "enabled", odd="enabled\nsomething new\n")
    path = write(tmp_path / "text", b"hello\n")
    assert programs.check_program_image(path, "unikernel") == path


def test_the_real_binfmt_misc_is_read_without_error():
    assert programs._binfmt_misc_claims(kernel_buffer(b"hello"), "/x") in (False, True)


# --- ELF machines ---------------------------------------------------------------------------

def test_runnable_machines():
    x86 = execrules.runnable_machines("x86_64", lib)
    assert {(64, lib.EM_X86_64), (32, lib.EM_386)} <= x86 and (64, EM_AARCH64) not in x86
    assert execrules.runnable_machines("i686", lib) == x86  # setarch i686 on a 64-bit kernel
    assert execrules.runnable_machines("armv7l", lib) == execrules.runnable_machines("aarch64",
                                                                                    lib)
    assert execrules.runnable_machines("sparc64", lib) is None
    assert execrules.machine_label(EM_AARCH64, lib) == "aarch64"
    assert execrules.machine_label(9999, lib) == "machine 9999"


def test_this_machine_runs_its_own_programs():
    from ukrun.guest import elf

    info = elf.read_elf(sys.executable)
    runs = execrules.runnable_machines(os.uname().machine, lib)
    assert runs is None or (info.elf_class, info.machine) in runs


def test_machine_names_are_those_of_elf_h():
    header = open("/usr/include/elf.h").read()
    for name in set(execrules.MACHINE_LABELS):
        m = re.search(r"^#define\s+%s\s+(\d+)" % name, header, re.M)
        assert m and int(m.group(1)) == getattr(lib, name), name


# --- what the program can use after the drop ------------------------------------------------

@needs_root
@needs_setpriv
def test_0700_file_of_another_uid(shared_dir):
    path = write_owned(shared_dir, "guest", 0o700, OTHER, OTHER)
    assert os.access(path, os.R_OK)  # why the old check passed: root's CAP_DAC_OVERRIDE
    e = flags(programs.check_usable_unprivileged, path, "unikernel")
    assert type(e) is NotExecutableError and e.exit_status == 126
    assert str(e) == ("unikernel %s gives uid 0 no read (r) permission once ukrun drops its "
                      "capabilities (mode 0700, owner 12345:12345) (chmod o+r %s, or chown it)"
                      % (path, path))
    assert probe(NO_DAC, [path])[path] == (False, False)


@needs_root
@needs_setpriv
def test_directory_without_search_for_others(shared_dir):
    d = os.path.join(shared_dir, "private")
    os.mkdir(d, 0o700)
    os.chown(d, OTHER, OTHER)
    path = write_owned(d, "guest", 0o755, 0, 0, data=open("/bin/true", "rb").read())
    e = flags(programs.check_usable_unprivileged, path, "unikernel")
    assert type(e) is NotExecutableError
    assert "directory %s gives uid 0 no search (x) permission" % d in e.message
    assert e.hint == "chmod o+x %s, or chown it" % d
    assert probe(NO_DAC, [path])[path] == (False, False)


@needs_root
@needs_setpriv
def test_script_the_interpreter_cannot_read_after_the_drop(shared_dir):
    path = write_owned(shared_dir, "guest.sh", 0o711, OTHER, OTHER, data=b"#!/bin/sh\nexit 0\n")
    e = flags(programs.check_program_image, path, "unikernel")
    assert type(e) is NotExecutableError and "no read (r) permission" in e.message
    # The kernel still execs it (exec needs x only); /bin/sh then cannot open it.
    ran = subprocess.run(NO_DAC + [path], capture_output=True, text=True)
    assert ran.returncode != 0 and "denied" in ran.stderr
    assert programs.check_program_image(path, "unikernel", keep=frozenset({lib.CAP_DAC_OVERRIDE}))


@needs_root
@needs_setpriv
def test_dropped_execve_needs_the_x_bit_for_these_ids(shared_dir):
    path = write_owned(shared_dir, "tender", 0o744, OTHER, OTHER,
                       data=open("/bin/true", "rb").read())
    assert programs.check_program_image(path, "tender") == path  # direct: execve as root
    e = flags(programs.check_program_image, path, "tender", dropped=True)
    assert type(e) is NotExecutableError and "no execute (x) permission" in e.message
    assert probe(NO_DAC, [path])[path] == (True, False)


def write_owned(directory, name, mode, uid, gid, data=b"#!/bin/sh\nexit 0\n"):
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


FILE_MODES = [0o700, 0o070, 0o007, 0o750, 0o705, 0o074, 0o604, 0o500, 0o111, 0o444, 0o000]
DIR_MODES = [0o755, 0o750, 0o705, 0o711, 0o700]


@needs_root
@needs_setpriv
@pytest.mark.parametrize("identity", ["root-without-dac", "uid-12345"])
def test_mode_bits_match_the_kernel(shared_dir, identity):
    """Every combination of directory mode, file owner, group and mode: the check says yes
    exactly when a process with these ids and no DAC capabilities can open (or exec) it."""
    true = open("/bin/true", "rb").read()
    paths = []
    for dmode in DIR_MODES:
        d = os.path.join(shared_dir, "d%o" % dmode)
        os.mkdir(d)
        os.chown(d, OTHER, OTHER)
        os.chmod(d, dmode)
        for uid in (0, OTHER):
            for gid in (0, OTHER):
                for mode in FILE_MODES:
                    paths.append(write_owned(d, "f%d-%d-%o" % (uid, gid, mode), mode, uid, gid,
                                             data=true))
    if identity == "root-without-dac":
        seen = probe(NO_DAC, paths)
        verdicts = {p: (flags(programs.check_usable_unprivileged, p, "x") is None,
                        flags(programs.check_usable_unprivileged, p, "x", execute=True,
                              read=False) is None) for p in paths}
    else:
        # The check runs as that uid too: ukrun started with `docker run --user`.
        code = ("import sys\nfrom ukrun.guest import programs\nfrom ukrun.errors import UkrunError\n"
                "for p in sys.argv[1:]:\n"
                "    r = []\n"
                "    for kw in ({}, {'execute': True, 'read': False}):\n"
                "        try:\n"
                "            programs.check_usable_unprivileged(p, 'x', **kw)\n"
                "            r.append('1')\n"
                "        except UkrunError:\n"
                "            r.append('0')\n"
                "    print(' '.join(r), p)\n")
        out = subprocess.run(AS_OTHER + [sys.executable, "-c", code] + paths, text=True,
                             capture_output=True, check=True).stdout
        verdicts = {line.split(" ", 2)[2]: (line[0] == "1", line[2] == "1")
                    for line in out.splitlines()}
        seen = probe(AS_OTHER, paths)
    wrong = {p: (verdicts[p], seen[p]) for p in paths if verdicts[p] != seen[p]}
    assert not wrong
    assert any(v == (True, True) for v in seen.values())
    assert any(v == (False, False) for v in seen.values())


@given(mode=st.integers(0, 0o777), owner=st.sampled_from([0, 1, 2]),
       group=st.sampled_from([0, 1, 2]), want=st.sampled_from([4, 1, 5]),
       uid=st.sampled_from([0, 1]), gids=st.sets(st.sampled_from([0, 1, 2])))
def test_mode_grants_picks_one_class(mode, owner, group, want, uid, gids):
    granted = execrules.mode_grants(mode, owner, group, want, uid, gids)
    bits = [(mode >> 6) & 7, (mode >> 3) & 7, mode & 7]
    cls = 0 if uid == owner else 1 if group in gids else 2
    assert granted == (bits[cls] & want == want)


def posix_acl(*entries):
    """A system.posix_acl_access value: version 2, then (tag, permission, id) entries."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def set_xattr(path, name, value):
    """os.setxattr, or libc's setxattr(2) through ctypes where CPython has none (on musl
    before 3.11.3): the test sets a real ACL either way."""
    if hasattr(os, "setxattr"):
        return os.setxattr(path, name, value)
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setxattr(os.fsencode(path), name.encode(), value, len(value), 0) == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)


def give_uid0_read_by_acl(path, shared_dir):
    """user::rwx user:0:r-- group::--- mask::r-- other::--- (tags of linux/posix_acl_xattr.h);
    skips where the file system has no POSIX ACLs."""
    undefined = 0xFFFFFFFF
    try:
        set_xattr(path, "system.posix_acl_access", posix_acl(
            (0x01, 7, undefined), (0x02, 4, 0), (0x04, 0, undefined), (0x10, 4, undefined),
            (0x20, 0, undefined)))
    except OSError as e:
        pytest.skip("no POSIX ACLs on %s: %s" % (shared_dir, e.strerror))


@needs_root
@needs_setpriv
def test_a_posix_acl_gets_the_benefit_of_the_doubt(shared_dir):
    path = write_owned(shared_dir, "guest", 0o700, OTHER, OTHER)
    give_uid0_read_by_acl(path, shared_dir)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o740  # the group bits are now the mask
    assert programs.check_usable_unprivileged(path, "unikernel") == path
    assert probe(NO_DAC, [path])[path][0]  # and uid 0 can indeed read it


@needs_root
@needs_setpriv
def test_the_acl_is_read_through_the_core_where_os_has_no_getxattr(shared_dir, monkeypatch):
    """CPython before 3.11.3 on musl (Alpine's) has no os.getxattr: the C core's getxattr(2)
    sees the same ACL, and a file without one is still refused (not an AttributeError)."""
    path = write_owned(shared_dir, "guest", 0o700, OTHER, OTHER)
    bare = write_owned(shared_dir, "bare", 0o700, OTHER, OTHER)
    give_uid0_read_by_acl(path, shared_dir)
    monkeypatch.delattr(os, "getxattr", raising=False)
    assert programs.check_usable_unprivileged(path, "unikernel") == path
    e = flags(programs.check_usable_unprivileged, bare, "unikernel")
    assert type(e) is NotExecutableError and "gives uid 0 no read (r) permission" in e.message


# The case, whole: a dry run of a 0700 program owned by uid 1000, in a CPython without
# os.getxattr. The run is root without DAC capabilities once dropped, so it refuses in one line.
NO_GETXATTR_CLI = """
import os, sys
if hasattr(os, "getxattr"):
    del os.getxattr
from ukrun.cli import main
sys.exit(main(sys.argv[1:]))
"""


@needs_root
def test_a_dry_run_without_os_getxattr_refuses_in_one_line(container, shared_dir):
    program = write_owned(shared_dir, "guest", 0o700, 1000, 1000)
    proc = container.exec(sys.executable, "-c", NO_GETXATTR_CLI, "unix", "--dry-run", program,
                          check=False)
    assert proc.returncode == 126, proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("ukrun: error: unikernel %s gives uid 0 no read" % program), line
    assert "AttributeError" not in proc.stderr


@needs_root
def test_keeping_dac_capabilities(shared_dir):
    path = write_owned(shared_dir, "guest", 0o700, OTHER, OTHER)
    dac, read_search = lib.CAP_DAC_OVERRIDE, lib.CAP_DAC_READ_SEARCH
    assert programs.check_usable_unprivileged(path, "u", keep=frozenset({dac})) == path
    assert programs.check_usable_unprivileged(path, "u", keep=frozenset({read_search})) == path
    assert flags(programs.check_usable_unprivileged, path, "u", execute=True,
                 keep=frozenset({read_search}))


def test_relative_paths_are_searched_from_the_working_directory(shared_dir, monkeypatch):
    monkeypatch.chdir(shared_dir)
    os.mkdir("sub", 0o755)
    write_owned(shared_dir, "sub/guest", 0o644, 0, 0)
    assert programs._directories_on("sub/guest")[:2] == [".", "./sub"]
    assert programs.check_usable_unprivileged("sub/guest", "u") == "sub/guest"


def test_symlinked_directories_are_searched_at_their_target(shared_dir):
    real = os.path.join(shared_dir, "real")
    os.mkdir(real, 0o755)
    os.symlink(real, os.path.join(shared_dir, "link"))
    dirs = programs._directories_on(os.path.join(shared_dir, "link", "guest"))
    assert os.path.join(shared_dir, "link") in dirs and real in dirs


# --- E2BIG ----------------------------------------------------------------------------------

PAGE = os.sysconf("SC_PAGE_SIZE")
MOST = lib.UKRUN_ARG_STRLEN_PAGES * PAGE  # MAX_ARG_STRLEN, the NUL included
POINTER = struct.calcsize("P")
TRUE = "/bin/true"


def test_limits_are_those_of_the_headers():
    with open("/usr/include/linux/resource.h") as f:
        m = re.search(r"#define\s+_STK_LIM\s+\((\d+)\*(\d+)\*(\d+)\)", f.read())
    assert m and int(m.group(1)) * int(m.group(2)) * int(m.group(3)) == execrules.STK_LIM
    with open("/usr/include/linux/limits.h") as f:
        m = re.search(r"#define\s+ARG_MAX\s+(\d+)", f.read())
    assert m and int(m.group(1)) == execrules.ARG_MAX
    with open("/usr/include/linux/binfmts.h") as f:
        m = re.search(r"#define\s+MAX_ARG_STRLEN\s+\(PAGE_SIZE\s*\*\s*(\d+)\)", f.read())
    assert m and int(m.group(1)) == lib.UKRUN_ARG_STRLEN_PAGES


def test_one_string_at_and_over_max_arg_strlen():
    ok = [TRUE, "a" * (MOST - 1)]
    assert programs.check_exec_size(ok, {}) is None
    assert execve_errno(ok) is None
    over = [TRUE, "--ipv4=10.0.0.2/24", "a" * MOST]
    e = flags(programs.check_exec_size, over, {})
    assert type(e) is UkrunError and e.exit_status == 1
    assert e.message == ("argument 2 ('aaaaaaaaaaaaaaaaaaaaaaaa'...) is %d bytes with its NUL, "
                         "1 over the kernel's limit of %d for one string" % (MOST + 1, MOST))
    assert execve_errno(over) == errno.E2BIG


def test_an_environment_variable_over_max_arg_strlen():
    env = {"BIG": "x" * MOST}
    e = flags(programs.check_exec_size, [TRUE], env)
    assert "environment variable BIG is %d bytes" % (MOST + 5) in e.message
    assert execve_errno([TRUE], env=env) == errno.E2BIG


def argv_of(total, path=TRUE, env=()):
    """An argv for ``path`` whose execve charges exactly ``total`` bytes (see exec_bytes)."""
    chunk = MOST // 2
    argv = [path]
    used = len(path) + 1 + sum(len(s) + 1 for s in env) + len(env) * POINTER  # file name, env
    used += len(path) + 1 + POINTER
    while total - used > 2 * (chunk + 1 + POINTER):
        argv.append("a" * chunk)
        used += chunk + 1 + POINTER
    rest = total - used - 2 * (1 + POINTER)  # in two strings, each of at most chunk bytes
    assert 0 <= rest <= 2 * chunk
    argv += ["b" * (rest // 2), "c" * (rest - rest // 2)]
    used += rest + 2 * (1 + POINTER)
    assert used == total == execrules.exec_bytes(
        [os.fsencode(path)] + [os.fsencode(a) for a in argv] + [os.fsencode(s) for s in env],
        len(argv), len(env), POINTER)
    return argv


def largest_fitting(stack, env=()):
    """The largest total (strings and pointers) check_exec_size lets through under ``stack``."""
    low, high = 1024, 8 * 1024 * 1024
    while low < high:
        mid = (low + high + 1) // 2
        if flags(programs.check_exec_size, argv_of(mid, env=env), env, stack_limit=stack):
            high = mid - 1
        else:
            low = mid
    return low


@pytest.mark.parametrize("stack", [64 * 1024, 200 * 1024, 256 * 1024, 1024 * 1024,
                                   8 * 1024 * 1024, 64 * 1024 * 1024, -1])
def test_exec_size_limit_is_the_kernels(stack):
    """At the largest total the check allows execve works; one byte more fails with E2BIG."""
    largest = largest_fitting(stack)
    pointers = len(argv_of(largest)) * POINTER
    if stack == -1 or stack >= 4 * execrules.ARG_MAX:
        assert largest == execrules.arg_space(stack)
    elif stack >= execrules.ARG_MAX + PAGE:
        assert largest == execrules.ARG_MAX  # the floor
    else:
        assert largest - pointers == execrules.stack_room(stack, PAGE, POINTER)

    def limit_stack():
        resource.setrlimit(resource.RLIMIT_STACK,
                           (resource.RLIM_INFINITY if stack == -1 else stack,
                            resource.getrlimit(resource.RLIMIT_STACK)[1]))

    hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
    if hard != resource.RLIM_INFINITY and (stack == -1 or stack > hard):
        pytest.skip("the hard stack limit is %d" % hard)
    assert execve_errno(argv_of(largest), preexec_fn=limit_stack) is None
    assert execve_errno(argv_of(largest + 1), preexec_fn=limit_stack) == errno.E2BIG


def test_check_exec_size_at_the_boundary():
    space = execrules.arg_space(programs._stack_limit())
    env = ["PATH=/bin", "HOME=/"]
    environ = dict(s.split("=", 1) for s in env)
    fits = argv_of(space, env=env)
    assert programs.check_exec_size(fits, env) is None
    assert programs.check_exec_size(fits, environ) is None
    assert execve_errno(fits, env=environ) is None
    over = argv_of(space + 1, env=env)
    e = flags(programs.check_exec_size, over, env)
    assert type(e) is UkrunError
    assert e.message.startswith("the arguments and environment take %d bytes, 1 over the "
                                "kernel's limit of %d" % (space + 1, space))
    assert "the longest is argument 1" in e.message and e.hint
    assert execve_errno(over, env=environ) == errno.E2BIG


def test_exec_path_other_than_argv0_is_counted():
    space = execrules.arg_space(programs._stack_limit())
    argv = argv_of(space)
    assert programs.check_exec_size(argv, {}, path=TRUE) is None
    # argv[0] need not be the path: a longer path costs the difference.
    assert flags(programs.check_exec_size, argv, {}, path="/usr/bin/../bin/true")


def test_an_empty_argv_is_a_caller_error():
    with pytest.raises(ValueError):
        programs.check_exec_size([], {})


def test_nul_bytes_are_refused():
    e = flags(programs.check_exec_size, [TRUE, "a\0b"], {})
    assert "argument 1 ('a\\x00b') contains a NUL byte" in e.message
    with pytest.raises(ValueError):
        os.execve(TRUE, [TRUE, "a\0b"], {})  # what would have happened, after the wiring


def test_messages_name_the_path_and_environment_variables():
    e = flags(programs.check_exec_size, [TRUE], {"A": "x\0y"})
    assert e.message == "environment variable A contains a NUL byte, which execve cannot pass"
    e = flags(programs.check_exec_size, [TRUE], ["A=1", "B=2\0"])
    assert e.message.startswith("environment variable B contains a NUL byte")
    e = flags(programs.check_exec_size, [TRUE], {}, path="/bin/\0true")
    assert e.message == "the program path contains a NUL byte, which execve cannot pass"
    big = "x" * (MOST // 2)
    e = flags(programs.check_exec_size, [TRUE], {"AAA": big, "BBB": big + "x", "CCC": big},
              stack_limit=65536)
    assert e.message.endswith("the longest is environment variable BBB, %d bytes"
                              % (len(big) + 5))


def test_exec_bytes_counts_an_empty_argv_as_one():
    assert execrules.exec_bytes([b"/x"], 0, 0, 8) == 3 + 8
    assert execrules.exec_bytes([b"/x", b"/x", b"A=1"], 1, 1, 8) == 3 + 3 + 4 + 16
    assert execrules.arg_space(0) == execrules.ARG_MAX
    assert execrules.arg_space(-1) == execrules.STK_LIM // 4 * 3
    assert execrules.stack_room(-1, 4096, 8) is None
    assert execrules.stack_room(65536 + 100, 4096, 8) == 65528


def test_under_a_small_stack_limit_the_stack_itself_is_the_limit():
    argv = argv_of(70000)
    e = flags(programs.check_exec_size, argv, {}, stack_limit=65536)
    assert "over the kernel's stack limit of 65536" in e.message
    assert programs.check_exec_size(argv, {}, stack_limit=256 * 1024) is None


# --- the stack limit, from /proc/self/limits (no resource module on a run) ------------------

STACK_PROBE = r"""
import resource, sys
from ukrun.guest import programs
soft = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_STACK, (resource.RLIM_INFINITY if soft == -1 else soft,
                                           resource.getrlimit(resource.RLIMIT_STACK)[1]))
print(programs._stack_limit())
"""


@pytest.mark.parametrize("soft", [65536, 8 * 1024 * 1024, 3 * 1024 * 1024 + 1, -1])
def test_the_stack_limit_is_the_kernels(soft):
    hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
    if hard != resource.RLIM_INFINITY and (soft == -1 or soft > hard):
        pytest.skip("the hard stack limit is %d" % hard)
    out = subprocess.run([sys.executable, "-c", STACK_PROBE, str(soft)], capture_output=True,
                         text=True, check=True).stdout
    assert int(out) == soft


def test_the_stack_limit_is_read_without_the_resource_module():
    code = "import sys; from ukrun.guest import programs; programs._stack_limit(); " \
           "print('resource' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False"]


def limits_line(name: bytes, soft, hard) -> bytes:
    """One line as proc_pid_limits() writes it."""
    def column(value):
        return b"unlimited" if value == -1 else b"%d" % value
    return b"%-25s %-20s %-20s %-10s" % (name, column(soft), column(hard), b"bytes")


HEADER = b"Limit                     Soft Limit           Hard Limit           Units     "


@given(soft=st.integers(-1, 2 ** 64 - 2), hard=st.integers(-1, 2 ** 64 - 2),
       before=st.lists(st.sampled_from([b"Max cpu time", b"Max file size", b"Max stack sizes",
                                        b"Max data size"]), max_size=3))
def test_soft_limit_reads_what_the_kernel_writes(soft, hard, before):
    lines = [HEADER] + [limits_line(n, 1, -1) for n in before]
    lines += [limits_line(execrules.STACK_LIMIT_NAME, soft, hard),
              limits_line(b"Max core file size", 0, -1)]
    assert execrules.soft_limit(b"\n".join(lines) + b"\n", execrules.STACK_LIMIT_NAME) == soft


def test_soft_limit_refuses_what_it_cannot_read():
    for text in [b"", HEADER + b"\n", b"Max stack sizes 1 2\n", b"Max stack size\n",
                 b"Max stack size        -5      unlimited\n",
                 b"Max stack size        lots      unlimited\n"]:
        with pytest.raises(ValueError):
            execrules.soft_limit(text, execrules.STACK_LIMIT_NAME)


@given(st.binary(max_size=300))
@example(b"Max stack size \xff")
def test_soft_limit_on_any_bytes_answers_a_limit_or_value_error(data):
    try:
        value = execrules.soft_limit(data, execrules.STACK_LIMIT_NAME)
    except ValueError:
        return
    assert value == -1 or value >= 0
