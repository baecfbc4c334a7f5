"""ukrun: run a unikernel as a container's main process and hand it the container's network.

The library does everything the ``ukrun`` command does (the CLI only parses and calls it):

- ``discover(interface="eth0") -> NetConfig``: read an interface's MAC, MTU, addresses and
  routes; changes nothing.
- ``plan(Options(target, unikernel, args, ...)) -> Plan``: discover, check everything a run
  needs (files, devices, capabilities, names), and list the steps and the final command line;
  changes nothing. ``Plan.to_json()`` is what ``--dry-run`` prints.
- ``apply(plan) -> Applied``: make the changes; on any error undo them all and raise.
  ``Applied.undo()`` gives the network back.
- ``run(target, unikernel, args=(), **options)``: plan, apply, drop capabilities, exec the
  unikernel; returns only by raising a ``ukrun.errors.UkrunError``.
- ``dockerfile(target, unikernel, tender=None, base=None, args=(), context=".", sdist=None,
  run_options=()) -> str``: the Dockerfile ``ukrun dockerfile`` prints, after checking every
  file it names (``ukrun.docker_build`` has the details).
- ``docker_args(target) -> list``: the ``docker run`` flags this host needs for a target,
  after opening its devices; ``ukrun.docker.ARP_NOTE`` is the note the CLI prints with them.

The public API is loaded lazily so that ``import ukrun`` (and the CLI) stay cheap.
"""
from ukrun._version import __version__

_LAZY = {
    "discover": "ukrun.network.discovery",
    "NetConfig": "ukrun.network.discovery",
    "run": "ukrun.runner",
    "plan": "ukrun.planning",
    "apply": "ukrun.runner",
    "Plan": "ukrun.planning",
    "Options": "ukrun.planning",
    "dockerfile": "ukrun.docker_build",
    "docker_args": "ukrun.docker",
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
