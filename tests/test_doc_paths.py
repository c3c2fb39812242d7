"""Every file, folder and module the README and docs/ name exists, so a move cannot leave them behind."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# A path ends where the name ends (a full stop after it ends the sentence); one with a placeholder
# such as `tests/rules/test_<module>.py` is not a path.
PATH = re.compile(r"(?<![\w./-])((?:appliance|hw|tui|tests|images|bench|docs)/[\w.@/-]*[\w@/])(?![\w@/<-])")
MODULE = re.compile(r"(?<![\w./-])((?:appliance|hw|tui)(?:\.\w+)+)")
GENERATED = ("bench/out/",)   # benchmark output: made by `make bench`, not committed


def named_paths(text: str) -> set[str]:
    return {p for p in PATH.findall(text) if not p.startswith(GENERATED)}


def module_exists(dotted: str) -> bool:
    """`appliance.rules.incidents` or `appliance.rules.incidents.check_grant` (a module and a name in it)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:cut])
        source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if source.is_file():
            rest = parts[cut:]
            return not rest or re.search(rf"^\s*(?:def|class|async def) {rest[0]}\b|^{rest[0]}\b\s*[:=]",
                                         source.read_text(), re.M) is not None
    return False


def test_every_path_the_docs_name_exists():
    missing = [f"{doc.relative_to(ROOT)}: {p}" for doc in DOCS for p in sorted(named_paths(doc.read_text()))
               if not (ROOT / p.rstrip("/")).exists()]
    assert missing == []


def test_every_module_the_docs_name_exists():
    missing = [f"{doc.relative_to(ROOT)}: {m}" for doc in DOCS for m in sorted(set(MODULE.findall(doc.read_text())))
               if not module_exists(m)]
    assert missing == []


def test_the_checks_catch_old_names():
    text = ("see `appliance/ops.py`, appliance/rules/registry.py and `images/central/custodian-node@.service`, "
            "not `tests/rules/test_<module>.py` nor docs/api/<module>.md: see docs/api.md.")
    assert named_paths(text) == {"appliance/ops.py", "appliance/rules/registry.py",
                                 "images/central/custodian-node@.service", "docs/api.md"}
    assert module_exists("appliance.rules.incidents.check_grant") and module_exists("appliance.custody.keys")
    assert not module_exists("appliance.incidents.check_grant") and not module_exists("appliance.keys")
    assert not module_exists("appliance.rules.incidents.no_such_function")
