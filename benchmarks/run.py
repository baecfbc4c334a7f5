"""`make bench`: setup latency, boot to first packet, data path, PID 1 memory; tables, JSON.

Needs root (it makes network namespaces; never touches the machine's own), gcc, iproute2 and,
for the VM guest, qemu-system-x86_64. Results go to benchmarks/results/<UTC time>.json.
Sections: run.py [setup] [boot] [datapath] [init] [restart] (default: all five; name one or
more to run those alone, e.g. `benchmarks/run.py restart`). The goals of issue 13
close the run, side by side for this checkout and, with UKRUN_BENCH_BEFORE (common.py), the
ukrun it is compared with.
UKRUN_BENCH_RUNS=N shortens the setup and init sections for smoke runs (see setup_latency.py).
"""
import datetime
import json
import os
import platform
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402

SECTIONS = ("setup", "boot", "datapath", "init", "restart")


def machine():
    return {"cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "machine": platform.machine()}


# The goals (issue 13's, and issue 17's budget for the layout): (name, unit, limit, the figure from the results for "after" or "before").
GOALS = [
    ("ukrun's own cost: its setup latency minus the bare interpreter's", "ms", 5.0,
     lambda r, w: _setup(r, w)["median"] - r["setup_latency"]["python -c (exec stamp)"]["ms"]["median"]),
    ("ukrun's setup latency / the iproute2 shell script's (faster: < 1)", "x", 1.0,
     lambda r, w: _setup(r, w)["median"] / r["setup_latency"]["iproute2 shell script"]["ms"]["median"]),
    ("ukrun's share of boot to first ping (uguest)", "ms", 5.0,
     lambda r, w: r["boot_to_first_packet"]["uguest (Python, unix)"][
         "share_ms" if w == "after" else "share_ms_before"]),
    ("growth of ukrun's own CPU time since the tree before (issue 17's budget)", "ms", 0.5,
     lambda r, w: r["setup_latency"]["own_cost_growth_ms"]["cpu"] if w == "after" else None),
    ("peak RSS of a run (ukrun unix --wiring tc)", "MB", 12.0,
     lambda r, w: r["setup_latency"]["ukrun unix --wiring tc" + _SUFFIX[w]]["peak_rss_mb"]),
    ("peak RSS of ukrun-init as PID 1", "MB", 2.0,
     lambda r, w: r["init_rss"]["ukrun-init (shipped, dynamic)"]["after_burst_mb"]["VmHWM"]["max"]
     if w == "after" else None),
]
_SUFFIX = {"after": "", "before": " (before)"}

# What no Python front end can go below, from the same run: an interpreter that skips site and
# runs nothing, against the limits of the goals it bounds.
FLOORS = [
    ("floor of the second goal: python -S -c / the iproute2 shell script", "x", 1.0,
     lambda r: r["setup_latency"]["python -S -c (exec stamp)"]["ms"]["median"]
     / r["setup_latency"]["iproute2 shell script"]["ms"]["median"]),
    ("floor of the third goal: python -S -c's own start (a run starts one)", "ms", 5.0,
     lambda r: r["setup_latency"]["python -S -c (exec stamp)"]["ms"]["median"]),
]


def _setup(results, which):
    return results["setup_latency"]["ukrun unix --wiring tc" + _SUFFIX[which]]["ms"]


def goals(results) -> list:
    """Each goal's figure for this checkout and for the one before (where measured): a table
    and a list for the JSON. A figure whose section did not run is left out."""
    rows, out = [], []
    for name, unit, limit, figure in GOALS:
        values = {}
        for which in ("after", "before"):
            try:
                values[which] = figure(results, which)
            except (KeyError, TypeError):
                values[which] = None
        if values["after"] is None:
            continue
        met = values["after"] < limit if unit == "x" else values["after"] <= limit
        out.append({"goal": name, "unit": unit, "limit": limit, "after": values["after"],
                    "before": values["before"], "met": met})
        shown = {w: "-" if v is None else "%.2f%s" % (v, unit if unit == "x" else "")
                 for w, v in values.items()}
        rows.append([name, "%s %g%s" % ("<" if unit == "x" else "<=", limit,
                                        "" if unit == "x" else " " + unit),
                     shown["before"], shown["after"], "met" if met else "NOT met"])
    if rows:
        common.table("The goals, this run (before: UKRUN_BENCH_BEFORE's ukrun)",
                     ["figure", "goal", "before", "after", "after"], rows)
    floors = []
    for name, unit, limit, figure in FLOORS:
        try:
            value = figure(results)
        except KeyError:
            continue
        out.append({"floor": name, "unit": unit, "limit": limit, "value": value,
                    "below_limit": value < limit})
        floors.append([name, "%.2f%s" % (value, unit if unit == "x" else " ms"),
                       "%g%s" % (limit, unit if unit == "x" else " ms")])
    if floors:
        common.table("What any Python front end costs at least, this run",
                     ["floor", "value", "the goal's limit"], floors)
    return out


def main(argv):
    if os.geteuid() != 0:
        print("ukrun bench: needs root (it creates network namespaces)")
        return 77
    wanted = argv or list(SECTIONS)
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        print("ukrun bench: unknown section(s) %s; choose from %s" % (sorted(unknown), SECTIONS))
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # runs the finally blocks
    common.deployed()  # every section runs ukrun as installed from its wheel
    common.before()
    began = time.monotonic()
    stamp = datetime.datetime.now(datetime.timezone.utc)
    out = {"date": stamp.isoformat(timespec="seconds"), "machine": machine()}
    print("ukrun bench %s on %s" % (out["date"], out["machine"]))
    if "setup" in wanted:
        import setup_latency
        out["setup_latency"] = setup_latency.main()
    if "boot" in wanted:
        import boot
        out["boot_to_first_packet"] = boot.main()
    if "datapath" in wanted:
        import datapath
        out["data_path"] = datapath.main()
    if "init" in wanted:
        import init_rss
        out["init_rss"] = init_rss.main()
    if "restart" in wanted:
        import restart
        out["restart_in_kept_namespace"] = restart.main()
    out["goals"] = goals(out)
    out["seconds"] = time.monotonic() - began
    results = os.path.join(HERE, "results")
    os.makedirs(results, exist_ok=True)
    path = os.path.join(results, stamp.strftime("%Y%m%dT%H%M%SZ.json"))
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
    print("\n%.0f s in all; results in %s" % (out["seconds"], os.path.relpath(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
