"""No clause test may skip (a pytest plugin; conftest.py loads its hooks).

A test named `test_C<n>_...` guards a clause of the policy. If it is skipped (a skip
or importorskip inside it or its fixtures, a module that skips while being collected)
or carries a skip, skipif or xfail mark, nobody is checking that rule: it fails instead.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

CLAUSE_TEST = re.compile(r"test_C\d+_")
HIDING_MARKS = {"skip", "skipif", "xfail"}


def _refuse(report, what: str) -> None:
    report.outcome = "failed"
    report.longrepr = f"{what}: a clause test may not skip (fix what it needs, or make it fail)"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not CLAUSE_TEST.match(item.name):
        return
    marks = sorted({m.name for m in item.iter_markers() if m.name in HIDING_MARKS})
    if report.when == "setup" and marks and not report.failed:
        _refuse(report, f"{item.nodeid} is marked {', '.join(marks)}")
    elif report.skipped or hasattr(report, "wasxfail"):
        _refuse(report, f"{item.nodeid} was skipped ({report.longrepr})")


def _clause_tests_in(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return []
    return [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and CLAUSE_TEST.match(n.name)]


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(collector, pytest.Module):
        hidden = _clause_tests_in(Path(collector.path))
        if hidden:
            _refuse(report, f"{collector.nodeid} skipped while being collected, with {', '.join(hidden)}")
