"""Under SWITCHYARD_CI=1 a skip fails the run, as in Tests/python (the hooks live in its ci_skips.py)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from ci_skips import pytest_make_collect_report, pytest_runtest_makereport, pytest_terminal_summary  # noqa: E402,F401
