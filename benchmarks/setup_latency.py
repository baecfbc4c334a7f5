"""1. Setup latency: process start to the unikernel's exec, in a fresh container each run.

The "unikernel" is csrc/stamp.c: it prints CLOCK_MONOTONIC the moment it runs. csrc/launch.c,
started in the container's namespace, reads the same clock just before it forks the variant, so
nothing but the variant under test lies between the two readings. Peak RSS is the variant's
ru_maxrss from wait4 in launch (kept across execve, so it is ukrun's or the shell's peak;
launch is small, so its pages do not hide the variant's). Its CPU time (user + system, from the
same wait4) leaves out the time it waited for a core: on a shared machine the wall-clock medians
move by milliseconds between rounds, the CPU times far less, so the comparison with the tree
before (its own cost's growth) is made on both.

ukrun is measured as deployed: installed from its wheel in a fresh plain venv
(common.deployed(), built once per bench run), not the development venv's editable install,
whose import hook costs every interpreter start there. The `python -c` baseline runs that same
venv's interpreter, so "ukrun own ms" is ukrun minus the bare interpreter it starts with. The
script runs as ukrun's images have it, its interpreter line's -S given back after pip dropped
it (common.deployed); the "pip's line" row runs it as pip wrote it, with site. `python -S -c`
is the floor of any Python front end: an interpreter that skips site and runs nothing. With
UKRUN_BENCH_BEFORE (common.before()) the other ukrun runs interleaved with these, on the same
interpreter, as pip installed it: its rows say "(before)".

UKRUN_BENCH_RUNS=N (environment) sets the number of interleaved rounds (default 21); the phase
breakdown then takes min(N, phases.RUNS) runs. Meant for quick smoke runs, not for figures.
"""
import os
import random
import subprocess

import phases
from common import WORKDIR, Host, before, compile_c, deployed, in_netns, stats, table

RUNS = 21

SCRIPT = """#!/bin/sh
# The old runner's steps, with iproute2 and setpriv.
set -e
ip link add br0 type bridge
ip tuntap add dev tap0 mode tap
ip link set eth0 master br0
ip link set tap0 master br0
ip addr del "$1" dev eth0
ip link set br0 up
ip link set tap0 up
exec setpriv --no-new-privs --inh-caps=-all --bounding-set=-all,+net_bind_service \\
    "$2" --interface=tap0 --ipv4="$1" --ipv4-gateway=172.30.0.1
"""


BARE = "python -c (exec stamp)"
BARE_NO_SITE = "python -S -c (exec stamp)"
TC = "ukrun unix --wiring tc"
SHELL = "iproute2 shell script"


def variants(stamp, script, install, earlier=None):
    """The argv of each variant; the interpreter and ukrun are INSTALL's (a deployed venv);
    EARLIER (another deployed venv, or None) adds its tc run as "(before)"."""
    table = {
        "exec stamp directly (floor)": lambda c: [stamp],
        BARE: lambda c: [install.python, "-c", "import os; os.execv(%r, [%r])" % (stamp, stamp)],
        BARE_NO_SITE: lambda c: [install.python, "-S", "-c",
                                 "import os; os.execv(%r, [%r])" % (stamp, stamp)],
        TC: lambda c: [install.ukrun, "unix", "--wiring", "tc", stamp],
        TC + " (pip's line: with site)": lambda c: [install.ukrun_with_site, "unix", "--wiring",
                                                    "tc", stamp],
        "ukrun unix --wiring bridge": lambda c: [install.ukrun, "unix", "--wiring", "bridge",
                                                 stamp],
        SHELL: lambda c: ["/bin/sh", script, "%s/16" % c.ip4, stamp],
    }
    if earlier is not None:
        table[TC + " (before)"] = lambda c: [earlier.ukrun, "unix", "--wiring", "tc", stamp]
    return table


def once(host, launch, argv_for):
    c = host.fresh()
    try:
        argv = [launch] + argv_for(c)
        with in_netns(c.name):
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=30)
        words = proc.stdout.split()
        if proc.returncode != 0 or len(words) != 5 or words[3] != b"0":
            raise RuntimeError("%s failed: %r %r" % (argv, proc.stdout, proc.stderr))
        stamp, t0, maxrss_kb, cpu_us = int(words[0]), int(words[1]), int(words[2]), int(words[4])
        return (stamp - t0) / 1e6, maxrss_kb / 1024.0, cpu_us / 1e3
    finally:
        host.discard(c)


def runs_from_env(default=RUNS):
    value = os.environ.get("UKRUN_BENCH_RUNS", "")
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise SystemExit("UKRUN_BENCH_RUNS must be a positive integer, not %r" % value)
    return int(value)


def main(runs=None):
    runs = runs_from_env() if runs is None else runs
    phase_runs = min(runs, phases.RUNS)
    install, earlier = deployed(), before()
    stamp, launch = compile_c("stamp"), compile_c("launch")
    script = os.path.join(WORKDIR, "old-runner.sh")
    with open(script, "w") as fh:
        fh.write(SCRIPT)
    table_of = variants(stamp, script, install, earlier)
    pythons = {"after": install.python}
    if earlier is not None:
        pythons["before"] = earlier.python
    times = {k: [] for k in table_of}
    rss = {k: [] for k in table_of}
    cpu = {k: [] for k in table_of}
    host = Host()
    try:
        for k in table_of:             # one warm-up each (page cache, .pyc)
            once(host, launch, table_of[k])
        for _ in range(runs):
            order = list(table_of)
            random.shuffle(order)      # interleaved, in a fresh order each round
            for k in order:
                ms, mb, cpu_ms = once(host, launch, table_of[k])
                times[k].append(ms)
                rss[k].append(mb)
                cpu[k].append(cpu_ms)
        breakdown = phases.main(host, stamp, pythons, phase_runs)
    finally:
        host.delete()
    result = {k: {"ms": stats(times[k]), "peak_rss_mb": max(rss[k]), "samples_ms": times[k],
                  "cpu_ms": stats(cpu[k])} for k in table_of}
    base = result[BARE]["ms"]["median"]
    cpu_base = result[BARE]["cpu_ms"]["median"]
    shell = result[SHELL]["ms"]["median"]
    rows = []
    for k, r in result.items():
        m = r["ms"]
        own = m["median"] - base if k.startswith("ukrun") else None
        own_cpu = r["cpu_ms"]["median"] - cpu_base if k.startswith("ukrun") else None
        r["own_cost_ms"], r["own_cpu_ms"] = own, own_cpu
        rows.append([k, "%.2f" % m["median"], "%.2f" % m["iqr"], "%.2f-%.2f" % (m["min"], m["max"]),
                     "%.2f" % r["cpu_ms"]["median"], "%.1f" % r["peak_rss_mb"],
                     "%.2f" % own if own is not None else "-",
                     "%.2f" % own_cpu if own_cpu is not None else "-",
                     "%.2fx" % (m["median"] / shell)])
    table("Setup latency: spawn -> unikernel exec, fresh container each run (%d runs, interleaved)"
          "\nukrun and python: %s%s" % (runs, install.describe,
                                        "\nbefore: %s" % earlier.describe if earlier else ""),
          ["variant", "median ms", "IQR ms", "min-max ms", "CPU ms", "peak RSS MB",
           "ukrun own ms", "own CPU ms", "vs shell"], rows)
    if earlier is not None:
        now, then = result[TC], result[TC + " (before)"]
        result["own_cost_growth_ms"] = {"wall": now["own_cost_ms"] - then["own_cost_ms"],
                                        "cpu": now["own_cpu_ms"] - then["own_cpu_ms"]}
        print("ukrun's own cost, this tree minus the one before: %+.2f ms wall, %+.2f ms CPU "
              "(medians of the same interleaved rounds)" % (result["own_cost_growth_ms"]["wall"],
                                                            result["own_cost_growth_ms"]["cpu"]))
    phases.show(breakdown, phase_runs, {"after": install.describe,
                                        "before": earlier and earlier.describe})
    result["ukrun_phases_ms"] = breakdown
    result["ukrun_phases_runs"] = phase_runs
    result["runs"] = runs
    result["measured_install"] = install.info
    if earlier is not None:
        result["before_install"] = earlier.info
    return result


if __name__ == "__main__":
    main()
