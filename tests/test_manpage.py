"""man/ukrun.1: generated from the CLI's parser, committed, rendered cleanly, installed."""
import os
import re
import subprocess
import sys
import zipfile

import pytest

from ukrun.guest.targets import TARGETS
from wheelutil import build_wheel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "man", "ukrun.1")
COMMANDS = list(TARGETS) + ["inspect", "dockerfile", "docker-args"]


def render_env():
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    env.pop("MAN_KEEP_FORMATTING", None)
    return env


@pytest.fixture(scope="module")
def rendered():
    out = subprocess.run(["man", "-l", PAGE], capture_output=True, text=True, check=True,
                         env=render_env()).stdout
    # Undo what a terminal page does to words: hyphenation breaks and line wrapping.
    out = re.sub("\u2010\n\\s*", "", out)
    return " ".join(out.split())


def test_committed_page_is_what_make_man_writes(tmp_path):
    out = tmp_path / "ukrun.1"
    # COLUMNS would change argparse's wrapping if build.py did not pin it.
    env = dict(os.environ, COLUMNS="37")
    subprocess.run([sys.executable, os.path.join(ROOT, "man", "build.py"), str(out)],
                   check=True, env=env)
    with open(PAGE, "rb") as f:
        assert out.read_bytes() == f.read(), "man/ukrun.1 is stale: run make man"


def test_page_names_no_path_of_this_machine():
    with open(PAGE) as f:
        text = f.read()
    assert ROOT not in text and sys.prefix not in text


def test_groff_renders_without_warnings():
    proc = subprocess.run(["groff", "-ww", "-man", "-Tutf8", PAGE], capture_output=True,
                          text=True, env=render_env())
    assert proc.returncode == 0 and proc.stderr == ""
    proc = subprocess.run(["man", "-l", PAGE], capture_output=True, text=True,
                          env=render_env())
    assert proc.returncode == 0 and proc.stderr == ""


def help_options(command):
    """Every option string ``ukrun COMMAND --help`` shows, read from its output."""
    out = subprocess.run([sys.executable, "-m", "ukrun", command, "--help"],
                         capture_output=True, text=True, check=True, env=render_env()).stdout
    options = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", out))
    assert "--help" in options  # the parse itself works
    return options


@pytest.mark.parametrize("command", COMMANDS)
def test_page_shows_every_option_of(command, rendered):
    assert "COMMAND 'ukrun %s'" % command in rendered
    missing = sorted(o for o in help_options(command) if o not in rendered)
    assert not missing


@pytest.mark.parametrize("section", ["DESCRIPTION", "EXIT STATUS", "ENVIRONMENT", "FILES",
                                     "EXAMPLES", "SEE ALSO"])
def test_page_has_section(section, rendered):
    assert " %s " % section in rendered


def test_examples_run_every_target(rendered):
    for target in TARGETS:
        assert "ukrun %s " % target in rendered.split(" EXAMPLES ", 1)[1]


def test_wheel_installs_the_page(tmp_path):
    with zipfile.ZipFile(build_wheel(str(tmp_path))) as z:
        names = z.namelist()
    assert any(n.endswith(".data/data/share/man/man1/ukrun.1") for n in names), names
