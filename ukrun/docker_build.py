"""The Dockerfile of a unikernel container: ``dockerfile()`` writes the text ``docker build`` reads.

What the old runner's docker-mirage.sh did, without needing Docker: every file the text names
is checked first, so the build cannot fail on a missing or unusable file. What an image holds
for a target (where its tender goes, what its packages provide) is ukrun.docker's, which also
gives the ``docker run`` flags the container needs.

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

Either way the image's ``ukrun`` starts without ``site`` (1-3 ms of every start): pip writes the
command's "#!python -S" as "#!" + its interpreter and drops the -S (pip issue 10661), so a shell
step right after the install (on a base, its first step, on the ``ukrun`` found on PATH) gives
it back. It is a no-op where the flag is there. In ukrun's own venv it stops the build, saying
why, when the first line is anything but "#!PYTHON" or "#!PYTHON -S"; on a base, whose ukrun
works either way, it stops only when there is no ukrun on PATH, and leaves a script it cannot
change (another first line, a USER that may not write it) with a note. It runs sh, sed, head,
grep and readlink, which busybox and Debian's coreutils both provide.
"""
from __future__ import annotations

import json
import os
import re

from ukrun._version import __version__
from ukrun.docker import IMAGE_DIR, listed, packaged_program, target_named, tender_in_image
from ukrun.errors import NotExecutableError, NotFoundError, UsageError
from ukrun.guest import elf
from ukrun.guest.targets import TARGETS

ALPINE_VERSION = "3.20"
BUILDER_PACKAGES = ("python3", "python3-dev", "gcc", "musl-dev", "linux-headers", "libffi-dev")
VENV = "/opt/ukrun"
# The sed pattern the interpreter in the first line of the installed ukrun must match: the
# venv's python in the Alpine image; on a --from base, any absolute path to a python.
VENV_PYTHON = VENV + "/bin/python[0-9.]*"
ANY_PYTHON = "/[^ ]*/python[0-9.]*"

# COPY expands $VARIABLES and treats \ as an escape and *?[ as a pattern, even in its JSON form.
_COPY_UNSAFE = re.compile(r"[\x00-\x1f\x7f$\\*?\[]")
_IMAGE_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
_SDIST_NAME = re.compile(r"^ukrun-[A-Za-z0-9._+-]+\.tar\.gz$")


def dockerfile(target, unikernel, tender=None, base=None, args=(), context=".", sdist=None,
               run_options=()) -> str:
    """The Dockerfile text that runs ``ukrun TARGET [RUN_OPTIONS] /unikernel/NAME [ARGS]``.

    ``unikernel``, ``tender`` and ``sdist`` are paths (relative to the current directory) that
    must lie inside ``context``, the directory ``docker build`` will be given. ``args`` become
    the image's CMD, so ``docker run IMAGE ARG...`` replaces them. Raises UsageError,
    NotFoundError or NotExecutableError, naming the file and how to fix it.
    """
    spec = target_named(target)
    _check_base(base)
    args, run_options = _exec_words(args, "argument"), _run_options(run_options)
    _check_context(context)
    copies = _tender_copies(spec, tender, base, context)  # (source in the context, in the image)
    copies.append(_unikernel_copy(spec, unikernel, base, context))
    entrypoint = _entrypoint(spec, run_options, copies[-1][1])
    sources = [source for source, _ in copies]
    if base is None:
        sdist_source = _sdist_source(sdist, context)
        sources.append(sdist_source + " (ukrun's source distribution)")
        stages = _alpine_stages(sdist_source, packaged_program(spec))
    else:
        stages = ["FROM " + base] + _NO_SITE_WHY[:-1] + [
            _NO_SITE_WHY[-1] + "; where it cannot, the build goes on with a note (the image",
            "# works, only slower), and it stops if the base has no ukrun on PATH.",
            'RUN script="$(readlink -f "$(command -v ukrun)")" && [ -n "$script" ] \\',
            '    || { echo "ukrun: error: %s has no ukrun on PATH: install ukrun in it" \\' % base,
            '              "(pip install ukrun) or build without --from" >&2; exit 1; }; \\',
        ] + _no_site(ANY_PYTHON, "", strict=False)
    lines = (_header(spec, unikernel, sources, base) + stages + _copy_lines(copies)
             + _entrypoint_lines(entrypoint, args))
    return "\n".join(lines) + "\n"


def _check_base(base):
    if base is not None and not _IMAGE_REFERENCE.match(base):
        raise UsageError("--from %r is not an image reference" % (base,),
                         "give a name such as debian:bookworm-slim or registry/ukrun:1")


def _run_options(words) -> list:
    words = _exec_words(words, "run option")
    for option in words:
        if not option.startswith("-"):
            raise UsageError("run option %r is not an option" % option,
                             "write ukrun's own options, e.g. --mem=64")
    return words


def _check_context(context):
    if not os.path.exists(context):
        raise NotFoundError("build context %s not found" % context)
    if not os.path.isdir(context):
        raise UsageError("build context %s is not a directory" % context)


def _tender_copies(spec, tender, base, context) -> list:
    """[(source, path in the image)] for the target's tender: [] when it has none to copy."""
    destination = tender_in_image(spec)
    if destination is None:
        if tender is not None:
            raise UsageError("--tender is for %s, not %s" % (listed(
                (t.name for t in TARGETS.values() if tender_in_image(t)), "and"), spec.name))
        return []
    if tender is None:
        tender = os.path.join(context, spec.tender_file)
    _check_executable(tender, "tender", context)
    if base is None:
        _require_static(tender)
    return [(_copy_source(tender, "tender", context), destination)]


def _unikernel_copy(spec, unikernel, base, context) -> tuple:
    """(source, path in the image) for the unikernel, /unikernel/NAME."""
    if spec.default_tender is None:  # unix: the unikernel is the program ukrun execs
        _check_executable(unikernel, "unikernel", context)
        if base is None:
            _require_musl_or_static(unikernel)
    else:
        _check_exists(unikernel, "unikernel", context)
    destination = IMAGE_DIR + "/" + _copy_name(os.path.basename(unikernel), "unikernel")
    if destination == tender_in_image(spec):
        raise UsageError("unikernel %s would overwrite the tender at %s in the image"
                         % (unikernel, destination), "rename the unikernel")
    return _copy_source(unikernel, "unikernel", context), destination


def _entrypoint(spec, run_options, unikernel_in_image) -> list:
    """ukrun's command line in the image; --tender only where the target would look elsewhere
    (ukvm's default is already /unikernel/ukvm)."""
    words = ["ukrun", spec.name] + run_options
    tender = tender_in_image(spec)
    if tender is not None and tender != spec.default_tender:
        words += ["--tender", tender]
    return words + [unikernel_in_image]


def _header(spec, unikernel, sources, base) -> list:
    lines = [
        "# Dockerfile for the %s unikernel %s, written by ukrun %s (ukrun dockerfile)."
        % (spec.name, os.path.basename(unikernel), __version__),
        "# Build it from the build context (the directory given to docker build) holding",
    ] + ["#     " + source for source in sources] + [
        "# as in: docker build -t IMAGE -f Dockerfile .",
    ]
    if base is None:
        lines.append("# (--build-arg ALPINE_VERSION=X.Y picks another Alpine release.)")
    else:
        program = packaged_program(spec)
        lines += ["# %s must provide ukrun on PATH%s," % (
            base, " and " + program if program else ""),
            "# and sh, sed, head, grep and readlink for the first step."]
    return lines + [
        "# Run it with the flags this host needs:",
        "#     docker run --rm $(ukrun docker-args %s) IMAGE [ARG...]" % spec.name,
        "",
    ]


def _alpine_stages(sdist_source, program) -> list:
    """Build ukrun's wheel against musl, then a final stage with it and ``program``, whose
    Alpine package has its name (qemu-system-x86_64 brings its ROMs, virtio-net's
    efi-virtio.rom)."""
    sdist_in_image = "/src/" + os.path.basename(sdist_source)
    return [
        "ARG ALPINE_VERSION=" + ALPINE_VERSION,
        "",
        "# Stage 1: compile ukrun's wheel against musl and install it in a virtual environment.",
        "FROM alpine:${ALPINE_VERSION} AS ukrun-build",
        "RUN apk add --no-cache " + " ".join(BUILDER_PACKAGES),
        "COPY " + _json([sdist_source, sdist_in_image]),
    ] + _NO_SITE_WHY[:-1] + [
        _NO_SITE_WHY[-1] + ", and the build stops if that line is anything else.",
        "RUN python3 -m venv %s \\" % VENV,
        "    && %s/bin/pip wheel --no-cache-dir --wheel-dir /wheels %s \\" % (VENV, sdist_in_image),
        "    && %s/bin/pip install --no-cache-dir --no-index --find-links /wheels ukrun \\" % VENV,
        "    && script=%s/bin/ukrun \\" % VENV,
    ] + _no_site(VENV_PYTHON, "&& ") + [
        "",
        "# Stage 2: the same Alpine (so the same python3) with ukrun and the unikernel.",
        "FROM alpine:${ALPINE_VERSION}",
        "RUN apk add --no-cache python3" + (" " + program if program else ""),
        "COPY --from=ukrun-build %s %s" % (VENV, VENV),
        'ENV PATH="%s/bin:${PATH}"' % VENV,
    ]


# Why the image edits the script pip wrote (the numbers: bin/ukrun's docstring).
_NO_SITE_WHY = [
    "# pip writes ukrun's first line \"#!python -S\" as \"#!PYTHON\", without the -S (pip issue",
    "# 10661), and site would then cost every start of ukrun 1-3 ms: the sed below gives the",
    "# -S back (a no-op if it is there)",
]


# The longest first line the -S may go onto: with it, 127 bytes, what every kernel reads of a
# "#!" line (BINPRM_BUF_SIZE was 128 before Linux 5.1, 256 since); a longer one would be cut,
# and the cut line runs something else.
LONGEST_LINE_FOR_S = 127 - len(" -S")


def _no_site(python, joint, strict=True) -> list:
    """The shell lines, continuing a RUN after JOINT, that turn the first line of $script from
    "#!PYTHON" into "#!PYTHON -S" (PYTHON: a sed basic regular expression, which grep -x reads
    alike) where the kernel reads that line whole (LONGEST_LINE_FOR_S). STRICT (ukrun's own
    venv): fail with one ukrun: error: line unless the line ends up so. Otherwise (a --from
    base, whose ukrun works either way): a base that lacks ukrun on PATH stops the build, and a
    script the step cannot change (another first line, one too long, a USER that cannot write
    it) stays as it is, with one ukrun: note: line.

    sed edits only the exact line pip writes, so the flag is never doubled; the check reads the
    line again, so a script already carrying the -S passes, and anything else (env, pip's
    /bin/sh trampoline for long paths, other flags, no script) is caught."""
    indent = " " * (4 + len(joint) + 2)
    begins = "${script:-ukrun} begins '$(head -n 1 \"$script\")'"
    expected = "not #!PYTHON (at most %d bytes) or #!PYTHON -S" % LONGEST_LINE_FOR_S
    if strict:
        otherwise = [
            "%s|| { echo \"ukrun: error: %s,\" \\" % (indent, begins),
            "%s       \"%s as this step expects\" >&2; exit 1; }; }" % (indent, expected),
        ]
    else:
        otherwise = [
            "%s|| echo \"ukrun: note: %s,\" \\" % (indent, begins),
            "%s       \"%s: left as it is (it starts with site, 1-3 ms slower)\" >&2; }"
            % (indent, expected),
        ]
    return [
        "    %s{ line=\"$(head -n 1 \"$script\")\"; \\" % joint,
        "%s{ [ ${#line} -gt %d ] || sed -i '1s|^#!%s$|& -S|' \"$script\"; } \\"
        % (indent, LONGEST_LINE_FOR_S, python),
        "%s&& head -n 1 \"$script\" | grep -qx '#!%s -S' \\" % (indent, python),
    ] + otherwise


def _copy_lines(copies) -> list:
    return ["COPY " + _json([source, destination]) for source, destination in copies]


def _entrypoint_lines(entrypoint, args) -> list:
    return [
        "# Exec form, no shell: ukrun is PID 1 and execs the tender (or the unikernel), so",
        "# the SIGTERM of `docker stop` reaches it.",
        "ENTRYPOINT " + _json(entrypoint),
        "# The unikernel's arguments: `docker run IMAGE ARG...` replaces them.",
        "CMD " + _json(args),
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
    if sdist is None:
        sdist = os.path.join(context, "ukrun-%s.tar.gz" % __version__)
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
