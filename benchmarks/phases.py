"""Where ukrun's setup time goes: one `ukrun unix` run split into phases, in a fresh container.

Run as a child process (a fresh interpreter, as ukrun starts: the deployed venv's python, whose
ukrun comes from the wheel; see common.deployed) inside the container: it goes through the same
calls as `ukrun unix STAMP` (cli parse, the namespace lock, runner plan/apply/exec_applied) with
os.execve replaced by a timestamp, the cycle collector off where the script turns it off, and prints {phase: ms} as JSON. The lock's release is timed
last, on its own: in a run execve releases it (the lock tap's fd is close-on-exec), so its
cost lies between ukrun's last instruction and the unikernel's first. It uses the CLI's and the
runner's internals, so main() reports it as unavailable rather than failing the bench if they
move; an older ukrun without runner.plan_for_run plans with runner.plan, which was that.
"""
import json
import os
import random
import statistics
import subprocess

CHILD = r'''
import time
t0 = time.perf_counter()
import sys
if sys.argv[2] == "gc-off":  # as the installed script does (bin/ukrun), when it does
    import gc
    gc.disable()
import os, sys  # json only at the end: a run does not load it
marks = []
def mark(name):
    marks.append((name, time.perf_counter()))
import ukrun.cli as cli
mark("import ukrun.cli")
ns = cli.parse(["unix", sys.argv[1]])
mark("build the parser, parse argv")
from ukrun import runner
try:
    from ukrun.kernel.nslock import NamespaceLock
except ImportError:  # an older ukrun: the lock in ukrun.handover, or none at all
    NamespaceLock = getattr(__import__("ukrun.handover").handover, "NamespaceLock", None) \
        if os.path.exists(os.path.join(os.path.dirname(runner.__file__), "handover.py")) else None
try:
    from ukrun import planning  # Options and plan_for_run; before it, the runner had them
except ImportError:
    planning = runner
mark("import ukrun.runner")
lock = NamespaceLock() if NamespaceLock else None
mark("take the namespace lock")
plan_for_run = getattr(planning, "plan_for_run", planning.plan)
field_values = getattr(cli, "field_values", None) or cli._options  # _options: 31a5ef5's name
plan = plan_for_run(planning.Options(ns.command, ns.unikernel, tuple(ns.args), **field_values(ns)))
mark("plan (rtnl/netlink/cffi imports, discover, preflight)")
applied = runner.apply(plan)
mark("apply (netlink, tap)")
def execve(*args):
    mark("drop capabilities, close fds")
    raise SystemExit(0)
os.execve = execve
try:
    runner.exec_applied(applied)
except SystemExit:
    pass
if lock:
    lock.release()
mark("release the lock (in a run: inside execve)")
out, prev = {}, t0
for name, t in marks:
    out[name] = (t - prev) * 1e3
    prev = t
if not cli.__file__.startswith(sys.prefix + os.sep):
    raise SystemExit("ukrun imported from %s, not from %s" % (cli.__file__, sys.prefix))
import json
print(json.dumps(out))
'''


RUNS = 7


def main(host, stamp, pythons, runs=RUNS):
    """{label: {phase: median ms}} of RUNS runs of CHILD under each interpreter of PYTHONS
    ({label: the deployed venv's python}), interleaved; None when the internals it calls have
    moved."""
    from common import in_netns

    samples = {label: {} for label in pythons}
    try:
        for _ in range(runs):
            order = list(pythons)
            random.shuffle(order)
            for label in order:
                c = host.fresh()
                try:
                    with in_netns(c.name):
                        # cwd: python -c puts it first on sys.path; the checkout's ukrun/ must
                        # not win.
                        out = subprocess.run([pythons[label], "-c", CHILD, stamp,
                                              _collector(pythons[label])],
                                             capture_output=True, text=True, timeout=30,
                                             env=dict(os.environ),
                                             cwd=os.path.dirname(pythons[label]))
                    if out.returncode != 0:
                        raise RuntimeError(out.stderr.strip().splitlines()[-1:])
                    for name, ms in json.loads(out.stdout).items():
                        samples[label].setdefault(name, []).append(ms)
                finally:
                    host.discard(c)
    except (RuntimeError, ValueError, subprocess.SubprocessError) as e:
        print("\n(phase breakdown unavailable: %s)" % e)
        return None
    return {label: {name: statistics.median(v) for name, v in phases.items()}
            for label, phases in samples.items()}


def _collector(python):
    """"gc-off" when the venv's ukrun script turns the cycle collector off for a run."""
    with open(os.path.join(os.path.dirname(python), "ukrun")) as fh:
        return "gc-off" if "\ngc.disable()" in fh.read() else "gc-on"


def show(result, runs=RUNS, installs=None):
    """The breakdown as a table, one column per interpreter; INSTALLS: {label: description}."""
    from common import table

    if result is None:
        return
    labels = list(result)
    names = list(result[labels[0]])
    rows = [[name] + ["%.2f" % result[label].get(name, float("nan")) for label in labels]
            for name in names]
    rows.append(["total after interpreter start"]
                + ["%.2f" % sum(result[label].values()) for label in labels])
    described = "".join("\n%s: %s" % (label, (installs or {}).get(label))
                        for label in labels if (installs or {}).get(label))
    table("Where ukrun's own time goes (median ms of %d runs in fresh containers, interleaved)%s"
          % (runs, described), ["phase"] + ["%s ms" % label for label in labels], rows)
