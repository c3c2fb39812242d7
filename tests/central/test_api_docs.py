"""docs/api.md and docs/api/*.md cannot drift from the operations the central registers."""
from __future__ import annotations

import re
from pathlib import Path

from appliance.rules import catalog as policy  # noqa: F401
from appliance.rules.registry import OPS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_index_lists_every_operation_with_its_roles():
    index = (DOCS / "api.md").read_text().split("## Operations", 1)[1]
    rows = dict(re.findall(r"^\| `([a-z_.]+)` \| ([^|]+) \|", index, re.M))
    assert set(rows) == set(OPS)
    for name, op in OPS.items():
        roles = "anyone (no session)" if op.public else ", ".join(r for r in ("staff", "director", "it")
                                                                  if r in op.roles)
        assert rows[name].strip() == roles, name


def test_every_operation_has_a_reference_section():
    text = "".join(p.read_text() for p in (DOCS / "api").glob("*.md"))
    assert [n for n in OPS if f"`{n}`" not in text] == []
