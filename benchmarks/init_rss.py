"""4. ukrun-init's memory as PID 1, and how fast SIGTERM ends the program through it.

In a new PID namespace (`unshare --pid --fork`, nothing else), PID 1 blocks every signal,
forks `sleep 60` (the program, which installs no handler, as solo5-spt does) and then stays
as one of:
  - ukrun-init from the deployed wheel (common.deployed()): what ukrun leaves resident;
  - the same init linked statically against glibc (built here from csrc/init.c, not shipped):
    the measurement behind linking it dynamically;
  - the same loop in Python (sigwaitinfo, forward, reap) in the deployed venv's interpreter:
    what a resident CPython would cost.
After 0.2 s idle, then 1000 forwarded SIGWINCHs (sleep ignores them), this reads VmRSS, VmHWM
(peak; reset by execve, so the init's own), RssAnon, RssFile and Pss (shared pages divided
among their users: glibc's are shared with the program) from /proc. Then SIGTERM to PID 1:
"stop ms" is from the kill to PID 1's exit with 143. Goal: VmHWM <= 2 MB.

UKRUN_BENCH_RUNS=N (environment) sets the number of interleaved rounds (default 9).
"""
import os
import random
import select
import signal
import subprocess
import sys
import time

from common import ROOT, WORKDIR, deployed, run, stats, table

RUNS = 9
GOAL_MB = 2.0
BURST = 1000

PID1 = r"""
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
child = os.fork()
if child == 0:
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    os.execv("/bin/sleep", ["sleep", "60"])
print(os.readlink("/proc/self"), flush=True)   # the machine's /proc: the pid seen from outside
if sys.argv[1] != "python":
    os.execv(sys.argv[1], [sys.argv[1], str(child)])
while True:
    sig = signal.sigwaitinfo(signal.valid_signals()).si_signo
    if sig != signal.SIGCHLD:
        os.kill(child, sig)
        continue
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        if pid == child:
            sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status)
                     else 128 + os.WTERMSIG(status))
"""


def shipped_init(install):
    return run(install.python, "-c", "try:\n from ukrun.kernel.process import init_program\n"
               "except ImportError:\n from ukrun.pid1 import init_program\nprint(init_program())",
               cwd=WORKDIR).stdout.strip()


def static_init():
    """csrc/init.c linked statically, or None when this machine has no static libc."""
    out = os.path.join(WORKDIR, "ukrun-init-static")
    proc = run("gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-static", "-s", "-o", out,
               os.path.join(ROOT, "csrc", "init.c"), check=False)
    return out if proc.returncode == 0 else None


def memory(pid):
    """{field: kB} from /proc/PID/status and smaps_rollup."""
    fields = {}
    for name, wanted in (("status", ("VmRSS", "VmHWM", "RssAnon", "RssFile")),
                         ("smaps_rollup", ("Pss",))):
        with open("/proc/%d/%s" % (pid, name)) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in wanted:
                    fields[key] = int(value.split()[0])
    return fields


def once(python, mode, expect_exe):
    proc = subprocess.Popen(["unshare", "--pid", "--fork", python, "-c", PID1, mode],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    pid = None
    try:
        deadline = time.monotonic() + 10
        if not select.select([proc.stdout], [], [], 10)[0]:
            raise RuntimeError("PID 1 (%s) did not start within 10 s" % mode)
        pid = int(proc.stdout.readline())
        while os.path.realpath("/proc/%d/exe" % pid) != expect_exe:
            if time.monotonic() > deadline:
                raise RuntimeError("PID 1 did not become %s" % expect_exe)
            time.sleep(0.002)
        time.sleep(0.2)
        idle = memory(pid)
        for _ in range(BURST):
            os.kill(pid, signal.SIGWINCH)
        time.sleep(0.1)
        busy = memory(pid)
        began = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        status = proc.wait(timeout=10)
        stop_ms = (time.monotonic() - began) * 1000
        if status != 143:
            raise RuntimeError("%s as PID 1 exited %s, not 143: %s"
                               % (mode, status, proc.stderr.read()))
        return idle, busy, stop_ms
    finally:
        if proc.poll() is None:
            if pid:
                os.kill(pid, signal.SIGKILL)   # from outside: ends the whole namespace
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def main(runs=None):
    from setup_latency import runs_from_env
    runs = runs_from_env(RUNS) if runs is None else runs
    install = deployed()
    shipped = shipped_init(install)
    variants = {"ukrun-init (shipped, dynamic)": (shipped, shipped)}
    static = static_init()
    if static:
        variants["ukrun-init, static glibc (not shipped)"] = (static, static)
    variants["the same loop in python (resident CPython)"] = (
        "python", os.path.realpath(install.python))
    samples = {k: {"idle": [], "busy": [], "stop_ms": []} for k in variants}
    for k, (mode, exe) in variants.items():   # warm-up: page cache
        once(install.python, mode, exe)
    for _ in range(runs):
        order = list(variants)
        random.shuffle(order)
        for k in order:
            idle, busy, stop_ms = once(install.python, *variants[k])
            samples[k]["idle"].append(idle)
            samples[k]["busy"].append(busy)
            samples[k]["stop_ms"].append(stop_ms)
    result = {}
    rows = []
    for k, s in samples.items():
        mb = {f: stats([b[f] / 1024.0 for b in s["busy"]]) for f in s["busy"][0]}
        r = {"idle_mb": {f: stats([i[f] / 1024.0 for i in s["idle"]]) for f in s["idle"][0]},
             "after_burst_mb": mb, "stop_ms": stats(s["stop_ms"])}
        path = variants[k][0]
        if path != "python":
            r["file_bytes"] = os.path.getsize(path)
        result[k] = r
        rows.append([k, "%.2f" % r["idle_mb"]["VmRSS"]["median"], "%.2f" % mb["VmRSS"]["median"],
                     "%.2f" % mb["VmHWM"]["max"], "%.0f" % (mb["RssAnon"]["median"] * 1024),
                     "%.2f" % mb["Pss"]["median"], "%.2f" % r["stop_ms"]["median"],
                     "%d" % r["file_bytes"] if "file_bytes" in r else "-"])
    peak = result["ukrun-init (shipped, dynamic)"]["after_burst_mb"]["VmHWM"]["max"]
    result["goal_mb"] = GOAL_MB
    result["goal_met"] = peak <= GOAL_MB
    result["runs"] = runs
    result["burst_signals"] = BURST
    result["measured_install"] = install.info
    table("PID 1 memory with a sleeping child (%d runs, interleaved; after %d forwarded signals)"
          "\nukrun-init from %s; goal: peak <= %.0f MB: %s"
          % (runs, BURST, install.describe, GOAL_MB, "met" if result["goal_met"] else "NOT met"),
          ["PID 1", "idle RSS MB", "RSS MB", "peak MB", "anon kB", "PSS MB", "stop ms",
           "file B"], rows)
    return result


if __name__ == "__main__":
    main()
