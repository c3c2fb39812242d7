"""The benchmarks run (bench/, docs/PERFORMANCE.md): each in its tiny --quick mode.

These prove the benchmark code works and produces numbers. They never assert on
speed: quick mode is too small to measure anything, and speed is not a test.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ["node_throughput", "node_cpu", "node_rss", "central_ingest", "rtsp_cpu", "export_package", "tui_terminal"]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_runs_in_quick_mode_and_reports_numbers(name, tmp_path):
    out = tmp_path / "out"
    results = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", name, "--out", str(out), "--json", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(results.read_text())
    assert report["quick"] is True
    assert report["machine"]["nproc"] >= 1
    [res] = report["results"]
    assert res["name"] == name and "error" not in res, res
    assert _number(res["figure"]) and res["figure"] > 0 and res["unit"]
    assert res["baseline"] is None or (_number(res["baseline"]) and res["baseline"] > 0)
    assert res["ratio"] is None or (_number(res["ratio"]) and res["ratio"] > 0)
    assert res["checks"], "every benchmark states its target"
    for check in res["checks"]:
        assert _number(check["measured"]) and _number(check["target"]) and check["op"] in (">=", "<=")
        assert isinstance(check["met"], bool)          # reported, never asserted
    assert name in proc.stdout                         # the table
    # scratch space is cleaned up: only the clip cache is left behind
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("tmp-")) == []
