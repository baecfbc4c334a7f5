"""The Python versions ukrun claims to run on, and the interpreters of them on this machine."""
import glob
import os
import re
import shutil
import subprocess

from tree import ROOT


def claimed_pythons():
    """The versions setup.py's classifiers name, and python_requires' lower bound."""
    with open(os.path.join(ROOT, "setup.py")) as f:
        text = f.read()
    versions = re.findall(r'"Programming Language :: Python :: (3\.\d+)"', text)
    (lowest,) = re.findall(r'python_requires=">=(3\.\d+)"', text)
    return versions, lowest


def interpreter(version):
    """An interpreter of ``version`` ("3.9") on this machine: pyenv's, else one on PATH."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(os.path.join(root, "versions", version + ".*", "bin", "python" + version)))
    found += [p for p in [shutil.which("python" + version)] if p]
    for path in found:
        proc = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip() == version:  # pyenv shims may refuse
            return path
    return None
