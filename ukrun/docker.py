"""The Docker side of a unikernel container: its Dockerfile and the ``docker run`` flags it needs.

What the old runner's docker-mirage.sh did, without needing Docker: ``dockerfile()`` writes the
text (every file it names is checked first, so the build cannot fail on a missing or unusable
file), and ``docker_args()`` probes this host's /dev/net/tun and /dev/kvm.

The default image is a two-stage Alpine build. Its build context (the directory handed to
``docker build``, ``context`` here) must hold the unikernel, the tender (hvt, spt, ukvm) and
ukrun's source distribution ``ukrun-VERSION.tar.gz`` (``python3 setup.py sdist`` in a ukrun
checkout writes it to dist/): the first stage compiles ukrun's wheel against musl, since a wheel
built on a glibc host installs there but cannot load. Fixed paths in the image:

    /unikernel/NAME           the unikernel, under the name it was given
    /unikernel/solo5-hvt      the tender (solo5-spt for spt, ukvm for ukvm: ukrun's ukvm default)
    /opt/ukrun                a virtual environment holding ukrun, its bin/ first on PATH

With ``base`` (``--from IMAGE``) the image is one stage on a base that already has ukrun (and,
for qemu/kvm, qemu-system-x86_64) installed; its C library is then the base's business.
"""
from __future__ import annotations

import errno
import json
import os
import re
import sys

from ukrun import elf
from ukrun._version import __version__
from ukrun.errors import NotExecutableError, NotFoundError, PrivilegeError, UsageError
from ukrun.valueclass import value_class

ALPINE_VERSION = "3.20"
BUILDER_PACKAGES = ("python3", "python3-dev", "gcc", "musl-dev", "linux-headers", "libffi-dev")
IMAGE_DIR = "/unikernel"
VENV = "/opt/ukrun"
TUN_DEVICE = "/dev/net/tun"
KVM_DEVICE = "/dev/kvm"

ARP_NOTE = (
    "note: ukrun gives the unikernel the container's own MAC address (--mac inherit, the "
    "default), so the Docker host's neighbour entry for the container stays right: the old "
    "runner's warning about arp_accept and gratuitous ARP on the Docker bridge no longer "
    "applies (with --mac random it would again).")


@value_class(frozen=True)
class TargetImage:
    """What a target needs in its image and from the host."""

    tender_file: str | None = None  # the tender's default file name in the build context
    tender_in_image: str | None = None  # its path in the image
    tender_option: bool = False  # pass --tender (ukvm's default is already /unikernel/ukvm)
    needs_kvm: bool = False
    packages: tuple = ()  # Alpine packages the final stage adds


_QEMU = ("qemu-system-x86_64",)  # its ROMs (virtio-net's efi-virtio.rom) come with it
TARGETS = {
    "unix": TargetImage(),
    "hvt": TargetImage("solo5-hvt", IMAGE_DIR + "/solo5-hvt", True, needs_kvm=True),
    "spt": TargetImage("solo5-spt", IMAGE_DIR + "/solo5-spt", True),
    "ukvm": TargetImage("ukvm-bin", IMAGE_DIR + "/ukvm", False, needs_kvm=True),
    "qemu": TargetImage(packages=_QEMU),
    "kvm": TargetImage(needs_kvm=True, packages=_QEMU),
}

# COPY expands $VARIABLES and treats \ as an escape and *?[ as a pattern, even in its JSON form.
_COPY_UNSAFE = re.compile(r"[\x00-\x1f\x7f$\\*?\[]")
_IMAGE_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
_SDIST_NAME = re.compile(r"^ukrun-[A-Za-z0-9._+-]+\.tar\.gz$")


def _target(target) -> TargetImage:
    try:
        return TARGETS[target]
    except (KeyError, TypeError):
        raise UsageError("unknown target %r" % (target,),
                         "choose one of %s" % ", ".join(TARGETS)) from None


def dockerfile(target, unikernel, tender=None, base=None, args=(), context=".", sdist=None,
               run_options=()) -> str:
    """The Dockerfile text that runs ``ukrun TARGET [RUN_OPTIONS] /unikernel/NAME [ARGS]``.

    ``unikernel``, ``tender`` and ``sdist`` are paths (relative to the current directory) that
    must lie inside ``context``, the directory ``docker build`` will be given. ``args`` become
    the image's CMD, so ``docker run IMAGE ARG...`` replaces them. Raises UsageError,
    NotFoundError or NotExecutableError, naming the file and how to fix it.
    """
    spec = _target(target)
    if base is not None and not _IMAGE_REFERENCE.match(base):
        raise UsageError("--from %r is not an image reference" % (base,),
                         "give a name such as debian:bookworm-slim or registry/ukrun:1")
    args, run_options = _exec_words(args, "argument"), _exec_words(run_options, "run option")
    for option in run_options:
        if not option.startswith("-"):
            raise UsageError("run option %r is not an option" % option,
                             "write ukrun's own options, e.g. --mem=64")
    if not os.path.exists(context):
        raise NotFoundError("build context %s not found" % context)
    if not os.path.isdir(context):
        raise UsageError("build context %s is not a directory" % context)

    copies = []  # (source in the context, path in the image)
    if spec.tender_file is None:
        if tender is not None:
            raise UsageError("--tender is for hvt, spt and ukvm, not %s" % target)
    else:
        tender = os.path.join(context, spec.tender_file) if tender is None else tender
        _check_executable(tender, "tender", context)
        if base is None:
            _require_static(tender)
        copies.append((_copy_source(tender, "tender", context), spec.tender_in_image))
    if target == "unix":
        _check_executable(unikernel, "unikernel", context)
        if base is None:
            _require_musl_or_static(unikernel)
    else:
        _check_exists(unikernel, "unikernel", context)
    unikernel_in_image = IMAGE_DIR + "/" + _copy_name(os.path.basename(unikernel), "unikernel")
    if unikernel_in_image == spec.tender_in_image:
        raise UsageError("unikernel %s would overwrite the tender at %s in the image"
                         % (unikernel, unikernel_in_image), "rename the unikernel")
    copies.append((_copy_source(unikernel, "unikernel", context), unikernel_in_image))

    entrypoint = ["ukrun", target] + run_options
    if spec.tender_option:
        entrypoint += ["--tender", spec.tender_in_image]
    entrypoint.append(unikernel_in_image)

    needed = [source for source, _ in copies]
    if base is None:
        if sdist is None:
            sdist = os.path.join(context, "ukrun-%s.tar.gz" % __version__)
        sdist_source = _sdist_source(sdist, context)
        needed.append(sdist_source + " (ukrun's source distribution)")
        lines = _header(target, unikernel, needed, base)
        lines += _alpine_stages(sdist_source, spec.packages)
    else:
        lines = _header(target, unikernel, needed, base) + ["FROM " + base]
    lines += ["COPY " + _json([source, destination]) for source, destination in copies]
    lines += [
        "# Exec form, no shell: ukrun is PID 1 and execs the tender (or the unikernel), so",
        "# the SIGTERM of `docker stop` reaches it.",
        "ENTRYPOINT " + _json(entrypoint),
        "# The unikernel's arguments: `docker run IMAGE ARG...` replaces them.",
        "CMD " + _json(args),
    ]
    return "\n".join(lines) + "\n"


def _header(target, unikernel, needed, base):
    name = os.path.basename(unikernel)
    lines = [
        "# Dockerfile for the %s unikernel %s, written by ukrun %s (ukrun dockerfile)."
        % (target, name, __version__),
        "# Build it from the build context (the directory given to docker build) holding",
    ] + ["#     " + source for source in needed] + [
        "# as in: docker build -t IMAGE -f Dockerfile .",
    ]
    if base is None:
        lines.append("# (--build-arg ALPINE_VERSION=X.Y picks another Alpine release.)")
    else:
        lines.append("# %s must provide ukrun on PATH%s." % (
            base, " and qemu-system-x86_64" if TARGETS[target].packages else ""))
    return lines + [
        "# Run it with the flags this host needs:",
        "#     docker run --rm $(ukrun docker-args %s) IMAGE [ARG...]" % target,
        "",
    ]


def _alpine_stages(sdist_source, packages):
    sdist_in_image = "/src/" + os.path.basename(sdist_source)
    return [
        "ARG ALPINE_VERSION=" + ALPINE_VERSION,
        "",
        "# Stage 1: compile ukrun's wheel against musl and install it in a virtual environment.",
        "FROM alpine:${ALPINE_VERSION} AS ukrun-build",
        "RUN apk add --no-cache " + " ".join(BUILDER_PACKAGES),
        "COPY " + _json([sdist_source, sdist_in_image]),
        "RUN python3 -m venv %s \\" % VENV,
        "    && %s/bin/pip wheel --no-cache-dir --wheel-dir /wheels %s \\" % (VENV, sdist_in_image),
        "    && %s/bin/pip install --no-cache-dir --no-index --find-links /wheels ukrun" % VENV,
        "",
        "# Stage 2: the same Alpine (so the same python3) with ukrun and the unikernel.",
        "FROM alpine:${ALPINE_VERSION}",
        "RUN apk add --no-cache " + " ".join(("python3",) + tuple(packages)),
        "COPY --from=ukrun-build %s %s" % (VENV, VENV),
        'ENV PATH="%s/bin:${PATH}"' % VENV,
    ]


def _json(words):
    # JSON is what Docker's exec form and COPY's array form parse; anything else silently
    # falls back to a shell form.
    return json.dumps(list(words))


def _exec_words(words, what):
    if isinstance(words, (str, bytes)):
        raise TypeError("%ss must be a sequence of strings, not one string" % what)
    words = list(words)
    for word in words:
        if not isinstance(word, str):
            raise TypeError("%s %r is not a string" % (what, word))
        if "\0" in word:
            raise UsageError("%s %r contains a NUL byte, which execve cannot pass" % (what, word))
    return words


def _copy_name(name, role):
    if _COPY_UNSAFE.search(name):
        raise UsageError("%s path %r cannot be written in a COPY instruction" % (role, name),
                         "Docker reads $ as a variable, \\ as an escape and *?[ as a pattern: "
                         "rename the file")
    return name


def _copy_source(path, role, context):
    """PATH relative to the build context, which is all COPY can see."""
    context_real = os.path.realpath(context)
    real = os.path.realpath(path)
    if os.path.commonpath([context_real, real]) != context_real:
        raise UsageError("%s %s is outside the build context %s" % (role, path, context),
                         "COPY only sees the build context, and symbolic links are resolved "
                         "first: copy the file into %s" % context)
    return _copy_name(os.path.relpath(real, context_real), role)


def _check_exists(path, role, context, hint=None):
    if not os.path.exists(path):
        raise NotFoundError("%s %s not found" % (role, path), hint or (
            "the Dockerfile COPYs it from the build context %s: run ukrun dockerfile "
            "there, or give --context DIR" % context))
    if not os.path.isfile(path):
        raise UsageError("%s %s is not a regular file" % (role, path))


def _check_executable(path, role, context):
    hint = None
    if role == "tender":
        hint = ("copy the tender into the build context %s, e.g. cp \"$(command -v %s)\" %s, "
                "or give --tender PATH before UNIKERNEL"
                % (context, os.path.basename(path), context))
    _check_exists(path, role, context, hint)
    # COPY keeps the mode bits from the context, so the file must be executable here already.
    if not os.stat(path).st_mode & 0o111:
        raise NotExecutableError("%s %s is not executable" % (role, path),
                                 "chmod +x %s before building the image" % path)


def _sdist_source(sdist, context):
    _check_exists(sdist, "ukrun source distribution", context,
                  "the Alpine image builds ukrun from it: run `python3 setup.py sdist` in a "
                  "ukrun %s checkout and copy dist/%s into the build context %s, give --sdist "
                  "PATH, or use --from IMAGE with ukrun installed"
                  % (__version__, os.path.basename(sdist), context))
    if not _SDIST_NAME.match(os.path.basename(sdist)):
        raise UsageError("%s is not named like ukrun's source distribution" % sdist,
                         "pip needs the name ukrun-VERSION.tar.gz")
    return _copy_source(sdist, "ukrun source distribution", context)


def _read_elf(path, role):
    try:
        return elf.read_elf(path)
    except elf.ElfError as e:
        raise UsageError("%s %s is not an ELF executable: %s" % (role, path, e),
                         "give the binary itself, not a script or wrapper, or use --from "
                         "IMAGE, which skips this check") from None


def _require_static(tender):
    """An Alpine image has musl and nothing else: only a tender needing no loader surely runs."""
    info = _read_elf(tender, "tender")
    if not info.static:
        raise UsageError(
            "tender %s is %s; the Alpine image needs a statically linked tender"
            % (tender, info.describe()),
            "use a statically linked tender, such as Solo5's relinked with -static, or --from "
            "a base image with ukrun installed and the C library the tender was built for, "
            "such as one built FROM debian:bookworm-slim")
    return info


def _require_musl_or_static(unikernel):
    """A unix unikernel built on Alpine links musl dynamically, as the old runner's did."""
    info = _read_elf(unikernel, "unikernel")
    loader = info.interpreter
    if loader is not None and not os.path.basename(loader).startswith("ld-musl-"):
        raise UsageError(
            "unikernel %s is %s, which the Alpine (musl) image does not have"
            % (unikernel, info.describe()),
            "build it on Alpine or statically, or --from a base image with ukrun installed "
            "and its C library, such as one built FROM debian:bookworm-slim")
    return info


def _probe_device(path, hint_missing):
    """Open PATH read-write, as the tender or ukrun will: existing is not enough."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            hint = "run as root or as a member of the group that owns %s" % path
        else:  # ENOENT, or ENXIO/ENODEV: a device node without its driver
            hint = hint_missing
        raise PrivilegeError("%s is not usable: %s" % (path, e.strerror), hint) from None
    os.close(fd)


def docker_args(target) -> list:
    """The ``docker run`` flags a TARGET container needs on this host, after probing it.

    Raises PrivilegeError when /dev/net/tun, or /dev/kvm for hvt, ukvm and kvm, cannot be opened.
    """
    spec = _target(target)
    _probe_device(TUN_DEVICE, "load the tun module: modprobe tun")
    flags = ["--cap-add=NET_ADMIN", "--device=%s:%s" % (TUN_DEVICE, TUN_DEVICE)]
    if spec.needs_kvm:
        _probe_device(KVM_DEVICE, "the %s target needs KVM: load kvm_intel or kvm_amd, enable "
                      "virtualisation, or use the %s target" % (
                          target, "qemu" if target == "kvm" else "spt or qemu"))
        flags.append("--device=%s:%s" % (KVM_DEVICE, KVM_DEVICE))
    return flags


# ---- the two subcommands; cli.get_parser() calls add_subcommands ----

_DOCKERFILE_OPTIONS = ("--tender", "--from", "--context", "--sdist", "--run-option")


def _dockerfile_command(ns) -> int:
    words = list(ns.args)
    if words[:1] == ["--"]:  # argparse keeps or drops it depending on what came before
        del words[0]
    for word in words:
        # Everything after UNIKERNEL is the unikernel's, as in `ukrun TARGET`; an option of
        # ours there is a misplaced option, not an argument anyone meant to bake into CMD.
        if word.split("=", 1)[0] in _DOCKERFILE_OPTIONS:
            raise UsageError(
                "%s comes after UNIKERNEL, where it would be an argument of the unikernel"
                % word, "put ukrun dockerfile's options before UNIKERNEL; a unikernel that "
                "really takes it can get it from docker run IMAGE ARG...")
    sys.stdout.write(dockerfile(ns.target, ns.unikernel, tender=ns.tender, base=ns.base,
                                args=words, context=ns.context, sdist=ns.sdist,
                                run_options=ns.run_option))
    return 0


def _docker_args_command(ns) -> int:
    for flag in docker_args(ns.target):
        print(flag)
    print(ARP_NOTE, file=sys.stderr)
    return 0


def add_subcommands(subparsers):
    """Add ``dockerfile`` and ``docker-args`` to an argparse subparsers object.

    Each sets ``func(namespace) -> int``; failures raise ukrun.errors.UkrunError for the CLI.
    """
    import argparse

    p = subparsers.add_parser(
        "dockerfile", help="print a Dockerfile that runs a unikernel under ukrun",
        allow_abbrev=False, description=(
            "Print a Dockerfile whose entrypoint is `ukrun TARGET /unikernel/NAME` in exec form. "
            "By default it is a two-stage Alpine build: the build context (--context) must hold "
            "UNIKERNEL, the tender (hvt, spt, ukvm; statically linked, which is checked) and "
            "ukrun's source distribution ukrun-%s.tar.gz. In the image the unikernel is "
            "/unikernel/NAME and the tender /unikernel/solo5-hvt, /unikernel/solo5-spt or "
            "/unikernel/ukvm. As with `ukrun TARGET`, every word after UNIKERNEL is the "
            "unikernel's: they become the image's CMD, which `docker run IMAGE ARG...` "
            "replaces." % __version__))
    p.add_argument("target", metavar="TARGET", choices=list(TARGETS),
                   help="the target to run: %s" % ", ".join(TARGETS))
    p.add_argument("--tender", metavar="PATH",
                   help="the tender to copy into the image (hvt, spt, ukvm; default: "
                   "solo5-hvt, solo5-spt or ukvm-bin in the build context)")
    p.add_argument("--from", dest="base", metavar="IMAGE",
                   help="build on IMAGE, which already has ukrun installed (one stage, no "
                   "static-tender check) (default: a two-stage Alpine build)")
    p.add_argument("--context", metavar="DIR", default=".",
                   help="the directory docker build will be given; every file must be inside "
                   "it (default: the current directory)")
    p.add_argument("--sdist", metavar="PATH",
                   help="ukrun's source distribution in the build context (default: "
                   "ukrun-%s.tar.gz)" % __version__)
    p.add_argument("--run-option", metavar="OPTION", action="append", default=[],
                   help="an option for ukrun TARGET in the entrypoint, e.g. "
                   "--run-option=--mem=64 (repeatable; default: none)")
    p.add_argument("unikernel", metavar="UNIKERNEL",
                   help="the unikernel, inside the build context; options go before it")
    p.add_argument("args", metavar="ARG", nargs=argparse.REMAINDER,
                   help="the unikernel's default arguments (`--` may come first; default: none)")
    p.set_defaults(func=_dockerfile_command)

    p = subparsers.add_parser(
        "docker-args", help="print the docker run flags a unikernel container needs here",
        allow_abbrev=False, description=(
            "Print, one per line, the docker run flags a TARGET container needs on this host: "
            "--cap-add=NET_ADMIN, --device for /dev/net/tun and, for hvt, ukvm and kvm, "
            "/dev/kvm. Each device is opened read-write first; an unusable one is an error "
            "(exit status 77). Use as: docker run $(ukrun docker-args hvt) IMAGE. Since ukrun "
            "gives the unikernel the container's MAC, the Docker bridge needs no arp_accept."))
    p.add_argument("target", metavar="TARGET", choices=list(TARGETS),
                   help="the target the container runs: %s" % ", ".join(TARGETS))
    p.set_defaults(func=_docker_args_command)
