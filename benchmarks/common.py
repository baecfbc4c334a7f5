"""Shared by the benchmark sections: C helpers compiled at bench time, ukrun installed from its
wheel in a fresh venv (as a container image installs it), docker-like namespaces
(tests/support/nsutil.py), spawning inside a namespace, statistics and tables.

UKRUN_BENCH_BEFORE (environment): another ukrun to measure side by side with this checkout, in
the same run ("before"): a source tree (`git worktree add /tmp/before COMMIT`), whose own
tests/support/wheelutil.py builds its wheel, or a built .whl. The sections that compare add its rows.

Everything runs in namespaces made here (172.30.0.0/16 behind a docker0 bridge), never in the
machine's own; the caller removes them in a finally.
"""
import atexit
import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))

from nsutil import Container, DockerHost, in_netns, run, unique  # noqa: E402,F401
from wheelutil import build_wheel  # noqa: E402

PYTHON = sys.executable  # the development venv's: it builds the deployed one
WORKDIR = tempfile.mkdtemp(prefix="ukrun-bench-")
atexit.register(shutil.rmtree, WORKDIR, ignore_errors=True)   # also when a section runs alone


def compile_c(name):
    """gcc benchmarks/csrc/NAME.c into the work directory; returns the binary's path."""
    out = os.path.join(WORKDIR, name)
    if not os.path.exists(out):
        run("gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", out,
            os.path.join(HERE, "csrc", name + ".c"))
    return out


Install = collections.namedtuple("Install", "python ukrun ukrun_with_site describe info")
_deployed = {}


def deployed(which="after"):
    """ukrun as a container image has it (examples/*/Dockerfile), made once per bench run:
    this checkout's ("after"), or UKRUN_BENCH_BEFORE's ("before"; see before()).

    The wheel (tests/wheelutil.build_wheel, from a clean copy of the tree) is installed with
    pip, with its dependency cffi from the package index as in an image build, in a plain
    `python -m venv` under WORKDIR: no editable-install import hook, bytecode compiled at
    install. pip writes the script's interpreter line without the -S of bin/ukrun (pip issue
    10661); the images ukrun writes put it back (ukrun/docker.py), and so does this for "after",
    keeping pip's version beside it. "before" runs as pip wrote it, as its own images ran it.
    Returns Install(python, ukrun, ukrun_with_site, describe, info): the venv's interpreter, its
    `ukrun` script, that script as pip wrote it, a phrase for table titles and a dict for the
    JSON (the commit it was built from, whether -S was given back).
    """
    if which in _deployed:
        return _deployed[which]
    base = os.path.join(WORKDIR, which)
    if which == "after":
        wheel, tree = build_wheel(os.path.join(base, "build")), ROOT
    else:
        wheel, tree = _other_wheel(os.environ["UKRUN_BENCH_BEFORE"], os.path.join(base, "build"))
    venv = os.path.join(base, "venv")
    run(PYTHON, "-m", "venv", venv, timeout=300)
    py = os.path.join(venv, "bin", "python")
    run(py, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel, timeout=300)
    # From a directory without a ukrun/ in it, so the import can only find the venv's copy.
    where = run(py, "-c", "import sys, ukrun.cli, cffi; print(sys.version.split()[0]);"
                " print(ukrun.cli.__file__); print(cffi.__version__)", cwd=venv).stdout.split("\n")
    if not os.path.realpath(where[1]).startswith(os.path.realpath(venv) + os.sep):
        raise RuntimeError("the deployed venv imports ukrun from %s" % where[1])
    script = os.path.join(venv, "bin", "ukrun")
    with_site = os.path.join(venv, "bin", "ukrun-with-site")
    shutil.copy2(script, with_site)
    restored = which == "after" and give_back_no_site(script)
    name = os.path.basename(wheel)
    commit = _commit(tree)
    describe = "%s%s in a fresh venv (python %s)" % (
        name, " of %s" % commit if commit else "", where[0])
    info = {"install": "wheel", "wheel": name, "venv": "python -m venv (plain, not editable)",
            "python": where[0], "cffi": where[2], "commit": commit,
            "interpreter_line": "-S given back, as ukrun's images do" if restored
            else "as pip wrote it"}
    _deployed[which] = Install(py, script, with_site, describe, info)
    return _deployed[which]


def give_back_no_site(script):
    """Add -S to SCRIPT's interpreter line where pip wrote it without (what the Dockerfiles of
    ukrun/docker.py do in an image); True when it did."""
    with open(script, "rb") as fh:
        first, rest = fh.readline(), fh.read()
    words = first.split()
    if not first.startswith(b"#!") or len(words) != 1:
        return False
    with open(script, "wb") as fh:
        fh.write(first.rstrip(b"\n") + b" -S\n" + rest)
    return True


def before():
    """The "before" install when UKRUN_BENCH_BEFORE names one, else None."""
    return deployed("before") if os.environ.get("UKRUN_BENCH_BEFORE") else None


def _other_wheel(source, build_dir):
    """(wheel, tree or None) for UKRUN_BENCH_BEFORE: a .whl as it is, or a source tree built
    with that tree's own wheelutil.py (what goes into its wheel is its own business), found in
    tests/support/ or, in trees from before the tests had folders, in tests/."""
    if source.endswith(".whl"):
        return source, None
    code = ("import sys; sys.path.insert(0, %r); import wheelutil; print(wheelutil.build_wheel(%r))"
            % (_support_dir(source), build_dir))
    return run(PYTHON, "-c", code, timeout=600).stdout.strip().splitlines()[-1], source


def _support_dir(tree):
    support = os.path.join(tree, "tests", "support")
    return support if os.path.isdir(support) else os.path.join(tree, "tests")


def _commit(tree):
    """The commit TREE is checked out at (with "+changes" when its files differ), or None."""
    if tree is None:
        return None
    head = run("git", "-C", tree, "rev-parse", "--short", "HEAD", check=False)
    if head.returncode != 0:
        return None
    dirty = run("git", "-C", tree, "status", "--porcelain", "--untracked-files=no", check=False)
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


class Host(DockerHost):
    """A Docker host whose containers are numbered here, so each run gets a fresh one. A
    discarded container's number (its address, MAC and veth) serves again: long runs need more
    containers than 172.30.0.0/24 has addresses."""

    def __init__(self):
        super().__init__(unique("ukbh"))
        # Oldest freed first: a deleted namespace's veth goes away asynchronously.
        self.free_indexes = collections.deque(range(1, 251))
        self.index_of = {}

    def fresh(self):
        if not self.free_indexes:
            raise RuntimeError("out of container addresses: discard containers once done")
        index = self.free_indexes.popleft()
        c = Container(unique("ukbc"), self, index)
        self.index_of[c.name] = index
        self.containers.append(c)
        return c

    def discard(self, c):
        c.delete()
        self.containers.remove(c)
        self.free_indexes.append(self.index_of.pop(c.name))

    def pin_neighbour(self, c, mac=None):
        """What a Docker host has after the container's first packets: its MAC in the cache."""
        self.ip("neigh", "replace", c.ip4, "lladdr", mac or c.mac, "dev", "docker0",
                "nud", "permanent")


def popen_in(ns_name, argv, **kw):
    """Start ARGV with this thread inside namespace NS_NAME (no `ip netns exec` in between)."""
    with in_netns(ns_name):
        return subprocess.Popen(argv, **kw)


def stats(values):
    """median, min, max, p90 and the interquartile spread of VALUES."""
    v = sorted(values)
    q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
    return {"n": len(v), "median": statistics.median(v), "min": v[0], "max": v[-1],
            "p90": v[min(len(v) - 1, int(len(v) * 0.9))], "iqr": q[2] - q[0]}


def table(title, header, rows):
    """Print a plain-text table: HEADER is a list of column names, ROWS lists of strings."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join("%-*s" % (w, h) for w, h in zip(widths, header))
    print("\n" + title)
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(("%-*s" if i == 0 else "%*s") % (w, c)
                        for i, (w, c) in enumerate(zip(widths, r))))
    sys.stdout.flush()
