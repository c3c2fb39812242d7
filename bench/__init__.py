"""Custodian benchmarks: ratios against a floor or a reference measured in the same run.

They are not tests and never assert on speed. Run them all with `make bench`
(`.venv/bin/python -m bench.run`), one with `--only NAME`, a tiny smoke version
with `--quick`. Results: a table on stdout and `bench/out/results.json`.
What each one measures and why is in docs/PERFORMANCE.md.
"""
