"""An image whose base is the musl tree alone, standing in for an Alpine image.

No Alpine base can be pulled here. The base ``local/musl`` is imported from a root file system
made of musl's build products and nothing of glibc's:

- musl's loader, which is also its libc (``/lib/ld-musl-x86_64.so.1``, Debian's musl package);
- the musl CPython of tests/support/musl_python.py as /usr/bin/python3.11, stripped, with its
  standard library less the test suite, IDLE, tkinter and the static libpython;
- BusyBox, built from Debian's source against musl (as Alpine's is), for the shell and the
  tools (sh, sed, head, grep, readlink) the Dockerfile's RUN steps use.

The image itself comes from `ukrun dockerfile unix` (the two-stage Alpine build), adapted as
the Debian example is (tests/support/engine.py): FROM names the musl base, the ``apk add`` lines
go (the base has python3; a musl compiler is what the first stage lacks), and ukrun's wheel,
built outside with the musl toolchain, replaces the source distribution and the ``pip wheel``
step. The unix unikernel is a small musl-linked ELF (a unix unikernel built on Alpine links
musl dynamically) that execs uguest, the suite's userspace test guest.
"""
import os
import shutil
import subprocess
import tarfile
import tempfile

import musl_python
from musl_python import CACHE, PREFIX, TOOLS, run, unpack

BASE = "local/musl"
ROOTFS = os.path.join(CACHE, "rootfs-v1.tar")
BUSYBOX = os.path.join(CACHE, "busybox", "busybox")
LOADER = "/lib/ld-musl-x86_64.so.1"
# Applets of BusyBox's defconfig that need headers beyond linux/, asm/ and asm-generic/ (mtd/).
NO_APPLETS = ("NANDWRITE", "NANDDUMP", "UBIATTACH", "UBIDETACH", "UBIMKVOL", "UBIRMVOL",
              "UBIRSVOL", "UBIUPDATEVOL", "UBIRENAME", "FLASHCP", "FLASH_LOCK", "FLASH_UNLOCK",
              "FLASH_ERASEALL")
# Left out of the standard library, as Alpine's python3 package leaves out its test suite.
STDLIB_LEFT_OUT = ("test", "idlelib", "tkinter", "turtledemo", "__phello__")
IMAGE_PYTHON = "/opt/ukrun/bin/python3"
UGUEST = "/unikernel/uguest.py"
# The unix unikernel: exec uguest with the arguments ukrun gives (a musl-linked ELF, so that
# `ukrun dockerfile` takes it for a unikernel built on Alpine).
LAUNCHER = """\
#include <unistd.h>
int main(int argc, char **argv)
{
    (void)argc;
    argv[0] = "%s";
    execv(argv[0], argv);
    return 127;
}
""" % UGUEST


def busybox():
    """BusyBox from Debian's source, dynamically linked against musl; built when missing."""
    if os.path.exists(BUSYBOX):
        return BUSYBOX
    musl_python.fetch_sources()
    work = tempfile.mkdtemp(prefix="busybox-", dir=CACHE)
    try:
        src = unpack("busybox", work)
        make = ["make", "-j" + musl_python.jobs(), "CC=" + musl_python.toolchain(), "HOSTCC=gcc"]
        run(*make, "defconfig", cwd=src, stdout=subprocess.DEVNULL)
        config = os.path.join(src, ".config")
        off = {"CONFIG_%s=y" % name: "# CONFIG_%s is not set" % name for name in NO_APPLETS}
        with open(config) as f:
            lines = [off.get(l, l) for l in f.read().splitlines()]
        with open(config, "w") as f:
            f.write("\n".join(lines) + "\n")
        musl_python.log("building busybox")
        run(*make, cwd=src, stdout=subprocess.DEVNULL)
        os.makedirs(os.path.dirname(BUSYBOX), exist_ok=True)
        shutil.copy(os.path.join(src, "busybox"), BUSYBOX + ".tmp")
        os.rename(BUSYBOX + ".tmp", BUSYBOX)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BUSYBOX


def _stdlib_filter(info):
    parts = info.name.split("/")
    if len(parts) > 3 and parts[:3] == [".", "usr", "lib"] and parts[3] == "python3.11":
        rest = parts[4:]
        if rest and rest[0] in STDLIB_LEFT_OUT:
            return None
        if rest and rest[0].startswith("config-") and info.name.endswith(".a"):
            return None
        if info.name.endswith((".opt-1.pyc", ".opt-2.pyc")):
            return None
    return info


def rootfs(log=print):
    """The cached tarball of the musl base's root file system; made when missing."""
    if os.path.exists(ROOTFS):
        return ROOTFS
    musl_python.build()
    bb = busybox()
    log("musl: making the image's root file system")
    tree = tempfile.mkdtemp(prefix="rootfs-", dir=CACHE)
    os.chmod(tree, 0o755)
    try:
        for d in ("lib", "bin", "sbin", "usr/bin", "usr/sbin", "usr/lib", "etc", "root", "tmp",
                  "proc", "sys", "dev", "var/tmp"):
            os.makedirs(os.path.join(tree, d), exist_ok=True)
        os.chmod(os.path.join(tree, "tmp"), 0o1777)
        os.chmod(os.path.join(tree, "var/tmp"), 0o1777)
        shutil.copy(os.path.realpath(LOADER), tree + LOADER)
        shutil.copytree(os.path.join(PREFIX, "lib", "python3.11"),
                        os.path.join(tree, "usr", "lib", "python3.11"), symlinks=True)
        shutil.copy(os.path.join(PREFIX, "bin", "python3.11"), os.path.join(tree, "usr/bin"))
        os.symlink("python3.11", os.path.join(tree, "usr", "bin", "python3"))
        site = os.path.join(tree, "usr", "lib", "python3.11", "site-packages")
        shutil.rmtree(site)   # the suite's wheels: an image starts with an empty one
        os.mkdir(site)
        dynload = os.path.join(tree, "usr", "lib", "python3.11", "lib-dynload")
        run("strip", "--strip-unneeded", os.path.join(tree, "usr", "bin", "python3.11"),
            *[os.path.join(dynload, f) for f in os.listdir(dynload) if f.endswith(".so")])
        shutil.copy(bb, os.path.join(tree, "bin", "busybox"))
        applets = subprocess.run([bb, "--list-full"], capture_output=True, text=True,
                                 check=True).stdout.split()
        for path in applets:
            if not os.path.lexists(os.path.join(tree, path)):
                os.symlink("/bin/busybox", os.path.join(tree, path))
        with open(os.path.join(tree, "etc", "passwd"), "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        with open(os.path.join(tree, "etc", "group"), "w") as f:
            f.write("root:x:0:\nnogroup:x:65534:\n")
        with tarfile.open(ROOTFS + ".tmp", "w") as tar:
            tar.add(tree, ".", filter=_stdlib_filter)
        os.replace(ROOTFS + ".tmp", ROOTFS)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return ROOTFS


def glibc_files(tarball):
    """The members of TARBALL that are glibc's (its loaders and libc.so.6): none, for the base."""
    with tarfile.open(tarball) as tar:
        return [m.name for m in tar.getmembers()
                if os.path.basename(m.name).startswith(("ld-linux", "libc.so.6", "libc-2."))]


def launcher(path):
    """The unix unikernel at PATH: LAUNCHER compiled with the musl toolchain."""
    source = path + ".c"
    with open(source, "w") as f:
        f.write(LAUNCHER)
    run(os.path.join(TOOLS, "musl-cc"), "-O2", "-Wall", "-Wextra", "-Werror", "-o", path, source)
    os.unlink(source)
    return path


def wheels(dest):
    """DEST/ with ukrun's wheel built by the musl interpreter, cffi's and pycparser's."""
    from wheelutil import build_wheel

    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ukrun-wheel-") as tmp:
        shutil.copy(build_wheel(tmp, python=musl_python.VENV_PYTHON), dest)
    for name in os.listdir(musl_python.WHEELS):
        if name.startswith(("cffi-", "pycparser-")) and name.endswith(".whl"):
            shutil.copy(os.path.join(musl_python.WHEELS, name), dest)
    return dest


def adapt_alpine_dockerfile(text, base=BASE, wheels_dir="wheels"):
    """`ukrun dockerfile`'s Alpine build on BASE: FROM lines on BASE, no ``apk add`` lines,
    the wheels copied where the source distribution was, no ``pip wheel`` step. Raises
    ValueError when the generated text no longer has the lines replaced."""
    out, replaced = [], {"from": 0, "apk": 0, "sdist": 0, "pip wheel": 0}
    for line in text.splitlines():
        if line.startswith("FROM alpine:"):
            line = "FROM " + base + line[len("FROM alpine:${ALPINE_VERSION}"):]
            replaced["from"] += 1
        elif line.startswith("RUN apk add "):
            replaced["apk"] += 1
            continue
        elif line.startswith("COPY [\"ukrun-") and ".tar.gz" in line:
            line = "COPY [\"%s\", \"/wheels\"]" % wheels_dir
            replaced["sdist"] += 1
        elif "/bin/pip wheel " in line:
            replaced["pip wheel"] += 1
            continue
        out.append(line)
    if replaced != {"from": 2, "apk": 2, "sdist": 1, "pip wheel": 1}:
        raise ValueError("ukrun dockerfile's Alpine build changed shape: replaced %s" % replaced)
    return "\n".join(out) + "\n"


def build_image(engine, context, uguest_source, tag="ukrun-test/musl-unix"):
    """Import the musl base into ENGINE and build the unix image in CONTEXT; returns TAG."""
    tarball = rootfs()
    if not engine.has_image(BASE):
        with open(tarball, "rb") as fh:
            engine.docker("import", "-c", "ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                          "-c", 'CMD ["/bin/sh"]', "-", BASE, stdin=fh, capture_output=True,
                          text=False, timeout=600)
    os.makedirs(context, exist_ok=True)
    wheels(os.path.join(context, "wheels"))
    launcher(os.path.join(context, "uguest"))
    with open(uguest_source) as f:
        body = f.read()
    with open(os.path.join(context, "uguest.py"), "w") as f:
        f.write("#!%s\n%s" % (IMAGE_PYTHON, body))
    os.chmod(os.path.join(context, "uguest.py"), 0o755)
    # The generator wants ukrun's source distribution in the context; the adapted text copies
    # the wheels instead, so an empty file of that name stands in for it.
    from ukrun._version import __version__

    open(os.path.join(context, "ukrun-%s.tar.gz" % __version__), "w").close()
    text = run_capture(musl_python.VENV_PYTHON, "-m", "ukrun", "dockerfile", "unix",
                       "--context", context, "uguest", cwd=context)
    text = adapt_alpine_dockerfile(text) + 'COPY ["uguest.py", "%s"]\n' % UGUEST
    return engine.build(tag, context, text)


def run_capture(*argv, cwd):
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True).stdout


def image_size(engine, tag):
    """TAG's size in bytes, as `docker image inspect` reports it (every layer, uncompressed)."""
    return int(engine.docker("image", "inspect", "-f", "{{.Size}}", tag).stdout.strip())
