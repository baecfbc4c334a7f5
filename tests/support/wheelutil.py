"""Build ukrun's wheel from a clean copy of the tree: building in place would leave build/
and ukrun.egg-info behind, and a stale build/lib could slip removed modules into the wheel."""
import os
import shutil
import subprocess
import sys

from tree import ROOT
SOURCES = ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "ukrun", "csrc", "man",
           "bin")
BUILT = shutil.ignore_patterns("__pycache__", "*.so", "_core.c", "_core.o")


def build_wheel(tmp, python=sys.executable):
    """The path of a wheel built by ``python`` (no deps, no isolation: offline) under
    directory ``tmp``."""
    src, out = os.path.join(tmp, "src"), os.path.join(tmp, "wheel")
    os.makedirs(src)
    for name in SOURCES:
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(src, name), ignore=BUILT)
        else:
            shutil.copy2(path, src)
    subprocess.run([python, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", out, src], check=True, capture_output=True)
    (wheel,) = [f for f in os.listdir(out) if f.startswith("ukrun-") and f.endswith(".whl")]
    return os.path.join(out, wheel)


def venv_install(wheel, path):
    """A plain `python -m venv` at PATH with WHEEL installed by the venv's own pip, cffi from
    the package index (as an image build does); returns the venv's interpreter."""
    subprocess.run([sys.executable, "-m", "venv", path], check=True, capture_output=True,
                   timeout=300)
    python = os.path.join(path, "bin", "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel],
                   check=True, capture_output=True, timeout=300)
    return python
