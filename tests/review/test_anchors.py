"""Text anchors of tree-sitter patterns: they only ever skip a query that cannot match."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import re2

from appliance.packs import discover_packs
from appliance.review.anchors import pattern_anchors, widen_regex
from appliance.review.engine import RuleSet
from appliance.review.sources import file_as_added

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("regex", "node_text", "file_text"), [
    ("^(execute|query)$", "execute", "cursor.execute(sql)"),
    ("(?i)(^|\\.|_)(log|logger)$", "log", "  log.info(x)"),
    ("\\bmd5\\b", "md5", "hashlib.md5(x)"),
    ("^\\w+_ssn$", "patient_ssn", "print(patient_ssn)"),
    ("^\\w+_ssn$", "pätient_ssn", "print(pätient_ssn)"),  # Python's \w is Unicode
    ("^\\d+$", "١٢٣", "x = ١٢٣"),  # so is \d
    ("a\\sb", "a\u00a0b", "x = 'a\u00a0b'"),  # and \s
    ("[^\\w.]", "-", "a-b"),
    ("\\Atoken\\Z", "token", "the token here"),
    ("^http://(?!localhost)", "http://svc.local", "url = 'http://svc.local'"),  # look-arounds dropped
    ("(?<![A-Za-z])leads?", "leads", "x = leads"),
])
def test_a_widened_regex_finds_every_text_that_contains_a_match(regex: str, node_text: str, file_text: str) -> None:
    assert re.search(regex, node_text)
    widened = widen_regex(regex)
    assert widened is not None
    assert re2.search(widened, file_text), (regex, widened)


@pytest.mark.parametrize("regex", [
    "(a)\\1", "(?x) a b", "a{,3}", "(?>ab)", "[^\\W]", "(?a)\\w", "x(?=unclosed",
])
def test_regexes_re2_cannot_widen_give_no_anchor(regex: str) -> None:
    assert widen_regex(regex) is None


def test_only_predicates_on_captures_every_match_has_are_anchors() -> None:
    pattern = '''((call function: (identifier) @f arguments: (_)? @a)
      ; (#eq? @f "commented_out")
      (#eq? @f "eval") (#match? @a "^danger$") (#not-eq? @f "safe") (#any-of? @f "eval" "exec"))'''
    anchors = pattern_anchors(pattern, {"f": "", "a": "?"})
    assert anchors == ["eval", "eval|exec"]


def _example_files() -> list[tuple[str, str]]:
    packs, _ = discover_packs(ROOT / "rules")
    files = []
    for pack in packs:
        for rule in pack.rules:
            if rule.queries:
                files.extend((example.file, example.code) for example in rule.examples)
    return files


def test_anchors_never_change_the_findings_of_any_pack_example() -> None:
    """Every example of every structural rule, and all of them together per language, give the same
    findings with the anchors as with every query run on every file."""
    packs, _ = discover_packs(ROOT / "rules")
    anchored = RuleSet.compile(packs)
    unanchored = RuleSet.compile(packs)
    for structural in unanchored._structural.values():
        structural.anchor_set = None  # every query runs on every file
    files = _example_files()
    assert len(files) > 500
    by_suffix: dict[str, list[str]] = {}
    for name, code in files:
        by_suffix.setdefault(Path(name).suffix, []).append(code)
    files += [(f"all{suffix}", "\n".join(codes)) for suffix, codes in by_suffix.items()]
    skipped = 0
    for name, code in files:
        change = file_as_added(name, code)
        got = sorted((f.rule_id, f.line) for f in anchored.match_file(change))
        want = sorted((f.rule_id, f.line) for f in unanchored.match_file(change))
        assert got == want, name
        structural = anchored._structural.get(change.language or "")
        if structural is not None:
            skipped += len(structural.rules) - len(structural.candidates(code))
    assert skipped > 0  # the anchors did skip queries, so the comparison above compared something
