"""ukrun: run a unikernel as a container's main process and hand it the container's network.

The public API is loaded lazily so that ``import ukrun`` (and the CLI) stay cheap.
"""
from ukrun._version import __version__

_LAZY = {
    "discover": "ukrun.netconf",
    "NetConfig": "ukrun.netconf",
    "run": "ukrun.runner",
    "plan": "ukrun.runner",
    "apply": "ukrun.runner",
    "Plan": "ukrun.runner",
    "Options": "ukrun.runner",
}

__all__ = ["__version__"] + sorted(_LAZY)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module 'ukrun' has no attribute %r" % name)
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
