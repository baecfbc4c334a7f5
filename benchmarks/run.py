"""`make bench`: setup latency, boot to first packet, data path, PID 1 memory; tables, JSON.

Needs root (it makes network namespaces; never touches the machine's own), gcc, iproute2 and,
for the VM guest, qemu-system-x86_64. Results go to benchmarks/results/<UTC time>.json.
Sections: run.py [setup] [boot] [datapath] [init] (default: all four).
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

SECTIONS = ("setup", "boot", "datapath", "init")


def machine():
    return {"cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "machine": platform.machine()}


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
