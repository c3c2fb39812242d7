"""Run the benchmarks: `python -m bench.run [--quick] [--only NAME ...] [--out DIR] [--json PATH]`.

Prints a table and writes the results (with the machine's description) as JSON,
by default to bench/out/results.json. Benchmarks are ratios against a floor or a
reference measured in the same run; nothing here asserts on speed. The exit code
is non-zero only when a benchmark could not run (an exception), never because a
target was missed.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

from . import common

BENCHMARKS = {
    "node_throughput": "bench.node_throughput",
    "node_cpu": "bench.node_cpu",
    "node_rss": "bench.node_rss",
    "central_ingest": "bench.central_ingest",
    "rtsp_cpu": "bench.rtsp_cpu",
    "export_package": "bench.export_package",
    "tui_terminal": "bench.tui_terminal",
}


def _fmt(value, unit: str | None = None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    else:
        text = str(value)
    return f"{text} {unit}" if unit else text


def table(results: list[dict]) -> str:
    rows = [("benchmark", "figure", "baseline", "ratio", "target", "met")]
    for r in results:
        if "error" in r:
            rows.append((r["name"], "ERROR", "-", "-", "-", r["error"].splitlines()[-1][:60]))
            continue
        first = True
        for c in r["checks"]:
            rows.append((
                r["name"] if first else "",
                _fmt(r["figure"], r["unit"]) if first else "",
                _fmt(r["baseline"], r["baseline_unit"]) if first else "",
                _fmt(r["ratio"]) if first else "",
                f"{c['what']} {c['op']} {_fmt(c['target'])} (got {_fmt(c['measured'])})",
                "yes" if c["met"] else "NO",
            ))
            first = False
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny inputs: proves the code runs (smoke test)")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, default=common.OUT_DEFAULT,
                        help="scratch, clip cache and results directory (default bench/out/)")
    parser.add_argument("--json", type=Path, default=None, help="results file (default OUT/results.json)")
    args = parser.parse_args(argv)

    settings = common.Settings(quick=args.quick, out=args.out.resolve())
    settings.out.mkdir(parents=True, exist_ok=True)
    names = args.only or list(BENCHMARKS)
    report = {"machine": common.machine(), "quick": args.quick, "results": []}
    started = time.monotonic()
    failed = False
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        load_before = os.getloadavg()
        try:
            res = importlib.import_module(BENCHMARKS[name]).run(settings)
        except Exception:
            failed = True
            res = {"name": name, "error": traceback.format_exc()}
            print(res["error"], file=sys.stderr)
        res["wall_seconds"] = round(time.monotonic() - t0, 2)
        # Other work on the machine skews wall-clock figures: keep the load next to them.
        res["loadavg_before"] = load_before
        res["loadavg_after"] = os.getloadavg()
        print(f"[bench] {name} done in {res['wall_seconds']:.1f}s (load average {load_before[0]:.1f} -> "
              f"{res['loadavg_after'][0]:.1f})", file=sys.stderr, flush=True)
        report["results"].append(res)
    report["wall_seconds"] = round(time.monotonic() - started, 2)
    out_json = args.json or settings.out / "results.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    print(f"{m['date']}  {m['nproc']} x {m['cpu_model']}  python {m['python']}  {m['ffmpeg']}"
          f"{'  (quick mode: not a measurement)' if args.quick else ''}")
    print(table(report["results"]))
    print(f"total {report['wall_seconds']:.0f}s; results in {out_json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
