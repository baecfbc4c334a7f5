"""The library flow in the test's own process: options for a stand-in tender, a failure
injected at one kernel step."""
import errno

from ukrun.network.executor import Kernel
from ukrun.planning import Options


def spt(programs, **kw):
    exe, kernel = programs
    return Options(target="spt", unikernel=kernel, tender=exe, **kw)


def fail_at(monkeypatch, target):
    """Make ``Kernel.do`` fail with EIO at ``target``, one step of a plan."""
    real = Kernel.do

    def do(self, step):
        if step is target:
            raise OSError(errno.EIO, "injected failure")
        return real(self, step)

    monkeypatch.setattr(Kernel, "do", do)
