"""Pytest hooks shared by Tests/python and Tests/deploy (their conftest.py files import them).

CI (SWITCHYARD_CI=1, set by .ci/run) can run every category of these tests: it runs as root
(network namespaces), and Deploy/install-deps.sh installs curl, Chromium, systemd-analyze, netem
and nftables. A skip there means a category vanished from CI, so it fails instead. The exceptions
are skips that depend on the host in a way CI cannot change: each is listed in ALLOWED_CI_SKIPS
with why, and printed at the end of every CI run that took it. (None at present.)
"""
import os

import pytest

CI_ENV = "SWITCHYARD_CI"
ALLOWED_CI_SKIPS = {
    # "substring of the skip reason": "why a CI host may legitimately lack it",
}


def _ci_required():
    return os.environ.get(CI_ENV) == "1"


def _skip_reason(report):
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _allowed(reason):
    return next((why for needle, why in ALLOWED_CI_SKIPS.items() if needle in reason), None)


_allowed_skips_taken = []


def _fail_skip_in_ci(report, what):
    """Turns a skip into a failure under SWITCHYARD_CI=1, unless the allow-list names it."""
    if not (_ci_required() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    why = _allowed(reason)
    if why is not None:
        _allowed_skips_taken.append((what, reason, why))
        return
    report.outcome = "failed"
    report.longrepr = (f"{CI_ENV}=1: {what} was skipped ({reason}), but CI can run it; install what it needs "
                       f"(Deploy/install-deps.sh) or add the reason to ALLOWED_CI_SKIPS in Tests/python/ci_skips.py with why")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skip_in_ci(outcome.get_result(), item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_skip_in_ci(outcome.get_result(), collector.nodeid)


def pytest_terminal_summary(terminalreporter):
    """Names what ran (tests per file) and every skip, so the log shows which categories CI ran."""
    passed = terminalreporter.stats.get("passed", [])
    per_file = {}
    for report in passed:
        per_file[report.nodeid.split("::")[0]] = per_file.get(report.nodeid.split("::")[0], 0) + 1
    terminalreporter.write_sep("-", "test categories run")
    for path, count in sorted(per_file.items()):
        terminalreporter.write_line(f"{path}: {count} passed")
    skipped = terminalreporter.stats.get("skipped", [])
    for report in skipped:
        terminalreporter.write_line(f"skipped: {report.nodeid}: {_skip_reason(report)}")
    for what, reason, why in _allowed_skips_taken:
        terminalreporter.write_line(f"skip allowed in CI: {what}: {reason} ({why})")
    if not skipped and not _allowed_skips_taken:
        terminalreporter.write_line("skipped: none")


