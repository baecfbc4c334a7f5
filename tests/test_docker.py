"""ukrun.docker: each target's Dockerfile read back by a strict parser (and Docker's own, when
installed), the static-tender check on binaries built here, docker_args on this machine's real
devices (and refused ones, as a user they are refused to), and the two commands through the CLI."""
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockerfile_check import parse_dockerfile
from tree import DATA
from ukrun import cli, docker, docker_build
from ukrun.kernel import devices
from ukrun._version import __version__
from ukrun.errors import NotExecutableError, NotFoundError, PrivilegeError, UsageError
from ukrun.guest.targets import TARGETS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SDIST = "ukrun-%s.tar.gz" % __version__
# target: (the tender's default name in the build context, its path in the image)
TENDERS = {"hvt": ("solo5-hvt", "/unikernel/solo5-hvt"),
           "spt": ("solo5-spt", "/unikernel/solo5-spt"),
           "ukvm": ("ukvm-bin", "/unikernel/ukvm")}
UNIKERNEL = {"unix": "app", "hvt": "app.hvt", "spt": "app.spt", "ukvm": "app.ukvm",
             "qemu": "app.virtio", "kvm": "app.virtio"}


# ---- the strict reader (tests/support/dockerfile_check.py) ----

def instructions(parsed, name):
    return [value for word, _, value in parsed if word == name]


@pytest.mark.parametrize("bad", [
    'FROM a\nCMD ["x",]\n',  # Docker would run it through /bin/sh -c as text
    "COPY a b\nFROM a\n",
    "FROM a\nCOPY --from=nope a b\n",
    "FROM a\nFETCH x\n",
    "FROM a\nRUN a \\\n",
    "FROM a AS b\nFROM c AS b\n",
    "ARG X=1\n",
])
def test_strict_reader_rejects_what_docker_misreads(bad):
    with pytest.raises((AssertionError, ValueError)):
        parse_dockerfile(bad)


# ---- fixtures: a build context with real binaries ----

@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    d = tmp_path_factory.mktemp("bin")
    (d / "hello.c").write_text("int main(void) { return 0; }\n")
    kinds = {"static": ["-static"], "static-pie": ["-static-pie"], "dynamic": [],
             "musl-dynamic": ["-Wl,--dynamic-linker=/lib/ld-musl-x86_64.so.1"]}
    for name, flags in kinds.items():
        subprocess.run(["gcc", "-o", str(d / name), str(d / "hello.c")] + flags, check=True,
                       capture_output=True)
    return d


@pytest.fixture
def context(tmp_path, binaries, monkeypatch):
    """A build context, made the current directory: static tenders, unikernels, a sdist."""
    for tender, _ in TENDERS.values():
        shutil.copy(binaries / "static", tmp_path / tender)
    for name in set(UNIKERNEL.values()):
        (tmp_path / name).write_bytes(b"\x7fELF not really a unikernel")
    shutil.copy(binaries / "musl-dynamic", tmp_path / "app")  # a unix unikernel built on Alpine
    (tmp_path / SDIST).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---- today's output, pinned: a refactoring of ukrun.docker must not change a byte ----

GOLDEN = os.path.join(DATA, "dockerfile")
GOLDEN_ARGS = ["--ipv4-only=true", 'a "quoted" $word', "--"]


def golden_cases():
    """(file name, target, keyword arguments of docker_build.dockerfile) for each pinned output."""
    for target, unikernel in UNIKERNEL.items():
        yield "%s.Dockerfile" % target, target, dict(
            unikernel=unikernel, args=GOLDEN_ARGS, run_options=["--mem=64", "-v"])
        yield "%s-from.Dockerfile" % target, target, dict(
            unikernel=unikernel, base="debian:bookworm-slim")


@pytest.mark.parametrize("name, target, kwargs", list(golden_cases()),
                         ids=[case[0] for case in golden_cases()])
def test_output_is_pinned(context, name, target, kwargs):
    # The version is the only thing that may change: it is written as @VERSION@.
    text = docker_build.dockerfile(target, **kwargs).replace(__version__, "@VERSION@")
    if os.environ.get("UKRUN_WRITE_GOLDEN"):  # to pin a deliberate change: review the diff
        with open(os.path.join(GOLDEN, name), "w") as f:
            f.write(text)
    with open(os.path.join(GOLDEN, name)) as f:
        assert text == f.read()


# ---- each target's Dockerfile ----

@pytest.mark.parametrize("target", list(TARGETS))
def test_alpine_dockerfile(context, target):
    unikernel = UNIKERNEL[target]
    text = docker_build.dockerfile(target, unikernel, args=["--ipv4-only=true"])
    parsed = parse_dockerfile(text)

    assert parsed[0] == ("ARG", {}, "ALPINE_VERSION=" + docker_build.ALPINE_VERSION)
    assert instructions(parsed, "FROM") == ["alpine:${ALPINE_VERSION} AS ukrun-build",
                                            "alpine:${ALPINE_VERSION}"]
    runs = instructions(parsed, "RUN")
    assert runs[0] == "apk add --no-cache python3 python3-dev gcc musl-dev linux-headers libffi-dev"
    assert "pip wheel --no-cache-dir --wheel-dir /wheels /src/%s" % SDIST in runs[1]
    assert "--no-index --find-links /wheels ukrun" in runs[1]
    # In the same RUN, after the install: the venv's ukrun gets back the -S pip dropped.
    install = runs[1].index("--find-links /wheels ukrun")
    assert runs[1].index("script=/opt/ukrun/bin/ukrun") > install
    assert runs[1].index("sed -i '1s|^#!/opt/ukrun/bin/python[0-9.]*$|& -S|'") > install
    qemu = " qemu-system-x86_64" if target in ("qemu", "kvm") else ""
    assert runs[2] == "apk add --no-cache python3" + qemu

    copies = [(flags, value) for word, flags, value in parsed if word == "COPY"]
    expected = [({}, [SDIST, "/src/" + SDIST]),
                ({"--from": "ukrun-build"}, "/opt/ukrun /opt/ukrun")]
    if target in TENDERS:
        expected.append(({}, list(TENDERS[target])))
    expected.append(({}, [unikernel, "/unikernel/" + unikernel]))
    assert copies == expected
    assert instructions(parsed, "ENV") == ['PATH="/opt/ukrun/bin:${PATH}"']

    entrypoint = ["ukrun", target]
    if target in ("hvt", "spt"):
        entrypoint += ["--tender", TENDERS[target][1]]
    assert instructions(parsed, "ENTRYPOINT") == [entrypoint + ["/unikernel/" + unikernel]]
    assert instructions(parsed, "CMD") == [["--ipv4-only=true"]]
    assert parsed[-2][0] == "ENTRYPOINT" and parsed[-1][0] == "CMD"


@pytest.mark.parametrize("target", list(TARGETS))
def test_from_base_is_one_stage_without_sdist_or_static_check(context, binaries, target):
    os.remove(SDIST)
    for tender, _ in TENDERS.values():  # --from: the base's C library decides, not Alpine's
        shutil.copy(binaries / "dynamic", tender)
    shutil.copy(binaries / "dynamic", "app")
    parsed = parse_dockerfile(docker_build.dockerfile(target, UNIKERNEL[target], base="me/ukrun:1"))
    assert [word for word, _, _ in parsed] == (
        ["FROM", "RUN"] + ["COPY"] * (2 if target in TENDERS else 1) + ["ENTRYPOINT", "CMD"])
    assert instructions(parsed, "FROM") == ["me/ukrun:1"]
    # The one RUN gives the ukrun on PATH its -S (what it does: the no-site tests below).
    (step,) = instructions(parsed, "RUN")
    assert step.startswith('script="$(readlink -f "$(command -v ukrun)")" && ')
    assert "sed -i '1s|^#!%s$|& -S|'" % docker_build.ANY_PYTHON in step
    assert instructions(parsed, "CMD") == [[]]


def test_paths_in_subdirectories_and_symlinks_inside_the_context(context):
    os.makedirs("dist/bin")
    os.rename("solo5-hvt", "dist/bin/tender")
    os.symlink("bin/tender", "dist/solo5-hvt")
    os.rename(SDIST, "dist/" + SDIST)
    text = docker_build.dockerfile("hvt", "app.hvt", tender="dist/solo5-hvt", sdist="dist/" + SDIST)
    copies = instructions(parse_dockerfile(text), "COPY")
    # COPY names the real file: the symlink is resolved here, where its target is known.
    assert copies[0] == ["dist/" + SDIST, "/src/" + SDIST]
    assert copies[2] == ["dist/bin/tender", "/unikernel/solo5-hvt"]


def test_context_elsewhere(context, tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    text = docker_build.dockerfile("spt", str(context / "app.spt"), context=str(context))
    copies = instructions(parse_dockerfile(text), "COPY")
    assert copies[2:] == [["solo5-spt", "/unikernel/solo5-spt"], ["app.spt", "/unikernel/app.spt"]]


def test_exec_form_quoting_round_trips(context):
    args = ['a "quoted" word', "back\\slash", "new\nline", "ü€", "$HOME", "--", "[x]", ""]
    options = ["--mem=64", "--net-name=service0"]
    text = docker_build.dockerfile("hvt", "app.hvt", args=args, run_options=options)
    parsed = parse_dockerfile(text)
    assert instructions(parsed, "CMD") == [args]
    assert instructions(parsed, "ENTRYPOINT") == [
        ["ukrun", "hvt", "--mem=64", "--net-name=service0", "--tender", "/unikernel/solo5-hvt",
         "/unikernel/app.hvt"]]


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("base", [None, "debian:bookworm-slim"])
def test_dockers_own_parser_agrees(context, target, base):
    """The Dockerfile as BuildKit's parser (the `dockerfile` package) reads it."""
    official = pytest.importorskip("dockerfile", reason="pip install dockerfile (make venv); "
                                   "PyPI has no musllinux wheel of it")
    text = docker_build.dockerfile(target, UNIKERNEL[target], base=base, args=["-x", 'y "z"'])
    commands = official.parse_string(text)
    mine = parse_dockerfile(text)
    assert [c.cmd for c in commands] == [word for word, _, _ in mine]
    for command, (_, flags, value) in zip(commands, mine):
        if isinstance(value, list):
            assert command.json and list(command.value) == value, command
        assert command.flags == tuple("%s=%s" % f for f in flags.items())
    assert [c for c in commands if c.cmd in ("ENTRYPOINT", "CMD")][-1].value == ("-x", 'y "z"')


# ---- the installed ukrun runs without site: the step that gives it back its -S ----
# The RUN text as written, run by the shells the images have: dash (Debian's /bin/sh) and
# busybox (Alpine's sh and tools), on scripts in a temporary tree standing in for the image.

PIP_SCRIPT = "# -*- coding: utf-8 -*-\nimport sys\nfrom ukrun.cli import main\nsys.exit(main())\n"


def venv_step(text, venv):
    """The commands the Alpine stage runs after `pip install`, with VENV for /opt/ukrun."""
    (run_text,) = [v for v in instructions(parse_dockerfile(text), "RUN") if "pip install" in v]
    install = "--find-links /wheels ukrun"
    after = run_text[run_text.index(install) + len(install):]
    assert after.lstrip().startswith("&& script=%s/bin/ukrun " % docker_build.VENV), after
    return after.lstrip()[2:].replace(docker_build.VENV, venv)


def from_step(text):
    """The RUN a --from image runs first (there is one: see the test above)."""
    (run_text,) = instructions(parse_dockerfile(text), "RUN")
    return run_text


@pytest.fixture
def step_text(context):
    """{"venv": the Alpine stage's commands, "from": the --from image's RUN}, as written."""
    alpine = docker_build.dockerfile("unix", "app")
    os.remove(SDIST)
    return {"venv": alpine, "from": docker_build.dockerfile("unix", "app", base="me/ukrun:1")}


@pytest.fixture(params=["dash", "busybox"])
def shell(request, tmp_path_factory):
    """argv running a shell script: dash with the host's tools, or busybox with only its own."""
    if request.param == "dash":
        return ["/usr/bin/dash", "-c"], "/usr/bin:/bin"
    if not shutil.which("busybox"):
        pytest.skip("busybox not installed (apt-get install busybox)")
    tools = tmp_path_factory.mktemp("busybox")
    for name in ("sed", "head", "grep", "readlink", "echo"):
        os.symlink(shutil.which("busybox"), tools / name)
    return [shutil.which("busybox"), "sh", "-c"], str(tools)


def run_step(shell, text, path_dirs=()):
    argv, tools = shell
    env = {"PATH": ":".join([str(d) for d in path_dirs] + [tools]), "LC_ALL": "C"}
    return subprocess.run(argv + [text], capture_output=True, text=True, env=env, timeout=30)


def write_script(path, first_line):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(first_line + "\n" + PIP_SCRIPT)
    path.chmod(0o755)
    return path


def expect_one_error(proc, script, before):
    assert proc.returncode != 0, proc
    lines = proc.stderr.splitlines()
    assert lines[-1].startswith("ukrun: error: ") and "#!PYTHON -S" in lines[-1], proc.stderr
    if before is not None:
        assert len(lines) == 1, proc.stderr
        assert script.read_text() == before  # untouched


@pytest.mark.parametrize("python", ["bin/python3", "bin/python", "bin/python3.11"])
def test_venv_step_gives_the_s_back(step_text, shell, tmp_path, python):
    venv = tmp_path / "venv"
    script = write_script(venv / "bin" / "ukrun", "#!%s/%s" % (venv, python))
    proc = run_step(shell, venv_step(step_text["venv"], str(venv)))
    assert proc.returncode == 0 and proc.stderr == "", proc
    assert script.read_text() == "#!%s/%s -S\n%s" % (venv, python, PIP_SCRIPT)
    assert script.stat().st_mode & 0o777 == 0o755


def test_venv_step_is_a_no_op_when_the_flag_is_there(step_text, shell, tmp_path):
    venv = tmp_path / "venv"
    script = write_script(venv / "bin" / "ukrun", "#!%s/bin/python3 -S" % venv)
    before = script.read_text()
    step = venv_step(step_text["venv"], str(venv))
    for _ in range(2):  # and stays one: never "-S -S"
        proc = run_step(shell, step)
        assert proc.returncode == 0 and proc.stderr == "", proc
        assert script.read_text() == before


@pytest.mark.parametrize("first", [
    "#!/usr/bin/env python3",          # what some installers write: -S cannot follow it
    "#!/bin/sh",                       # pip's trampoline for interpreter paths too long
    "#!{venv}/bin/python3 -E",         # another flag: a shebang passes only one argument
    "#!{venv}/bin/python3 -S -S",
    "#!/usr/bin/python3",              # not the venv's python
    "#!{venv}/bin/pypy3",
    "#{venv}/bin/python3",
    "",
])
def test_venv_step_stops_the_build_on_any_other_first_line(step_text, shell, tmp_path, first):
    venv = tmp_path / "venv"
    script = write_script(venv / "bin" / "ukrun", first.format(venv=venv))
    proc = run_step(shell, venv_step(step_text["venv"], str(venv)))
    expect_one_error(proc, script, script.read_text())


def test_venv_step_stops_the_build_without_a_script(step_text, shell, tmp_path):
    proc = run_step(shell, venv_step(step_text["venv"], str(tmp_path / "venv")))
    expect_one_error(proc, None, None)


@pytest.mark.parametrize("python", ["/usr/bin/python3", "/opt/ukrun/bin/python3.12",
                                    "/usr/local/bin/python"])
def test_from_step_gives_the_s_back_to_ukrun_on_path(step_text, shell, tmp_path, python):
    bin_dir = tmp_path / "bin"
    script = write_script(bin_dir / "ukrun", "#!" + python)
    proc = run_step(shell, from_step(step_text["from"]), [tmp_path / "empty", bin_dir])
    assert proc.returncode == 0 and proc.stderr == "", proc
    assert script.read_text() == "#!%s -S\n%s" % (python, PIP_SCRIPT)
    assert script.stat().st_mode & 0o777 == 0o755
    proc = run_step(shell, from_step(step_text["from"]), [bin_dir])
    assert proc.returncode == 0 and script.read_text() == "#!%s -S\n%s" % (python, PIP_SCRIPT)


def test_from_step_edits_what_a_symlink_on_path_names(step_text, shell, tmp_path):
    """/usr/local/bin/ukrun -> /opt/ukrun/bin/ukrun: the script is edited and the link stays
    one (bin/ukrun finds its packages from where the script really lies)."""
    script = write_script(tmp_path / "venv" / "bin" / "ukrun", "#!/opt/ukrun/bin/python3")
    (tmp_path / "bin").mkdir()
    os.symlink("../venv/bin/ukrun", tmp_path / "bin" / "ukrun")
    proc = run_step(shell, from_step(step_text["from"]), [tmp_path / "bin"])
    assert proc.returncode == 0 and proc.stderr == "", proc
    assert os.readlink(tmp_path / "bin" / "ukrun") == "../venv/bin/ukrun"
    assert script.read_text().startswith("#!/opt/ukrun/bin/python3 -S\n")


def expect_one_note(proc, script, before):
    assert proc.returncode == 0, proc
    lines = proc.stderr.splitlines()
    assert lines[-1].startswith("ukrun: note: ") and "left as it is" in lines[-1], proc.stderr
    assert script.read_text() == before  # untouched


@pytest.mark.parametrize("first", ["#!/usr/bin/env python3", "#!/bin/sh", "#!python",
                                   "#!/usr/bin/python3 -E", "#!/usr/bin/python3 -S -S"])
def test_from_step_leaves_any_other_first_line_with_a_note(step_text, shell, tmp_path, first):
    # A base's ukrun works with site too: a missed millisecond must not fail its build.
    script = write_script(tmp_path / "bin" / "ukrun", first)
    before = script.read_text()
    proc = run_step(shell, from_step(step_text["from"]), [tmp_path / "bin"])
    expect_one_note(proc, script, before)
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


@pytest.fixture
def open_dir():
    """A directory every user may search (pytest's own are root's alone), removed after."""
    path = tempfile.mkdtemp(prefix="ukrun-test-")
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    shutil.rmtree(path)


def test_from_step_leaves_a_script_its_user_cannot_write_with_a_note(step_text, open_dir):
    # A base whose USER is not root: the RUN cannot edit a root-owned script.
    top = open_dir
    script = write_script(top / "bin" / "ukrun", "#!/usr/bin/python3")
    os.chmod(top / "bin", 0o755)
    before = script.read_text()
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "/usr/bin/dash", "-c", from_step(step_text["from"])]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd="/",
                          env={"PATH": "%s:/usr/bin:/bin" % (top / "bin"), "LC_ALL": "C"})
    expect_one_note(proc, script, before)


def test_from_step_stops_the_build_without_ukrun_on_path(step_text, shell, tmp_path):
    proc = run_step(shell, from_step(step_text["from"]), [tmp_path])
    assert proc.returncode != 0, proc
    (line,) = proc.stderr.splitlines()
    assert line.startswith("ukrun: error: ") and "no ukrun on PATH" in line, proc.stderr


# First lines near the ones that matter: pip's, with and without the flag, and their cousins.
_FIRST_LINE = st.tuples(
    st.sampled_from(["#!", "#", "", "#! "]),
    st.sampled_from(["/opt/ukrun/bin/", "/usr/bin/", "/", "", "/a b/", "bin/"]),
    st.sampled_from(["python", "python3", "python3.11", "pypy3", "env python3", "sh", "python-"]),
    st.sampled_from(["", " -S", " -S -S", " -E", "  -S", "-S", " -S ", " -s", "\t-S"]),
).map("".join)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.one_of(_FIRST_LINE, st.text(st.characters(
    blacklist_categories=("Cs", "Cc")), max_size=40)))
def test_from_step_either_ends_in_one_s_or_changes_nothing_with_a_note(step_text, tmp_path, first):
    """Whatever the first line, the build goes on: either the line is now
    #!/ABSOLUTE/pythonX.Y -S, the old line or it with " -S" added, or the file is untouched and
    a note says so. Nothing else changes."""
    script = write_script(tmp_path / "bin" / "ukrun", first)
    before = script.read_text()
    proc = run_step((["/usr/bin/dash", "-c"], "/usr/bin:/bin"), from_step(step_text["from"]),
                    [tmp_path / "bin"])
    after = script.read_text()
    line, _, rest = after.partition("\n")
    assert rest == PIP_SCRIPT
    assert proc.returncode == 0, proc
    if proc.stderr:
        assert after == before and proc.stderr.startswith("ukrun: note: "), proc
    else:
        assert re.fullmatch(r"#!/[^ ]*/python[0-9.]* -S", line), line
        assert line in (first, first + " -S")


# ---- the static-tender check, on binaries built here ----

@pytest.mark.parametrize("kind", ["static", "static-pie"])
def test_static_tenders_pass(context, binaries, kind):
    shutil.copy(binaries / kind, "tender")
    assert "/unikernel/solo5-hvt" in docker_build.dockerfile("hvt", "app.hvt", tender="tender")


@pytest.mark.parametrize("target", list(TENDERS))
def test_dynamic_tender_is_refused_with_a_fix(context, binaries, target):
    shutil.copy(binaries / "dynamic", "tender")
    with pytest.raises(UsageError, match=r"tender tender is dynamically linked \(loader /lib") as e:
        docker_build.dockerfile(target, UNIKERNEL[target], tender="tender")
    assert "-static" in e.value.hint and "--from" in e.value.hint
    assert e.value.exit_status == 2


def test_musl_dynamic_tender_is_refused_too(context, binaries):
    shutil.copy(binaries / "musl-dynamic", "tender")
    with pytest.raises(UsageError, match="ld-musl"):
        docker_build.dockerfile("spt", "app.spt", tender="tender")


def test_script_tender_is_refused(context):
    with open("tender", "w") as f:
        f.write("#!/bin/sh\nexec solo5-hvt \"$@\"\n")
    os.chmod("tender", 0o755)
    with pytest.raises(UsageError, match="not an ELF executable: not an ELF file"):
        docker_build.dockerfile("hvt", "app.hvt", tender="tender")


@pytest.mark.parametrize("kind", ["static", "musl-dynamic"])
def test_unix_unikernel_static_or_musl_passes(context, binaries, kind):
    shutil.copy(binaries / kind, "app")
    assert '"/unikernel/app"]' in docker_build.dockerfile("unix", "app")


def test_unix_unikernel_linked_to_glibc_is_refused(context, binaries):
    shutil.copy(binaries / "dynamic", "app")
    with pytest.raises(UsageError, match="dynamically linked .* Alpine .musl. image") as e:
        docker_build.dockerfile("unix", "app")
    assert "--from" in e.value.hint


# ---- every other validation branch ----

def test_unknown_target(context):
    with pytest.raises(UsageError, match="unknown target 'xen'"):
        docker_build.dockerfile("xen", "app.hvt")


def test_missing_unikernel(context):
    with pytest.raises(NotFoundError, match="unikernel nope.hvt not found") as e:
        docker_build.dockerfile("hvt", "nope.hvt")
    assert "build context" in e.value.hint and e.value.exit_status == 127


def test_unikernel_is_a_directory(context):
    os.mkdir("dir.hvt")
    with pytest.raises(UsageError, match="not a regular file"):
        docker_build.dockerfile("hvt", "dir.hvt")


def test_missing_default_tender(context):
    os.remove("solo5-hvt")
    with pytest.raises(NotFoundError, match="tender ./solo5-hvt not found") as e:
        docker_build.dockerfile("hvt", "app.hvt")
    assert "command -v solo5-hvt" in e.value.hint and "--tender PATH" in e.value.hint


def test_tender_not_executable(context):
    os.chmod("solo5-spt", 0o644)
    with pytest.raises(NotExecutableError, match="tender ./solo5-spt is not executable"):
        docker_build.dockerfile("spt", "app.spt")


def test_unix_unikernel_not_executable(context):
    os.chmod("app", 0o644)
    with pytest.raises(NotExecutableError, match="unikernel app is not executable"):
        docker_build.dockerfile("unix", "app")


@pytest.mark.parametrize("target", ["unix", "qemu", "kvm"])
def test_tender_for_a_target_without_one(context, target):
    with pytest.raises(UsageError, match="--tender is for hvt, spt and ukvm"):
        docker_build.dockerfile(target, UNIKERNEL[target], tender="solo5-hvt")


def test_file_outside_the_context(context, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "far.hvt"
    outside.write_bytes(b"x")
    with pytest.raises(UsageError, match="outside the build context"):
        docker_build.dockerfile("hvt", str(outside))


def test_symlink_leading_outside_the_context(context, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "far.hvt"
    outside.write_bytes(b"x")
    os.symlink(str(outside), "near.hvt")
    with pytest.raises(UsageError, match="outside the build context") as e:
        docker_build.dockerfile("hvt", "near.hvt")
    assert "symbolic links" in e.value.hint


@pytest.mark.parametrize("name", ["a$HOME.hvt", "a*.hvt", "a[1].hvt", "a\\b.hvt", "a\nb.hvt"])
def test_names_copy_would_misread(context, name):
    with open(name, "wb") as f:
        f.write(b"x")
    with pytest.raises(UsageError, match="cannot be written in a COPY instruction"):
        docker_build.dockerfile("hvt", name)


def test_unikernel_named_like_the_tender_in_the_image(context):
    os.mkdir("sub")
    shutil.copy("app.ukvm", "sub/ukvm")
    with pytest.raises(UsageError, match="would overwrite the tender at /unikernel/ukvm"):
        docker_build.dockerfile("ukvm", "sub/ukvm")


def test_bad_base_image(context):
    with pytest.raises(UsageError, match="is not an image reference"):
        docker_build.dockerfile("hvt", "app.hvt", base="debian\nRUN rm -rf /")


def test_missing_sdist(context):
    os.remove(SDIST)
    with pytest.raises(NotFoundError, match="source distribution ./%s not found" % SDIST) as e:
        docker_build.dockerfile("hvt", "app.hvt")
    assert "setup.py sdist" in e.value.hint and "--from" in e.value.hint


def test_sdist_with_another_name(context):
    os.rename(SDIST, "ukrun.tgz")
    with pytest.raises(UsageError, match="not named like ukrun's source distribution"):
        docker_build.dockerfile("hvt", "app.hvt", sdist="ukrun.tgz")


def test_missing_context(context):
    with pytest.raises(NotFoundError, match="build context nowhere not found"):
        docker_build.dockerfile("hvt", "app.hvt", context="nowhere")


def test_context_is_a_file(context):
    with pytest.raises(UsageError, match="build context app.hvt is not a directory"):
        docker_build.dockerfile("hvt", "app.hvt", context="app.hvt")


def test_run_option_that_is_not_an_option(context):
    with pytest.raises(UsageError, match="run option 'mem' is not an option"):
        docker_build.dockerfile("hvt", "app.hvt", run_options=["mem"])


def test_nul_in_an_argument(context):
    with pytest.raises(UsageError, match="NUL byte"):
        docker_build.dockerfile("hvt", "app.hvt", args=["a\0b"])


def test_args_given_as_one_string(context):
    with pytest.raises(TypeError, match="not one string"):
        docker_build.dockerfile("hvt", "app.hvt", args="--ipv4-only=true")


def test_args_that_are_not_strings(context):
    with pytest.raises(TypeError, match="argument 1 is not a string"):
        docker_build.dockerfile("hvt", "app.hvt", args=[1])


# ---- the source distribution the Alpine stage builds from ----

def test_sdist_carries_what_the_wheel_build_reads(tmp_path):
    """`setup.py sdist` in a copy of this tree, then `pip wheel` from it, as the builder does."""
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.so", ".pytest_cache",
        ".hypothesis", "tests"))
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")],
                   cwd=tree, check=True, capture_output=True)
    sdist = tmp_path / "dist" / SDIST
    # No build isolation: the venv has setuptools, wheel and cffi, and the network may not.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path / "wheels"), str(sdist)],
                   check=True, capture_output=True, timeout=300)
    wheels = os.listdir(tmp_path / "wheels")
    assert len(wheels) == 1 and re.match(r"ukrun-%s-.*\.whl$" % re.escape(__version__), wheels[0])
    names = zipfile.ZipFile(tmp_path / "wheels" / wheels[0]).namelist()
    assert any(re.match(r"ukrun/_core\..*so$", n) for n in names), names
    # Every subpackage ships (setup.py lists them).
    for module in ("ukrun/docker.py", "ukrun/kernel/mac.py", "ukrun/network/record.py",
                   "ukrun/guest/elf.py", "ukrun/guest/targets/__init__.py",
                   "ukrun/guest/formats/__init__.py"):
        assert module in names, names


# ---- docker_args on this machine ----

def usable(path):
    """Probe a device the way the tender will use it, independently of ukrun.docker."""
    try:
        with open(path, "r+b", buffering=0):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("target", list(TARGETS))
def test_docker_args_on_this_machine(target):
    needs_kvm = target in ("hvt", "ukvm", "kvm")
    if not usable("/dev/net/tun") or (needs_kvm and not usable("/dev/kvm")):
        with pytest.raises(PrivilegeError):
            docker.docker_args(target)
        return
    expected = ["--cap-add=NET_ADMIN", "--device=/dev/net/tun:/dev/net/tun"]
    if needs_kvm:
        expected.append("--device=/dev/kvm:/dev/kvm")
    assert docker.docker_args(target) == expected


def test_docker_args_without_kvm(monkeypatch, tmp_path):
    monkeypatch.setattr(devices, "KVM_DEVICE", str(tmp_path / "kvm"))
    with pytest.raises(PrivilegeError, match="kvm is not usable: No such file") as e:
        docker.docker_args("hvt")
    assert "spt or qemu target" in e.value.hint and e.value.exit_status == 77
    with pytest.raises(PrivilegeError) as e:
        docker.docker_args("kvm")
    assert "use the qemu target" in e.value.hint
    if usable("/dev/net/tun"):
        assert docker.docker_args("spt") == ["--cap-add=NET_ADMIN",
                                             "--device=/dev/net/tun:/dev/net/tun"]


def test_docker_args_without_tun(monkeypatch, tmp_path):
    monkeypatch.setattr(devices, "TUN_DEVICE", str(tmp_path / "tun"))
    with pytest.raises(PrivilegeError, match="tun is not usable") as e:
        docker.docker_args("unix")
    assert "modprobe tun" in e.value.hint


def test_docker_args_file_that_is_no_device(monkeypatch, tmp_path):
    # It opens read-write, but a tender's ioctls on it would fail: the probe is preflight's.
    (tmp_path / "kvm").write_bytes(b"")
    monkeypatch.setattr(devices, "KVM_DEVICE", str(tmp_path / "kvm"))
    monkeypatch.setattr(devices, "TUN_DEVICE", "/dev/null")
    with pytest.raises(PrivilegeError, match="kvm is not usable: not a character device"):
        docker.docker_args("ukvm")
    assert docker.docker_args("qemu")[1] == "--device=/dev/null:/dev/null"


def as_nobody(*argv):
    """Run ``argv`` as uid/gid 65534 with no groups: devices owned by root mode 0600 refuse it."""
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
                          + list(argv), capture_output=True, text=True, cwd="/")


@pytest.mark.parametrize("device", ["/dev/net/tun", "/dev/kvm"])
def test_docker_args_device_permission_denied(device):
    if not os.path.exists(device) or os.stat(device).st_mode & 0o006:
        pytest.skip("%s is missing or open to everyone here: no user is refused it" % device)
    code = ("from ukrun import docker, errors\nfrom ukrun.kernel import devices\n"
            "devices.TUN_DEVICE = %r\n"  # the other device usable, to reach the one tested
            "try:\n    docker.docker_args('ukvm')\n"
            "except errors.PrivilegeError as e:\n    print(e.exit_status, e)\n"
            % ("/dev/null" if device == "/dev/kvm" else device))
    proc = as_nobody(sys.executable, "-c", code)
    assert proc.stdout == ("77 %s is not usable: Permission denied (run as root or as a member "
                           "of the group that owns %s)\n" % (device, device)), proc.stderr


def test_docker_args_unknown_target():
    with pytest.raises(UsageError, match="unknown target"):
        docker.docker_args("xen")


# ---- the library's face: what the CLI does, import ukrun does ----

def test_public_functions_are_the_modules():
    import ukrun

    assert ukrun.dockerfile is docker_build.dockerfile and ukrun.docker_args is docker.docker_args


def test_the_tables_are_ukrun_targets():
    """What an image holds for a target is derived from ukrun.guest.targets, not kept beside it."""
    assert {name: docker.tender_in_image(t) for name, t in TARGETS.items()} == {
        name: TENDERS[name][1] if name in TENDERS else None for name in TARGETS}
    assert {name: docker.packaged_program(t) for name, t in TARGETS.items()} == {
        "unix": None, "hvt": None, "spt": None, "ukvm": None,
        "qemu": "qemu-system-x86_64", "kvm": "qemu-system-x86_64"}


@pytest.mark.parametrize("words, text", [
    ([], ""), (["a"], "a"), (["a", "b"], "a or b"), (["a", "b", "c"], "a, b or c")])
def test_listed(words, text):
    assert docker.listed(iter(words), "or") == text


# ---- the two commands, through the CLI ----

def ukrun_main(argv, capsys):
    status = cli.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_dockerfile_command_prints_the_dockerfile(context, capsys):
    argv = ["dockerfile", "hvt", "--run-option=--mem=64", "--tender", "solo5-hvt", "app.hvt",
            "--ipv4-only=true", "-v"]
    assert ukrun_main(argv, capsys) == (0, docker_build.dockerfile(
        "hvt", "app.hvt", tender="solo5-hvt", args=["--ipv4-only=true", "-v"],
        run_options=["--mem=64"]), "")


def test_dockerfile_command_double_dash(context, capsys):
    status, out, _ = ukrun_main(["dockerfile", "--from", "me/ukrun", "qemu", "app.virtio", "--",
                                 "--ipv4-only=true", "-h"], capsys)
    assert status == 0
    assert instructions(parse_dockerfile(out), "CMD") == [["--ipv4-only=true", "-h"]]


@pytest.mark.parametrize("misplaced", ["--tender=x", "--from", "--context", "--sdist=y",
                                       "--run-option"])
def test_dockerfile_command_refuses_options_after_unikernel(context, capsys, misplaced):
    status, out, err = ukrun_main(["dockerfile", "hvt", "app.hvt", "--", misplaced], capsys)
    assert (status, out) == (2, "")
    assert err.startswith("ukrun: error: %s comes after UNIKERNEL" % misplaced)


def test_dockerfile_command_error_is_one_line(context, capsys):
    status, out, err = ukrun_main(["dockerfile", "unix", "--tender", "solo5-hvt", "app"], capsys)
    assert (status, out) == (2, "")
    assert err == "ukrun: error: --tender is for hvt, spt and ukvm, not unix\n"


def test_dockerfile_command_unknown_target(capsys):
    status, _, err = ukrun_main(["dockerfile", "xen", "app"], capsys)
    assert status == 2 and "invalid choice: 'xen'" in err


def test_docker_args_command(capsys):
    if not usable("/dev/net/tun"):
        pytest.skip("/dev/net/tun is not usable here (covered by test_docker_args_on_this_machine)")
    status, out, err = ukrun_main(["docker-args", "spt"], capsys)
    assert status == 0
    assert out == "--cap-add=NET_ADMIN\n--device=/dev/net/tun:/dev/net/tun\n"
    assert err == docker.ARP_NOTE + "\n"
    assert "arp_accept" in err and "MAC" in err and "no longer applies" in err


def test_docker_args_command_refused_device():
    if not os.path.exists("/dev/net/tun") or os.stat("/dev/net/tun").st_mode & 0o006:
        pytest.skip("/dev/net/tun is missing or open to everyone here: no user is refused it")
    proc = as_nobody(sys.executable, "-m", "ukrun", "docker-args", "spt")
    assert (proc.returncode, proc.stdout) == (77, "")
    assert proc.stderr.startswith("ukrun: error: /dev/net/tun is not usable: Permission denied")
