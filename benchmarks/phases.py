"""Where ukrun's setup time goes: one `ukrun unix` run split into phases, in a fresh container.

Run as a child process (a fresh interpreter, as ukrun starts: the deployed venv's python, whose
ukrun comes from the wheel; see common.deployed) inside the container: it goes through the same
calls as `ukrun unix STAMP` (cli parse, runner plan/apply/exec_applied) with
os.execve replaced by a timestamp, and prints {phase: ms} as JSON. It uses the CLI's and the
runner's internals, so main() reports it as unavailable rather than failing the bench if they move.
"""
import json
import os
import statistics
import subprocess

CHILD = r'''
import time
t0 = time.perf_counter()
import os, sys  # json only at the end: a run does not load it
marks = []
def mark(name):
    marks.append((name, time.perf_counter()))
import ukrun.cli as cli
mark("import ukrun.cli")
ns = cli.parse(["unix", sys.argv[1]])
mark("build the parser, parse argv")
from ukrun import runner
mark("import ukrun.runner")
plan = runner.plan_for_run(runner.Options(ns.command, ns.unikernel, tuple(ns.args), **cli.field_values(ns)))
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


def main(host, stamp, python, runs=RUNS):
    """{phase: median ms} of RUNS runs of CHILD under interpreter PYTHON (the deployed venv's),
    or None when the internals it calls have moved."""
    from common import in_netns

    samples = {}
    try:
        for _ in range(runs):
            c = host.fresh()
            try:
                with in_netns(c.name):
                    # cwd: python -c puts it first on sys.path; the checkout's ukrun/ must not win.
                    out = subprocess.run([python, "-c", CHILD, stamp], capture_output=True,
                                         text=True, timeout=30, env=dict(os.environ),
                                         cwd=os.path.dirname(python))
                if out.returncode != 0:
                    raise RuntimeError(out.stderr.strip().splitlines()[-1:])
                for name, ms in json.loads(out.stdout).items():
                    samples.setdefault(name, []).append(ms)
            finally:
                host.discard(c)
    except (RuntimeError, ValueError, subprocess.SubprocessError) as e:
        print("\n(phase breakdown unavailable: %s)" % e)
        return None
    return {name: statistics.median(v) for name, v in samples.items()}


def show(result, runs=RUNS, install=None):
    from common import table

    if result is None:
        return
    total = sum(result.values())
    rows = [[name, "%.2f" % ms, "%.0f%%" % (100 * ms / total)] for name, ms in result.items()]
    rows.append(["total after interpreter start", "%.2f" % total, "100%"])
    table("Where ukrun's own time goes (median of %d runs in fresh containers)%s"
          % (runs, "\nukrun: %s" % install if install else ""), ["phase", "ms", "share"], rows)
