"""The words docs/provisioning.md quotes from the camera's log ("If something goes wrong") are the product's.

Each backticked phrase in the first column of that section's table must occur in a string of
appliance/ (adjacent string literals joined, as Python joins them), so a reworded refusal
cannot leave IT looking for a line the node never writes.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## If something goes wrong at first boot"


def quoted_log_phrases() -> list[str]:
    text = (ROOT / "docs" / "provisioning.md").read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| the log says")]
    return [phrase for row in rows for phrase in re.findall(r"`([^`]+)`", row.split(" | ")[0])]


def product_strings() -> str:
    """Every source file under appliance/, with implicitly concatenated literals ("a "\\n "b") joined."""
    sources = (path.read_text() for path in sorted((ROOT / "appliance").rglob("*.py")))
    return "\n".join(re.sub(r"\"\s*\n\s*f?\"", "", source) for source in sources)


def test_the_refusals_the_doc_quotes_are_the_products_words():
    phrases = quoted_log_phrases()
    assert len(phrases) >= 15, phrases          # the table is there and was read
    code = product_strings()
    assert [p for p in phrases if p not in code] == []


def test_the_check_catches_a_reworded_message():
    code = product_strings()
    assert "was enrolled by key (custodian camera add)" in code
    assert "was enrolled by hand (custodian camera add)" not in code
