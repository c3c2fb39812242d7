"""docs/policy-clauses.md, the clause map C1-C22 that code, errors and test names cite, cannot rot.

Every clause has its section, quoting the library's policy word for word; every module and
test the page names exists (a test, in the file it is listed under); every `test_C<n>_...`
test in the tree is listed under each clause its name cites; and nothing cites a clause the
page does not have.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "policy-clauses.md"
POLICY = ROOT / "appliance" / "rules" / "library-policy.txt"
CLAUSES = [f"C{n}" for n in range(1, 23)]
CLAUSE_TEST = re.compile(r"test_((?:C\d+_)+)")
LISTED = re.compile(r"^- `(tests/[\w/]+\.py)`: (.+)$", re.M)


def sections() -> dict[str, str]:
    """Each clause's section of the page, by id, in the page's order."""
    parts = re.split(r"^## (C\d+) .*$", DOC.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def listed_tests(section: str) -> set[tuple[str, str]]:
    """(file, test name) for every test a section lists."""
    return {(path, name) for path, names in LISTED.findall(section) for name in re.findall(r"`(test_\w+)`", names)}


def defined_tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    return {n.name for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test_")}


def all_defined_tests() -> dict[str, set[str]]:
    """Test functions (real definitions, not text in strings) per test file under tests/."""
    return {str(p.relative_to(ROOT)): defined_tests_in(p) for p in sorted((ROOT / "tests").rglob("test_*.py"))}


def words(text: str) -> str:
    return " ".join(text.split())


def test_every_clause_has_one_section_in_order_and_a_row_at_a_glance():
    assert list(sections()) == CLAUSES
    glance = DOC.read_text().split("## At a glance", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| (C\d+) \|", glance, re.M) == CLAUSES


def test_quotations_are_the_librarys_policy_word_for_word():
    policy = words(POLICY.read_text())
    for clause, section in sections().items():
        quotes = [words(line[2:]) for line in section.splitlines() if line.startswith("> ")]
        assert quotes, f"{clause} quotes no words of the policy"
        for quote in quotes:
            assert quote in policy, f"{clause} quotes words the policy does not have: {quote!r}"


def test_every_path_the_page_names_exists():
    paths = re.findall(r"`((?:appliance|hw|tui|images|tests)/[\w./-]+)`", DOC.read_text())
    assert paths and [p for p in paths if not (ROOT / p).exists()] == []
    for clause, section in sections().items():
        assert "Enforced by:" in section and re.search(r"`(appliance|hw|images)/", section), \
            f"{clause} names nothing that enforces it"


def test_every_test_listed_is_defined_in_the_file_it_is_listed_under():
    defined = all_defined_tests()
    missing = [f"{clause}: {path}::{name}" for clause, section in sections().items()
               for path, name in sorted(listed_tests(section)) if name not in defined.get(path, set())]
    assert missing == []


def test_every_clause_test_in_the_tree_is_listed_under_each_clause_it_cites():
    listed = {clause: listed_tests(section) for clause, section in sections().items()}
    unlisted = []
    for path, names in all_defined_tests().items():
        for name in names:
            m = CLAUSE_TEST.match(name)
            if m and path != "tests/test_no_clause_test_skips.py":
                unlisted += [f"{path}::{name} under {c}" for c in m.group(1).rstrip("_").split("_")
                             if (path, name) not in listed.get(c, set())]
    assert unlisted == []


def test_every_clause_has_a_test_named_after_it():
    for clause, section in sections().items():
        assert any(CLAUSE_TEST.match(name) and clause in CLAUSE_TEST.match(name).group(1).split("_")
                   for _, name in listed_tests(section)), f"{clause} lists no test_{clause}_ test"


def test_code_and_docs_cite_only_clauses_the_page_has():
    cited = {}
    for path in sorted((ROOT / "appliance").rglob("*.py")):
        for clause in re.findall(r"clause=\"(C\d+)\"", path.read_text()):
            cited.setdefault(clause, path)
    for path in sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]:
        for clause in re.findall(r"\bC(\d+)\b", path.read_text()):
            cited.setdefault(f"C{clause}", path)
    assert {c: str(p) for c, p in cited.items() if c not in CLAUSES} == {}


def test_the_checks_above_catch_what_they_should(tmp_path):
    # The listing and test-name parsing, on text whose faults we know.
    section = ("- `tests/rules/test_x.py`: `test_C3_C14_a`, `test_b`\n"
               "- `tests/rules/test_y.py`: `test_C9_c`\n")
    assert listed_tests(section) == {("tests/rules/test_x.py", "test_C3_C14_a"), ("tests/rules/test_x.py", "test_b"),
                                     ("tests/rules/test_y.py", "test_C9_c")}
    assert CLAUSE_TEST.match("test_C3_C14_a").group(1).rstrip("_").split("_") == ["C3", "C14"]
    assert CLAUSE_TEST.match("test_Cx_a") is None
    source = tmp_path / "test_z.py"
    source.write_text('SUITE = """\ndef test_C1_in_a_string():\n    pass\n"""\n\n\nasync def test_C2_real():\n    pass\n')
    assert defined_tests_in(source) == {"test_C2_real"}
