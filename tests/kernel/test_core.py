"""The compiled core: built for this version, with -Werror, exporting only ukrun_ names."""
import errno
import importlib
import os
import subprocess
import sys

import pytest

import ukrun
import ukrun._build
import ukrun._core
from ukrun.kernel.ffi import check, ffi, lib

from tree import ROOT
CSRC = os.path.join(ROOT, "csrc")


def test_compiled_version_is_the_packages():
    assert ffi.string(lib.ukrun_version()).decode() == ukrun.__version__


def test_a_core_built_for_another_version_refuses_to_load(monkeypatch):
    monkeypatch.setattr("ukrun._version.__version__", "0.0.0-other")
    monkeypatch.delitem(sys.modules, "ukrun.kernel.ffi")
    with pytest.raises(ImportError, match="built for ukrun %s but this is ukrun 0.0.0-other"
                       % ukrun.__version__):
        importlib.import_module("ukrun.kernel.ffi")


def test_build_uses_werror():
    compile_args = ukrun._build.ffi._assigned_source[3]["extra_compile_args"]
    assert {"-Wall", "-Wextra", "-Werror"} <= set(compile_args)


def test_c_compiles_cleanly_on_its_own():
    # The same warnings, independently of cffi's generated wrapper.
    proc = subprocess.run(["gcc", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-std=gnu11",
                           "-I", CSRC, '-DUKRUN_VERSION="test"', os.path.join(CSRC, "ukrun.c")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_only_prefixed_symbols_are_exported():
    out = subprocess.run(["nm", "-D", "--defined-only", ukrun._core.__file__],
                         capture_output=True, text=True, check=True).stdout
    functions = [line.split()[2] for line in out.splitlines() if line.split()[1] == "T"]
    assert "ukrun_tap_open" in functions
    # The C runtime's own entry points may come along: musl's crti.o defines _init and _fini
    # (glibc's are local), and they are the libc's, not ukrun's.
    crt = {"_init", "_fini"}
    assert [f for f in functions if not f.startswith("ukrun_") and f not in crt] == ["PyInit__core"]


def test_check_passes_results_through():
    assert check(0, "anything") == 0
    assert check(5, "anything") == 5


def test_check_raises_oserror_with_the_calls_errno():
    # Raising a capability that does not exist as ambient: EINVAL, and no state change.
    with pytest.raises(OSError) as e:
        check(lib.ukrun_ambient_raise(-1), "raising an ambient capability")
    assert type(e.value) is OSError
    assert e.value.errno == errno.EINVAL
    assert e.value.strerror == os.strerror(errno.EINVAL)
    assert e.value.filename == "raising an ambient capability"


def test_check_gives_the_builtin_subclasses():
    # A plain OSError(errno, ...) becomes PermissionError, FileExistsError, ... by errno.
    ffi.errno = errno.EPERM
    with pytest.raises(PermissionError):
        check(-1, "capset")
    ffi.errno = errno.EEXIST
    with pytest.raises(FileExistsError):
        check(-1, "creating tap0")


def test_c_refuses_names_that_would_not_fit():
    # Python validates names first; C still never truncates one into another name.
    assert lib.ukrun_tap_open(b"x" * lib.IFNAMSIZ, 0, ffi.new("char[]", lib.IFNAMSIZ)) == -1
    assert ffi.errno == errno.EINVAL
    assert lib.ukrun_ethtool_value(b"", lib.ETHTOOL_GGRO, ffi.new("uint32_t *")) == -1
    assert ffi.errno == errno.EINVAL
