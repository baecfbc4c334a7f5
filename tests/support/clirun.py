"""Running the real CLI inside a container: the installed command, or the CLI with the
preflight's program checks taken out (so that faults reach execve itself), and a stand-in
unikernel that reports what it was handed."""
import json
import os
import sys
import textwrap


STANDIN = textwrap.dedent("""\
    #!{python}
    # A stand-in unikernel/tender: reports its argv, capabilities and fds as JSON, then exits.
    import json, os, sys
    fds = {{}}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[name] = os.readlink("/proc/self/fd/" + name)
        except OSError:  # the fd listdir used, closed by now
            pass
    status = {{}}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.startswith("Cap") or key == "NoNewPrivs":
                status[key] = value.strip()
    iffs = {{}}  # the tap each inherited tun fd is attached to
    for fd in sorted(fds):
        if int(fd) > 2 and fds[fd] == "/dev/net/tun":
            with open("/proc/self/fdinfo/" + fd) as f:
                iffs[fd] = [l.split()[1] for l in f if l.startswith("iff:")]
    print(json.dumps({{"argv": sys.argv, "status": status, "fds": fds, "iffs": iffs,
                      "iff3": iffs.get("3"), "env": os.environ.get("UKRUN_TEST_MARK")}}))
""")


def ukrun(container, ukrun_exe, *argv, env=None):
    full_env = dict(os.environ, UKRUN_TEST_MARK="kept", **(env or {}))
    return container.exec(ukrun_exe, *argv, check=False, env=full_env)


def report(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# The real CLI in a child Python, with the preflight's program checks taken out, so that the
# faults below reach execve itself: the last line of defence must hold on its own.
RAW_CLI = textwrap.dedent("""\
    import sys
    from ukrun import planning
    from ukrun.guest import programs
    def unchecked(o, target, *rest):
        return None if target.default_tender is None else (o.tender or o.qemu)
    planning.resolve_programs = unchecked
    for name in dir(programs):
        if name.startswith("check_program") or name in ("check_usable_unprivileged",
                                                         "check_exec_size"):
            setattr(programs, name, lambda *a, **k: None)
    from ukrun.cli import main
    # BIG:N is an argument of N bytes, made here: too long to pass to this process itself.
    sys.exit(main(["x" * int(a[4:]) if a.startswith("BIG:") else a for a in sys.argv[1:]]))
""")


def raw_ukrun(container, *argv, **kw):
    return container.exec(sys.executable, "-c", RAW_CLI, *argv, check=False, **kw)
