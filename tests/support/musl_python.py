"""A musl CPython built from Debian's sources, standing in for Alpine's userland.

No Alpine base or apk repository can be reached here, but Debian ships musl and the sources of
CPython, libffi and zlib. This builds (as root, like the rest of the test setup):

- a compiler wrapper around musl-gcc that sees only musl's headers plus the kernel's (linux/,
  asm/, asm-generic/ through a private -isystem) and answers ``-print-multiarch`` (and ``--print-multiarch``, what configure asks) with
  x86_64-linux-musl (else CPython's configure stops with "internal configure error for the
  platform triplet" and its setup.py adds glibc's include directory);
- static libffi and zlib (-fPIC, so the extension modules can take them in);
- CPython 3.11.2, Debian bookworm's orig tarball, ``--without-ensurepip PKG_CONFIG=false``;
- the wheels the suite needs: cffi and pycparser as musllinux wheels, pytest, hypothesis, pip,
  setuptools, wheel and argparse-manpage (pure Python), at the versions the glibc venv holds,
  installed into the interpreter's own site-packages (pip for the --user installs) and into
- a venv of it (.cache/musl/venv; its own site-packages, as the glibc .venv, so ``python -S``
  runs of its ukrun script find cffi) with ukrun installed editable from a copy of the source
  tree (.cache/musl/tree), so the musl extension and ukrun-init never replace the glibc ones.

Everything lands in .cache/musl/ and is built only when missing (the copy of the tree is
refreshed on every call). ``python tests/support/musl_python.py`` prints the venv's interpreter.
"""
import glob
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

from tree import ROOT

CACHE = os.path.join(ROOT, ".cache", "musl")
PREFIX = os.path.join(CACHE, "python")        # the musl CPython
DEPS = os.path.join(CACHE, "deps")            # static libffi and zlib
TOOLS = os.path.join(CACHE, "toolchain")      # the compiler wrapper and its header dir
VENV = os.path.join(CACHE, "venv")
TREE = os.path.join(CACHE, "tree")
WHEELS = os.path.join(CACHE, "wheels")
SOURCES = os.path.join(CACHE, "sources")
CC = os.path.join(TOOLS, "musl-cc")
PYTHON = os.path.join(PREFIX, "bin", "python3.11")
VENV_PYTHON = os.path.join(VENV, "bin", "python")
SITE = os.path.join(PREFIX, "lib", "python3.11", "site-packages")
VENV_SITE = os.path.join(VENV, "lib", "python3.11", "site-packages")
TRIPLET = "x86_64-linux-musl"
# Debian's source packages (busybox is the musl image's, tests/support/muslimage.py).
SOURCE_PACKAGES = ("python3.11", "libffi", "zlib", "busybox")
# Pure-Python wheels installed as the glibc venv has them, plus the two binary ones.
PURE = ("pip", "setuptools", "wheel", "pytest", "hypothesis")
# Pure Python, but only a source distribution on PyPI: built by the glibc pip, no platform.
SDIST_ONLY = ("argparse-manpage",)
BINARY = ("cffi", "pycparser")
PLATFORM = ["--platform", "musllinux_1_2_x86_64", "--python-version", "3.11",
            "--implementation", "cp", "--abi", "cp311", "--only-binary=:all:"]
# What the test copy of the tree leaves out: build products and caches of the glibc side.
NOT_COPIED = {".git", ".venv", ".cache", "build", "dist", ".pytest_cache", ".hypothesis",
              "__pycache__", "ukrun-init", "ukrun.egg-info"}
WRAPPER = """#!/bin/sh
# musl-gcc with the kernel's headers (linux/, asm/, asm-generic/) and nothing else of glibc's.
for arg in "$@"; do
    case "$arg" in -print-multiarch|--print-multiarch) echo %(triplet)s; exit 0;; esac
done
exec musl-gcc -isystem %(include)s "$@"
"""


def log(*words):
    print("musl:", *words, file=sys.stderr, flush=True)


def run(*argv, **kw):
    """ARGV, checked; its output goes to stderr: stdout is for the interpreter's path alone."""
    kw.setdefault("stdout", sys.stderr)
    subprocess.run(argv, check=True, **kw)


def jobs():
    return str(max(1, len(os.sched_getaffinity(0))))


# --- the toolchain --------------------------------------------------------------------------------

def toolchain():
    """The wrapper compiler; its -isystem dir links the kernel's header dirs from /usr/include."""
    if os.path.exists(CC):
        return CC
    include = os.path.join(TOOLS, "include")
    os.makedirs(include, exist_ok=True)
    links = {"linux": "/usr/include/linux", "asm-generic": "/usr/include/asm-generic",
             "asm": "/usr/include/x86_64-linux-gnu/asm"}
    for name, target in links.items():
        if not os.path.isdir(target):
            raise SystemExit("musl: %s is missing: apt-get install linux-libc-dev" % target)
        if not os.path.lexists(os.path.join(include, name)):
            os.symlink(target, os.path.join(include, name))
    if shutil.which("musl-gcc") is None:
        raise SystemExit("musl: musl-gcc is missing: apt-get install musl musl-tools musl-dev")
    tmp = CC + ".tmp"
    with open(tmp, "w") as f:
        f.write(WRAPPER % {"triplet": TRIPLET, "include": include})
    os.chmod(tmp, 0o755)
    os.rename(tmp, CC)
    return CC


# --- Debian's sources -----------------------------------------------------------------------------

def deb_src_entries():
    """The machine's own apt sources, as deb-src: deb822 stanzas (sources.list.d/*.sources,
    Debian 12 images) and one-line entries (sources.list), whichever the machine has."""
    stanzas, lines = [], []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as f:
            for stanza in f.read().split("\n\n"):
                fields = [l for l in stanza.splitlines() if l and not l.startswith("#")]
                types = [l for l in fields if l.lower().startswith("types:")]
                if types and "deb" in types[0].split(":", 1)[1].split():
                    rest = [l for l in fields if not l.lower().startswith("types:")]
                    stanzas.append("\n".join(["Types: deb-src"] + rest))
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        if os.path.exists(path):
            with open(path) as f:
                lines += ["deb-src" + l.strip()[3:] for l in f if l.strip().startswith("deb ")]
    if not stanzas and not lines:
        stanzas.append("Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n"
                       "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg")
    return stanzas, lines


def apt_options():
    """apt with a private source list and state: the machine's own apt configuration and
    package lists stay as they were."""
    apt = os.path.join(CACHE, "apt")
    return ["-o", "Dir::Etc::SourceList=" + os.path.join(apt, "none.list"),
            "-o", "Dir::Etc::SourceParts=" + os.path.join(apt, "sources.list.d"),
            "-o", "Dir::State::Lists=" + os.path.join(apt, "lists"),
            "-o", "Dir::Cache=" + os.path.join(apt, "cache"),
            "-o", "APT::Sandbox::User=root", "-q"]


def fetch_sources():
    """Download (not unpack) the source packages with ``apt-get source --download-only``."""
    os.makedirs(SOURCES, exist_ok=True)
    wanted = [p for p in SOURCE_PACKAGES if not glob.glob(os.path.join(SOURCES, p + "_*.dsc"))]
    if not wanted:
        return
    apt = os.path.join(CACHE, "apt")
    for sub in ("sources.list.d", "lists/partial", "cache/archives/partial"):
        os.makedirs(os.path.join(apt, sub), exist_ok=True)
    open(os.path.join(apt, "none.list"), "w").close()
    stanzas, lines = deb_src_entries()
    with open(os.path.join(apt, "sources.list.d", "deb-src.sources"), "w") as f:
        f.write("\n\n".join(stanzas) + "\n")
    with open(os.path.join(apt, "sources.list.d", "deb-src.list"), "w") as f:
        f.write("\n".join(lines) + "\n")
    log("fetching Debian sources:", *wanted)
    run("apt-get", *apt_options(), "update")
    # The release's own version (pkg/bookworm): a security update's source package may live in a
    # pool that holds its Debian diff but not the orig tarball (seen: zlib here).
    suite = os_release().get("VERSION_CODENAME", "bookworm")
    run("apt-get", *apt_options(), "source", "--download-only",
        *["%s/%s" % (p, suite) for p in wanted], cwd=SOURCES)


def os_release():
    with open("/etc/os-release") as f:
        pairs = (l.rstrip("\n").split("=", 1) for l in f if "=" in l)
        return {k: v.strip('"') for k, v in pairs}


def unpack(package, into):
    """Unpack PACKAGE's orig tarball into INTO; return the directory it made."""
    [orig] = [p for p in glob.glob(os.path.join(SOURCES, package + "_*.orig.tar.*"))
              if not p.endswith(".asc")]
    with tarfile.open(orig) as tar:
        top = {m.name.split("/", 1)[0] for m in tar.getmembers()}
        tar.extractall(into)
    [top] = top
    return os.path.join(into, top)


# --- the builds -----------------------------------------------------------------------------------

def build_deps(work):
    """Static zlib and libffi, position independent, into DEPS."""
    if os.path.exists(os.path.join(DEPS, "lib", "libffi.a")):
        return
    env = dict(os.environ, CC=toolchain(), CFLAGS="-O2 -fPIC")
    src = unpack("zlib", work)
    log("building zlib")
    run("./configure", "--static", "--prefix=" + DEPS, cwd=src, env=env)
    run("make", "-j" + jobs(), "install", cwd=src, env=env, stdout=subprocess.DEVNULL)
    src = unpack("libffi", work)
    log("building libffi")
    run("./configure", "--host=" + TRIPLET, "--prefix=" + DEPS, "--libdir=" + DEPS + "/lib",
        "--disable-shared", "--enable-static", "--disable-docs", "--disable-multi-os-directory",
        cwd=src, env=env, stdout=subprocess.DEVNULL)
    run("make", "-j" + jobs(), "install", cwd=src, env=env, stdout=subprocess.DEVNULL)


def build_python(work):
    if os.path.exists(PYTHON):
        return
    src = unpack("python3.11", work)
    log("building CPython in", src)
    env = dict(os.environ, CC=toolchain())
    run("./configure", "--prefix=" + PREFIX, "--without-ensurepip", "PKG_CONFIG=false",
        "CPPFLAGS=-I%s/include" % DEPS, "LDFLAGS=-L%s/lib" % DEPS,
        cwd=src, env=env, stdout=subprocess.DEVNULL)
    run("make", "-j" + jobs(), cwd=src, env=env, stdout=subprocess.DEVNULL)
    run("make", "install", cwd=src, env=env, stdout=subprocess.DEVNULL)


def glibc_versions():
    """name==version for the wheels, as the running (glibc venv's) interpreter has them."""
    from importlib import metadata

    pins = []
    for name in PURE + BINARY + SDIST_ONLY:
        try:
            pins.append("%s==%s" % (name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def install_wheels(site):
    """Download the wheels with this (glibc) interpreter's pip and install them into SITE, a
    musl site-packages (pip --target): the musl CPython has no ensurepip run to give it pip."""
    if glob.glob(os.path.join(site, "cffi-*.dist-info")):
        return
    pins = glibc_versions()
    wheels, sdists = pins[:-len(SDIST_ONLY)], pins[-len(SDIST_ONLY):]
    log("installing wheels into", site, *pins)
    run(sys.executable, "-m", "pip", "download", "-q", "-d", WHEELS, *PLATFORM, *wheels)
    run(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", WHEELS, *sdists)
    run(sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", WHEELS,
        "--target", site, "--upgrade", *PLATFORM, *wheels)
    run(sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", WHEELS,
        "--no-deps", "--target", site, *sdists)
    # --target puts scripts in site-packages/bin with this interpreter's name: not wanted.
    shutil.rmtree(os.path.join(site, "bin"), ignore_errors=True)


def copy_tree():
    """The source tree for the musl pass, refreshed from ROOT (build products of the glibc side
    left out), with ROOT's other caches (guests, engine images) linked in."""
    def ignore(directory, names):
        left = {n for n in names if n in NOT_COPIED or n.endswith(".so")}
        return left
    new = TREE + ".new"
    shutil.rmtree(new, ignore_errors=True)
    shutil.copytree(ROOT, new, ignore=ignore, symlinks=True)
    # keep what the last musl build compiled in place (the extension, ukrun-init, egg-info)
    if os.path.isdir(TREE):
        for rel in ("ukrun/ukrun-init", "ukrun.egg-info"):
            if os.path.exists(os.path.join(TREE, rel)):
                os.rename(os.path.join(TREE, rel), os.path.join(new, rel))
        for so in glob.glob(os.path.join(TREE, "ukrun", "*.so")):
            os.rename(so, os.path.join(new, "ukrun", os.path.basename(so)))
        shutil.rmtree(TREE)
    os.rename(new, TREE)
    os.makedirs(os.path.join(TREE, ".cache"), exist_ok=True)
    for name in os.listdir(os.path.join(ROOT, ".cache")):
        if name != "musl":
            os.symlink(os.path.join(ROOT, ".cache", name), os.path.join(TREE, ".cache", name))


def make_venv():
    """A venv of the musl CPython, the wheels in its own site-packages, ukrun installed
    editable from TREE."""
    if not os.path.exists(VENV_PYTHON):
        run(PYTHON, "-m", "venv", "--without-pip", VENV)
    install_wheels(VENV_SITE)
    run(VENV_PYTHON, "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation",
        "--no-deps", "-e", TREE, cwd=TREE)


def build():
    """Build what is missing; return the musl venv's interpreter."""
    os.makedirs(CACHE, exist_ok=True)
    import fcntl

    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(PYTHON):
            fetch_sources()
            work = tempfile.mkdtemp(prefix="build-", dir=CACHE)
            try:
                build_deps(work)
                build_python(work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        install_wheels(SITE)
        copy_tree()
        make_venv()
    return VENV_PYTHON


if __name__ == "__main__":
    print(build())
