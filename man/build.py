"""Write man/ukrun.1 from the CLI's own parser (``make man``; tests/test_manpage.py checks it).

The page must come out the same byte for byte on any machine: the date is fixed per release
(not today), the width argparse wraps usage lines at is pinned (it reads $COLUMNS), and the
hand-written sections come from man/sections.man, which argparse-manpage appends.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
# argparse wraps usage at $COLUMNS; wide enough for no wraps at all, groff fills the lines.
os.environ["COLUMNS"] = "1000"

from argparse_manpage.manpage import Manpage  # noqa: E402

from ukrun._version import __version__  # noqa: E402
from ukrun.cli import get_parser  # noqa: E402

# Bump with the version: the page's date says when this text was last true.
RELEASE_DATE = "2026-11-29"


def build() -> str:
    data = {
        "date": RELEASE_DATE,
        "project_name": "ukrun",
        "version": __version__,
        "manual_title": "User Commands",
        "description": "run a unikernel as a container's main process",
        "include": os.path.join(HERE, "sections.man"),
    }
    parser = get_parser()
    page = Manpage(parser, _data=data)
    # argparse-manpage puts the parser's description after the hand-written one; the
    # one-sentence summary reads better first.
    page.add_section("description", "<", page.format_text(parser.description) + "\n")
    parser.description = None
    return str(page)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "ukrun.1")
    with open(out, "w") as f:
        f.write(build())
