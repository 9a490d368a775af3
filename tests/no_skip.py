"""Under ``make test`` (``EV_TESTS_NO_SKIP=1``) a skipped test or module, or an xfail, fails.

A pytest plugin (``-p tests.no_skip`` in pyproject.toml's addopts), not a conftest hook, so it
holds for every test collected, the doctests of ``broker/`` and ``adapters/`` too (a conftest's
hooks hold for its own folder only).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# `make test` (so .ci/run) sets EV_TESTS_NO_SKIP=1: it installs every extra (SUMO, pyrosm,
# Chromium), so a test or module that skips there (importorskip, pytest.skip, xfail) hides a
# broken install or a test that cannot fail: it is a failure instead, saying why it skipped.
NO_SKIP = os.environ.get("EV_TESTS_NO_SKIP") == "1"


def _no_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if NO_SKIP and report.skipped:
        why = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        why = getattr(report, "wasxfail", None) or why
        report.outcome = "failed"
        report.longrepr = f"skipped under EV_TESTS_NO_SKIP=1 (make test), where nothing may: {why}"
        if hasattr(report, "wasxfail"):
            del report.wasxfail


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _no_skip(outcome.get_result())  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    _no_skip(outcome.get_result())  # type: ignore[attr-defined]

