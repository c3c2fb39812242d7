"""The architecture's boundaries, checked: the core never imports Textual; the TUI
reaches the system only through the API client (no keys, TinyDB, archive or files)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports_of(package: str) -> dict[Path, set[str]]:
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(("." * node.level) + node.module)
        found[path] = names
    return found


def test_core_and_hw_never_import_textual():
    for package in ("appliance", "hw"):
        for path, names in imports_of(package).items():
            assert not any(n == "textual" or n.startswith("textual.") for n in names), path


def test_core_runs_without_loading_textual():
    code = ("import sys, appliance.central.daemon, appliance.node.recorder, appliance.cli, appliance.rules.catalog, hw.factory; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'tui')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_tui_talks_only_to_the_api():
    allowed_appliance = {"appliance.client", "appliance.wording"}   # the API, and how to word times and roles
    forbidden_roots = {"tinydb", "nacl", "hw", "ffmpeg", "sqlite3", "shutil"}
    for path, names in imports_of("tui").items():
        for name in names:
            root = name.lstrip(".").split(".")[0]
            assert root not in forbidden_roots, f"{path} imports {name}"
            if root == "appliance":
                assert name in allowed_appliance, f"{path} imports {name}: use the API client"


def test_api_client_is_standard_library_only():
    names = imports_of("appliance")[ROOT / "appliance" / "client.py"]
    assert names <= {"__future__", "http.client", "json", "socket"}, names


def test_wording_is_standard_library_only():
    # The TUI may show times and roles the way the central's messages do, without the core.
    names = imports_of("appliance")[ROOT / "appliance" / "wording.py"]
    assert names <= {"__future__", "datetime"}, names


def test_rtsp_backend_stands_without_appliance():
    """hw/ is to become independent of appliance/: the RTSP backend and its helpers already are
    (nothing imported from appliance, directly or through another module)."""
    for module in ("rtsp_source", "sps", "ffmpeg_common"):
        names = imports_of("hw")[ROOT / "hw" / f"{module}.py"]
        assert not any(n.startswith("appliance") for n in names), (module, names)
    code = ("import sys, hw.rtsp_source; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'appliance']; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
