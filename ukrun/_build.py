"""The cffi build: one extension, ``ukrun._core``, in out-of-line API mode.

The declarations cffi reads live in ``csrc/``: ``ukrun.h`` holds the prototypes of
our own C, and every ``*.cdef`` file lists kernel constants and struct layouts with
``...`` so that their values come from the system headers at build time.
"""
import glob
import os

from cffi import FFI

CSRC = "csrc"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _read(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def _version():
    scope = {}
    exec(_read("ukrun", "_version.py"), scope)
    return scope["__version__"]


ffi = FFI()
ffi.cdef(_read(CSRC, "ukrun.h"))
for cdef in sorted(glob.glob(os.path.join(ROOT, CSRC, "*.cdef"))):
    ffi.cdef(_read(CSRC, os.path.basename(cdef)))

ffi.set_source(
    "ukrun._core",
    '#include "kernel.h"\n#include "ukrun.h"\n',
    # setuptools wants sources relative to setup.py.
    sources=[os.path.join(CSRC, "ukrun.c")],
    include_dirs=[os.path.join(ROOT, CSRC)],
    define_macros=[("UKRUN_VERSION", '"%s"' % _version())],
    extra_compile_args=["-Wall", "-Wextra", "-Werror", "-std=gnu11"],
)

if __name__ == "__main__":
    os.chdir(ROOT)
    ffi.compile(tmpdir=ROOT, verbose=True)
