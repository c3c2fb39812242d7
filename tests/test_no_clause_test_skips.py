"""No clause test may skip: the guard (tests/clause_guard.py) is loaded by this suite, and it
turns every way a test_C<n>_ test can skip into a failure, run here on a suite of its own."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import clause_guard
import conftest

TESTS = Path(__file__).resolve().parent

SUITE = '''
import pytest


@pytest.fixture
def skipping_fixture():
    pytest.skip("the fixture cannot run here")


def test_C1_skips_inside():
    pytest.skip("not today")


def test_C2_importorskip():
    pytest.importorskip("no_such_module_for_custodian")


@pytest.mark.skipif(False, reason="never true, still a way to hide it")
def test_C3_marked_skipif_false():
    pass


@pytest.mark.skip(reason="later")
def test_C4_marked_skip():
    pass


@pytest.mark.xfail(reason="known")
def test_C5_marked_xfail():
    assert False


def test_C6_fixture_skips(skipping_fixture):
    pass


@pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.skip(reason="one case"))])
def test_C7_one_case_skipped(n):
    pass


def test_C8_passes():
    pass


def test_other_tests_may_skip():
    pytest.skip("not a clause test")
'''

SKIPPED_MODULE = '''
import pytest

pytest.importorskip("no_such_module_for_custodian")


def test_C9_in_a_module_that_skips():
    pass
'''


def outcomes(junit: Path) -> dict[str, str]:
    found = {}
    for case in ET.parse(junit).iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        found[case.get("name")] = kinds[0] if kinds else "passed"
    return found


def test_every_way_a_clause_test_can_skip_fails_instead(tmp_path):
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(SUITE))
    (tmp_path / "test_skipped_module.py").write_text(textwrap.dedent(SKIPPED_MODULE))
    junit = tmp_path / "junit.xml"
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "clause_guard", "-p", "no:cacheprovider",
                          "-p", "no:xdist", "--continue-on-collection-errors", f"--junitxml={junit}", "-q", str(tmp_path)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert run.returncode == 1, run.stdout + run.stderr
    found = outcomes(junit)
    failed = {name for name, kind in found.items() if kind in ("failure", "error")}
    assert {"test_C1_skips_inside", "test_C2_importorskip", "test_C3_marked_skipif_false", "test_C4_marked_skip",
            "test_C5_marked_xfail", "test_C6_fixture_skips", "test_C7_one_case_skipped[2]"} <= failed, found
    assert found["test_C8_passes"] == "passed" and found["test_C7_one_case_skipped[1]"] == "passed"
    assert found["test_other_tests_may_skip"] == "skipped"
    assert "test_skipped_module.py skipped while being collected, with test_C9_in_a_module_that_skips" in run.stdout


def test_this_suite_runs_under_the_guard():
    assert conftest.pytest_runtest_makereport is clause_guard.pytest_runtest_makereport
    assert conftest.pytest_make_collect_report is clause_guard.pytest_make_collect_report
