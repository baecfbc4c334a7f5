"""Where things are: the repository, the test helpers and their data (one place to change)."""
import os

SUPPORT = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(SUPPORT)
ROOT = os.path.dirname(TESTS)
DATA = os.path.join(SUPPORT, "data")

