"""`custodian demo --help` describes every option; bad values are refused before anything starts."""
from __future__ import annotations

import re
import subprocess

from processes import CLI

OPTIONS = {"--cameras": "how many synthetic cameras", "--data": "where the demo keeps",
           "--headless": "no UI", "--seconds": "with --headless, how long to record", "--segment-seconds": "length of each"}


def test_demo_help_describes_every_option():
    done = subprocess.run(CLI + ["demo", "--help"], capture_output=True, text=True, timeout=30,
                          env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "Run the whole system on this machine" in text and "SIGHUP" in text
    options = text.split("options:\n")[1].split("\n\n")[0]
    described = {}
    for line in options.splitlines():
        m = re.match(r"^  (-[\w-]+)(?: [A-Z]+)?(?:, --[\w-]+)?\s{2,}(\S.*)$", line)
        if m:
            described[m.group(1)] = m.group(2)
        else:
            assert re.match(r"^\s{10,}\S", line), f"an option without a description: {line!r}"
    assert set(described) == {"-h", *OPTIONS}
    for option, words in OPTIONS.items():
        assert described[option].startswith(words), (option, described[option])


def test_demo_refuses_bad_values_before_starting(tmp_path):
    for args in (["--cameras", "0"], ["--cameras", "6"], ["--segment-seconds", "0"], ["--seconds", "-1"]):
        done = subprocess.run(CLI + ["demo", "--headless", "--data", str(tmp_path / "d"), *args],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and "error: argument" in done.stderr, (args, done.stderr)
    assert not (tmp_path / "d").exists()
