"""docs/api.md and docs/api/*.md cannot drift from the operations the central registers, nor
from the rule table (who may call each one) the registry declares."""
from __future__ import annotations

import re
from pathlib import Path

from appliance.rules import catalog as policy  # noqa: F401
from appliance.rules.registry import OPS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_index_lists_every_operation_with_who_may_call_it():
    index = (DOCS / "api.md").read_text().split("## Operations", 1)[1]
    rows = dict(re.findall(r"^\| `([a-z_.]+)` \| ([^|]+) \|", index, re.M))
    assert set(rows) == set(OPS)
    assert {name: who.strip() for name, who in rows.items()} == {name: o.who() for name, o in OPS.items()}


def test_every_page_says_who_may_call_each_operation_as_the_registry_does():
    stated = {}
    for page in sorted((DOCS / "api").glob("*.md")):
        text = page.read_text()
        for name, who in re.findall(r"^### `([a-z_]+\.[a-z_]+)`\n\nWho may call it: ([^\n]*)\.$", text, re.M):
            stated[name] = who
        for name, who in re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \| ([^|]+) \|", text, re.M):
            stated[name] = who.strip()
    assert stated == {name: o.who() for name, o in OPS.items()}


def test_the_rule_table_reads_as_people_say_it():
    # Spot checks written by hand: the words a reader of the docs meets.
    assert OPS["user.create"].who() == "the Director (herself, not an acting director)"
    assert OPS["camera.enroll"].who() == "the Director, IT staff"
    assert OPS["incident.get"].who() == ("staff, the Director; below the Director, only the incidents they filed "
                                         "or hold a grant for")
    assert OPS["session.login"].who() == "anyone (no session)"


def test_every_operation_has_a_reference_section():
    text = "".join(p.read_text() for p in (DOCS / "api").glob("*.md"))
    assert [n for n in OPS if f"`{n}`" not in text] == []
