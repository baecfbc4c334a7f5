"""The installed ``ukrun`` command (bin/ukrun) finds ukrun in every supported install: a plain
venv, ``pip install --user``, a system install in /usr/local (Debian's Python and pip) and the
editable install ``make build`` makes.

Started without site (``PYTHON -S SCRIPT``, what its ``#!python -S`` line asks for), the script
finds ukrun's directory from its own place, and site is never imported; where that does not
hold, site runs and the command works as a console script would. pip writes the interpreter
line as "#!" + its interpreter and drops the flag (pip issue 10661), so each install is run
both ways: as pip wrote it, and as the kernel runs it when the flag is kept. PYTHONVERBOSE says
what was imported and from which file, so the script needs no hook for the tests.
"""
import collections
import importlib.machinery
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import types
import zipfile

import pytest

import ukrun
from pythons import claimed_pythons, interpreter
from wheelutil import ROOT, build_wheel, venv_install

SCRIPT = os.path.join(ROOT, "bin", "ukrun")
PY = "python%d.%d" % sys.version_info[:2]
VERSION_LINE = "ukrun " + ukrun.__version__
# The interpreter the development venv was made from: a --user install needs one outside a venv.
BASE_PYTHON = os.path.join(sys.base_prefix, "bin", PY)
# The distribution's interpreter, whose site knows /usr/local/lib/pythonX.Y/dist-packages.
SYSTEM_PYTHON = "/usr/bin/python3"
EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
# What would change where Python looks for modules, if the caller's environment had it.
PATH_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONNOUSERSITE",
                  "PYTHONSAFEPATH", "PYTHONSTARTUP", "PYTHONVERBOSE", "PYTHONPROFILEIMPORTTIME")

# python: the interpreter pip installed with; script and packages: the installed script and
# ukrun's directory as seen inside the layout; file: the script on this machine's file system;
# wrap: the argv prefix that makes the layout (the system one's bind mount); env: its variables.
Install = collections.namedtuple("Install", "python script packages file wrap env")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in PATH_VARIABLES}
    env.update(extra)
    return env


def pip_install(python, wheel, *options, env):
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    *options, wheel], check=True, capture_output=True, env=env, timeout=300)


def venv_layout(wheel, tmp):
    venv = os.path.join(tmp, "venv")
    python = venv_install(wheel, venv)
    script = os.path.join(venv, "bin", "ukrun")
    return Install(python, script, os.path.join(venv, "lib", PY, "site-packages"), script, [],
                   clean_env())


def user_layout(wheel, tmp):
    home = os.path.join(tmp, "home")
    os.mkdir(home)
    env = clean_env(HOME=home)
    pip_install(BASE_PYTHON, wheel, "--user", env=env)
    base = os.path.join(home, ".local")
    script = os.path.join(base, "bin", "ukrun")
    return Install(BASE_PYTHON, script, os.path.join(base, "lib", PY, "site-packages"), script,
                   [], env)


def system_layout(wheel, tmp):
    """pip as root installs into /usr/local; --root puts that tree under TMP, and a bind mount
    over /usr/local, in a mount namespace of the test's own, puts it back where it belongs."""
    # The wheel's extension is built for this run's interpreter and C library (EXT_SUFFIX
    # names both): Debian's interpreter is glibc's, so a run on musl has no system one.
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import sys, sysconfig, pip; print('%d.%d' % "
                            "sys.version_info[:2], sysconfig.get_config_var('EXT_SUFFIX'))"],
                           capture_output=True, text=True)
    if probe.returncode != 0 or probe.stdout.split() != [PY[len("python"):], EXT_SUFFIX]:
        pytest.skip("no %s of Python %s with pip that loads this run's extensions (%s) on "
                    "this machine" % (SYSTEM_PYTHON, PY[len("python"):], EXT_SUFFIX))
    root = os.path.join(tmp, "root")
    pip_install(SYSTEM_PYTHON, wheel, "--root", root, env=clean_env())
    local = os.path.join(root, "usr", "local")
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /usr/local && exec "$@"', local]
    return Install(SYSTEM_PYTHON, "/usr/local/bin/ukrun",
                   "/usr/local/lib/%s/dist-packages" % PY,
                   os.path.join(local, "bin", "ukrun"), wrap, clean_env())


LAYOUTS = {"venv": venv_layout, "user": user_layout, "system": system_layout}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return build_wheel(str(tmp_path_factory.mktemp("wheel")))


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def install(request, wheel, tmp_path_factory):
    return LAYOUTS[request.param](wheel, str(tmp_path_factory.mktemp(request.param)))


def run_in(container, install, argv, **env):
    """ARGV inside CONTAINER and INSTALL's layout, from the source tree (whose ukrun/ must not
    be the one imported), printing every import and the file it came from."""
    return container.exec(*install.wrap, *argv, check=False, cwd=ROOT,
                          env=dict(install.env, PYTHONVERBOSE="1", **env))


def imports(stderr):
    """(whether site was imported, [every file a module was loaded from]) from PYTHONVERBOSE."""
    files = re.findall(r"^# (?:code object|extension module '[\w.]+' loaded) from '?([^'\n]+)",
                       stderr, re.M)
    return bool(re.search(r"^import 'site' #", stderr, re.M)), files


def ukrun_files(files):
    return [f for f in files if "/ukrun/" in f]


def first_line(path):
    with open(path) as f:
        return f.readline().rstrip("\n")


# --- the wheel ----------------------------------------------------------------------------------

def test_the_wheel_carries_the_script_for_the_installer_to_point_at_its_python(wheel):
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".data/scripts/ukrun")]
        mode = z.getinfo(name).external_attr >> 16
        text = z.read(name).decode()
        entry_points = "".join(z.read(n).decode() for n in z.namelist()
                               if n.endswith(".dist-info/entry_points.txt"))
    assert text.splitlines()[0] == "#!python -S"  # PEP 427's placeholder, and the one flag
    assert mode & 0o111
    # No console script beside it under the same name (ukrun-cni is one, of another name).
    assert not re.search(r"^ukrun\s*=", entry_points, re.M), entry_points


# --- every install -------------------------------------------------------------------------------

def test_pip_points_the_script_at_the_interpreter_it_installed_with(install):
    # pip 26.3 and Debian's 23.0.1 alike write "#!" + interpreter and drop the rest of the line.
    assert first_line(install.file) in ("#!" + install.python, "#!%s -S" % install.python)


def test_without_site_the_script_runs_the_installed_ukrun(install, container):
    proc = run_in(container, install, [install.python, "-S", install.script, "unix",
                                       "--dry-run", "/bin/true"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["argv"][0] == "/bin/true"
    site, files = imports(proc.stderr)
    assert not site
    loaded = ukrun_files(files)
    assert any(f.endswith("ukrun/_core.abi3.so") for f in loaded), loaded
    assert all(f.startswith(install.packages + "/ukrun/") for f in loaded), loaded
    # cffi's extension from where site would have taken it.
    normal = run_in(container, install, [install.python, "-c", "import _cffi_backend"])
    assert normal.returncode == 0, normal.stderr[-3000:]
    cffi = [f for f in imports(normal.stderr)[1] if "_cffi_backend" in f]
    assert cffi and cffi == [f for f in files if "_cffi_backend" in f]


def test_as_installed_the_script_runs_the_installed_ukrun(install, container):
    proc = run_in(container, install, [install.script, "unix", "--dry-run", "/bin/true"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["argv"][0] == "/bin/true"
    site, files = imports(proc.stderr)
    assert site == (not first_line(install.file).endswith(" -S"))
    loaded = ukrun_files(files)
    assert loaded and all(f.startswith(install.packages + "/ukrun/") for f in loaded), loaded


@pytest.mark.parametrize("how", ["script -S", "script", "python -m ukrun"])
def test_version_every_way(install, container, how, tmp_path):
    argv = {"script -S": [install.python, "-S", install.script], "script": [install.script],
            "python -m ukrun": [install.python, "-m", "ukrun"]}[how]
    # From an empty directory: `-m` puts the working directory first on sys.path.
    proc = container.exec(*install.wrap, *argv, "--version", check=False, cwd=tmp_path,
                          env=install.env)
    assert (proc.returncode, proc.stdout.strip()) == (0, VERSION_LINE), proc.stderr[-3000:]


# --- the editable install (make build) -----------------------------------------------------------

def test_the_editable_install_keeps_the_flag_and_falls_back_to_site(ukrun_exe, container):
    # setuptools writes the interpreter it builds with into an editable install's script and
    # keeps the flag, and pip leaves a line that is not "#!python" alone.
    assert first_line(ukrun_exe) == "#!%s -S" % sys.executable
    with open(ukrun_exe) as installed, open(SCRIPT) as source:
        assert installed.readlines()[1:] == source.readlines()[1:], "a copy: run make build"
    proc = container.exec(ukrun_exe, "unix", "--dry-run", "/bin/true", check=False, cwd="/",
                          env=clean_env(PYTHONVERBOSE="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    site, files = imports(proc.stderr)
    assert site  # the editable finder is installed by a .pth file: only site reads those
    loaded = ukrun_files(files)
    assert loaded and all(f.startswith(os.path.join(ROOT, "ukrun") + "/") for f in loaded)


SIGNALS_SEEN = """
import os, sys
with open(os.path.join(os.path.dirname(__file__), "seen"), "w") as f:
    f.write(" ".join([str(os.getpid())] + [line.split()[1] for line in open("/proc/self/status")
                                           if line.startswith("SigBlk:")]))
"""


@pytest.mark.parametrize("pid1", [True, False])
def test_as_pid1_stop_signals_are_blocked_before_site_runs_anything(tmp_path, pid1):
    # sitecustomize is the first code site runs. The script in the source tree has no ukrun
    # next to it, so it takes the site path (and finds ukrun through the editable install).
    (tmp_path / "sitecustomize.py").write_text(SIGNALS_SEEN)
    unshare = ["unshare", "--pid", "--fork", "--kill-child"] if pid1 else []
    proc = subprocess.run(unshare + [sys.executable, "-S", SCRIPT, "--version"],
                          capture_output=True, text=True,
                          env=clean_env(PYTHONPATH=str(tmp_path)), timeout=60)
    assert proc.returncode == 0, proc.stderr
    pid, blocked = (tmp_path / "seen").read_text().split()
    assert (pid == "1") == pid1
    assert bool(int(blocked, 16) >> (signal.SIGTERM - 1) & 1) == pid1


# --- where the script looks ----------------------------------------------------------------------

def load_script():
    loader = importlib.machinery.SourceFileLoader("ukrun_script", SCRIPT)
    module = types.ModuleType(loader.name)
    module.__file__ = SCRIPT
    loader.exec_module(module)
    return module


CFFI = "_cffi_backend" + importlib.machinery.EXTENSION_SUFFIXES[0]
SP = "lib/%s/site-packages" % PY
# name: (files to make, the script, the interpreter's prefix, directories expected or None)
TREES = {
    "venv": (["v/pyvenv.cfg", "v/%s/ukrun/__init__.py" % SP, "v/%s/%s" % (SP, CFFI)],
             "v/bin/ukrun", "base", ["v/" + SP]),
    "venv without cffi": (["v/pyvenv.cfg", "v/%s/ukrun/__init__.py" % SP,
                           "base/%s/%s" % (SP, CFFI)], "v/bin/ukrun", "base", None),
    "user, the interpreter's cffi": (["h/.local/%s/ukrun/__init__.py" % SP,
                                      "base/%s/%s" % (SP, CFFI)], "h/.local/bin/ukrun", "base",
                                     ["h/.local/" + SP, "base/" + SP]),
    "Debian /usr/local": (["usr/local/lib/%s/dist-packages/ukrun/__init__.py" % PY,
                           "usr/local/lib/%s/dist-packages/%s" % (PY, CFFI)],
                          "usr/local/bin/ukrun", "usr", ["usr/local/lib/%s/dist-packages" % PY]),
    "Debian's own package": (["usr/lib/python3/dist-packages/ukrun/__init__.py",
                              "usr/lib/python3/dist-packages/" + CFFI],
                             "usr/bin/ukrun", "usr", ["usr/lib/python3/dist-packages"]),
    "no ukrun": (["v/pyvenv.cfg", "v/%s/%s" % (SP, CFFI)], "v/bin/ukrun", "base", None),
    "no cffi anywhere": (["usr/local/%s/ukrun/__init__.py" % SP], "usr/local/bin/ukrun",
                         "usr", None),
    "editable": (["v/pyvenv.cfg", "v/%s/__editable__.ukrun-1.pth" % SP, "v/%s/%s" % (SP, CFFI)],
                 "v/bin/ukrun", "base", None),
}


@pytest.mark.parametrize("name", sorted(TREES))
@pytest.mark.parametrize("linked", [False, True])
def test_package_dirs(name, linked, tmp_path):
    files, script, prefix, expected = TREES[name]
    for path in files + [script]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).touch()
    if linked:  # e.g. /usr/local/bin/ukrun -> /opt/ukrun/bin/ukrun, made by an image
        os.symlink(tmp_path / script, tmp_path / "ukrun")
        script = "ukrun"
    found = load_script().package_dirs(str(tmp_path / script), str(tmp_path / prefix))
    assert found == (expected and [str(tmp_path / d) for d in expected])


FAKE_CLI = "import sys\ndef main():\n    print('site' in sys.modules, __file__)\n    return 0\n"


@pytest.mark.parametrize("version", claimed_pythons()[0])
def test_both_paths_under_every_claimed_python(version, tmp_path):
    python = interpreter(version)
    if python is None:
        pytest.skip("no Python %s on this machine" % version)
    packages = tmp_path / "v" / "lib" / ("python" + version) / "site-packages"
    (packages / "ukrun").mkdir(parents=True)
    (packages / "ukrun" / "__init__.py").touch()
    (packages / "ukrun" / "cli.py").write_text(FAKE_CLI)
    suffix = subprocess.run([python, "-S", "-c",
                             "import _imp; print(_imp.extension_suffixes()[0])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    (packages / ("_cffi_backend" + suffix)).touch()
    (tmp_path / "v" / "pyvenv.cfg").touch()
    (tmp_path / "v" / "bin").mkdir()
    shutil.copy(SCRIPT, tmp_path / "v" / "bin" / "ukrun")
    fast = subprocess.run([python, "-S", str(tmp_path / "v" / "bin" / "ukrun")],
                          capture_output=True, text=True, env=clean_env(), cwd=ROOT)
    assert fast.stdout.split() == ["False", str(packages / "ukrun" / "cli.py")], fast.stderr
    # Not next to the script: site runs, and finds it where PYTHONPATH says.
    os.rename(packages / "ukrun", tmp_path / "ukrun")
    slow = subprocess.run([python, "-S", str(tmp_path / "v" / "bin" / "ukrun")],
                          capture_output=True, text=True, env=clean_env(PYTHONPATH=str(tmp_path)),
                          cwd=ROOT)
    assert slow.stdout.split() == ["True", str(tmp_path / "ukrun" / "cli.py")], slow.stderr


@pytest.mark.parametrize("entry", ["script", "python -m ukrun"])
def test_a_run_goes_without_the_cycle_collector(entry, monkeypatch):
    # Run in this process, with the CLI's main replaced by one that reports the collector's
    # state at the moment the real one would start.
    import gc
    import runpy

    import ukrun.cli

    seen = []
    monkeypatch.setattr(ukrun.cli, "main", lambda: seen.append(gc.isenabled()) or 0)
    monkeypatch.setattr(sys, "argv", ["ukrun", "--version"])
    was_enabled = gc.isenabled()
    gc.enable()
    try:
        with pytest.raises(SystemExit) as stop:
            if entry == "script":
                runpy.run_path(SCRIPT, run_name="__main__")
            else:
                runpy.run_module("ukrun", run_name="__main__", alter_sys=True)
    finally:
        (gc.enable if was_enabled else gc.disable)()
    assert (stop.value.code, seen) == (0, [False])
