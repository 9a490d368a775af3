"""Under ``make test`` (``EV_TESTS_NO_SKIP=1``) a test or module that skips, or an xfail, fails
(tests/no_skip.py): a pytest run of its own on a few such tests, with the suite's plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SKIPPING = """
import pytest

def test_skips():
    pytest.skip("nothing here")

@pytest.mark.skipif(True, reason="a condition")
def test_skipif():
    pass

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False

def test_passes():
    assert True
"""
MODULE_SKIP = """
import pytest
pytest.importorskip("no_such_module_for_this_test")

def test_x():
    assert True
"""


def pytest_on(
    tmp_path: Path, source: str, no_skip: str, *, name: str = "test_it.py", args: tuple = ()
) -> tuple[int, str]:
    """pytest on ``source`` next to a module that passes, with the suite's plugin."""
    (tmp_path / name).write_text(source)
    (tmp_path / "test_passes.py").write_text("def test_passes():\n    assert True\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.no_skip", "-p", "no:cacheprovider",
         "-c", os.devnull, "--rootdir", str(tmp_path), "-q", "-rA", *args, str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), "EV_TESTS_NO_SKIP": no_skip},
    )
    return run.returncode, run.stdout + run.stderr


@pytest.mark.parametrize("no_skip", ["1", ""])
def test_a_skip_or_an_xfail_fails_under_make_test_only(tmp_path: Path, no_skip: str) -> None:
    code, out = pytest_on(tmp_path, SKIPPING, no_skip)
    if no_skip:
        assert code == 1, out
        assert "2 passed" in out and "2 failed" in out and "1 error" in out, out
        assert "where nothing may: Skipped: nothing here" in out
        assert "where nothing may: known" in out
    else:
        assert code == 0, out
        assert "2 passed, 2 skipped, 1 xfailed" in out, out


@pytest.mark.parametrize("no_skip", ["1", ""])
def test_a_module_that_skips_is_a_collection_error_under_make_test_only(
    tmp_path: Path, no_skip: str
) -> None:
    code, out = pytest_on(tmp_path, MODULE_SKIP, no_skip)
    if no_skip:
        assert code == 2, out
        assert "could not import 'no_such_module_for_this_test'" in out
    else:
        assert code == 0 and "1 passed, 1 skipped" in out, out


@pytest.mark.parametrize("no_skip", ["1", ""])
def test_a_skipped_doctest_of_a_package_module_fails_under_make_test_only(
    tmp_path: Path, no_skip: str
) -> None:
    # the doctests of broker/ and adapters/ lie outside tests/ (and its conftest's hooks)
    source = 'def f():\n    """\n    >>> f()  # doctest: +SKIP\n    1\n    """\n    return 1\n'
    code, out = pytest_on(tmp_path, source, no_skip, name="somemodule.py",
                          args=("--doctest-modules",))
    if no_skip:
        assert code == 1 and "1 failed" in out and "where nothing may" in out, out
    else:
        assert code == 0 and "1 passed, 1 skipped" in out, out
