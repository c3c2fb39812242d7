"""The architecture's boundaries, checked.

The layers and who may import whom are written once, as import-linter contracts in
pyproject.toml (docs/ARCHITECTURE.md draws them): formats -> custody -> media -> rules ->
central | node, `hw/` standing alone, the core never importing Textual or the UI, the UI
reaching the system only through the API client, and no import circles anywhere. The
first test runs them. The others check what import-linter cannot say: what is loaded at
run time, and that the modules the UI may use need nothing but the standard library.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(("." * node.level) + node.module)
    return names


def test_import_contracts_hold():
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def test_core_runs_without_loading_textual():
    code = ("import sys, appliance.central.daemon, appliance.node.service, appliance.cli, appliance.rules.catalog, "
            "hw.factory; bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'tui')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_hw_runs_without_loading_the_appliance():
    code = ("import sys, hw.factory, hw.rtsp_source, hw.selftest, hw.watchdog; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'appliance']; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_api_client_is_standard_library_only():
    assert imports_of(ROOT / "appliance" / "client.py") <= {"__future__", "http.client", "json", "socket"}


def test_wording_is_standard_library_only():
    # The TUI may show times and roles the way the central's messages do, without the core.
    assert imports_of(ROOT / "appliance" / "wording.py") <= {"__future__", "datetime"}
