"""Where ukrun's setup time goes: one `ukrun unix` run split into phases, in a fresh container.

Run as a child process (a fresh interpreter, as ukrun starts) inside the container: it goes
through the same calls as `ukrun unix STAMP` (cli parse, runner plan/apply/exec_applied) with
os.execve replaced by a timestamp, and prints {phase: ms} as JSON. It uses the CLI's and the
runner's internals, so main() reports it as unavailable rather than failing the bench if they move.
"""
import json
import os
import statistics
import subprocess
import sys

CHILD = r'''
import time
t0 = time.perf_counter()
import json, os, sys
marks = []
def mark(name):
    marks.append((name, time.perf_counter()))
import ukrun.cli as cli
mark("import ukrun.cli")
ns = cli.parse(["unix", sys.argv[1]])
mark("build the parser, parse argv")
from ukrun import runner
mark("import ukrun.runner")
plan = runner.plan(runner.Options(ns.command, ns.unikernel, tuple(ns.args), **cli._options(ns)))
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
print(json.dumps(out))
'''


RUNS = 7


def main(host, stamp, runs=RUNS):
    """{phase: median ms}, or None when the internals it calls have moved."""
    from common import in_netns

    samples = {}
    try:
        for _ in range(runs):
            c = host.fresh()
            try:
                with in_netns(c.name):
                    out = subprocess.run([sys.executable, "-c", CHILD, stamp], capture_output=True,
                                         text=True, timeout=30, env=dict(os.environ))
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


def show(result):
    from common import table

    if result is None:
        return
    total = sum(result.values())
    rows = [[name, "%.2f" % ms, "%.0f%%" % (100 * ms / total)] for name, ms in result.items()]
    rows.append(["total after interpreter start", "%.2f" % total, "100%"])
    table("Where ukrun's own time goes (median of %d runs in fresh containers)" % RUNS,
          ["phase", "ms", "share"], rows)
