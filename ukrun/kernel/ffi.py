"""The compiled core, checked against the Python package it was built for."""
import os

from ukrun._core import ffi, lib
from ukrun._version import __version__

_built_for = ffi.string(lib.ukrun_version()).decode()
if _built_for != __version__:
    raise ImportError(
        "ukrun._core was built for ukrun %s but this is ukrun %s: rebuild it "
        "(pip install . or make build)" % (_built_for, __version__)
    )


def check(result, what):
    """Return ``result``, or raise OSError(errno, strerror, what) when it is -1. ``what``: a
    str, or a callable that words it, called only then.

    Must be called right after the C call so that errno is still the one it set.
    """
    if result == -1:
        err = ffi.errno
        raise OSError(err, os.strerror(err), what if isinstance(what, str) else what())
    return result
