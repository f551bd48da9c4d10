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
    assert anchors == [_word("eval"), _word("eval|exec")]


def _word(anchor: str, start: bool = True, end: bool = True) -> str:
    before = "(?:^|[^A-Za-z0-9_]|[0-9][A-Za-z0-9_]*|![A-Za-z])" if start else ""
    return before + f"(?:{anchor})" + ("(?:[^A-Za-z0-9_]|$)" if end else "")


@pytest.mark.parametrize(("pattern", "anchors"), [
    # eq? and any-of? on an identifier token: the literal as a word
    ('((identifier) @f (#eq? @f "iv"))', [_word("iv")]),
    ('((pair key: (property_identifier) @k) (#any-of? @k "iv" "nonce"))', [_word("iv|nonce")]),
    # an alternation of identifier tokens is one, also nested and under several alternatives
    ('((call arguments: (_ [[(identifier) (property_identifier)] @v (_ (field_identifier) @v)]))'
     ' (#eq? @v "ssn"))', [_word("ssn")]),
    # a regex is bounded only on the sides every alternative is anchored on
    ('((identifier) @v (#match? @v "(?i)^(ssn|dob)$"))', [_word("(?i)(ssn|dob)")]),
    (r'((identifier) @v (#match? @v "\\Aiv|^nonce"))', [_word("iv|nonce", end=False)]),
    (r'((identifier) @v (#match? @v "_iv$|_nonce\\Z"))', [_word("_iv|_nonce", start=False)]),
    (r'((identifier) @v (#match? @v "^iv|nonce$"))', ["(?:iv|nonce)"]),
    (r'((identifier) @v (#match? @v "^iv\\\\$"))', [_word(r"iv\\")]),  # an escaped backslash, then $
    (r'((identifier) @v (#match? @v "^iv\\$"))', [_word(r"iv\$", end=False)]),  # a literal $
    # not an identifier token: a plain substring anchor
    ('((_) @o (#eq? @o "log"))', ["log"]),
    ('([(identifier) (attribute)] @f (#eq? @f "open"))', ["open"]),
    ('([(a (identifier) @x) (b (string) @x)] (#eq? @x "iv"))', ["iv"]),
    ('((identifier (x)) @q (#eq? @q "iv"))', ["iv"]),
    ('((_ [(identifier) _] @x) (#eq? @x "nonce"))', ["nonce"]),  # the wildcard matches any node
    ('((pair [key: (property_identifier)] @x) (#eq? @x "iv"))', [_word("iv")]),
    ('(("+=" @w) (#eq? @w "+="))', [re2.escape("+=")]),
])
def test_identifier_tokens_get_word_boundaries(pattern: str, anchors: list[str]) -> None:
    captures = {name: "" for name in re.findall(r"@(\w+)", pattern)}
    assert pattern_anchors(pattern, captures) == anchors


@pytest.mark.parametrize(("anchor", "text", "found"), [
    ("iv", "iv = b'0' * 16", True),  # at the start of the text
    ("iv", "cipher(key, iv)", True),
    ("iv", "x = 1iv", True),  # broken code: the number 1, then the identifier iv
    ("iv", "x = 0x1fiv", True),
    ("iv", 'f"{x!riv}"', True),
    ("iv", "y = $iv", True),
    ("iv", "é = iv", True),
    ("iv", "return iv", True),  # at the end of the text
    ("iv", "private = active", False),
    ("iv", "iv_len = 16", False),
    ("iv", "_iv = x", False),
])
def test_a_word_anchor_is_found_wherever_the_identifier_stands(anchor: str, text: str, found: bool) -> None:
    assert bool(re2.search(_word(anchor), text)) is found


_BROKEN_CODE = {
    "broken.py": "x = 1iv + 0x1fnonce\nprint($key, 2token)\ndef (iv\ny = f\"{x!riv}\"\n",
    "Broken.java": "class A { int x = 1iv; void f( { iv$ = nonce#x; } \n",
    "broken.js": "const x = 1iv; obj.#priv = $key; 0b1nonce\n",
    "broken.ts": "let x: number = 1iv; function (a { iv }\n",
    "broken.go": "func f() { x := 1iv; y := 0x1fnonce }\n",
}


def test_every_identifier_token_of_every_example_stands_as_a_word() -> None:
    """The lexers' maximal munch, checked on the real grammars: every identifier token in every pack
    example, and in broken code, is found by its word anchor."""
    from appliance.review.anchors import _IDENTIFIER_TOKENS
    from appliance.review.structure import new_side_source, parser_for

    files = [*_example_files(), *_BROKEN_CODE.items()]
    checked = 0
    for name, code in files:
        change = file_as_added(name, code)
        if change.language not in ("python", "java", "javascript", "typescript", "tsx", "go"):
            continue
        source = new_side_source(change)
        tree = parser_for(change.language).parse(source)
        text = source.decode("utf-8", errors="replace")
        stack = [tree.root_node]
        while stack:
            node = stack.pop()
            stack.extend(node.children)
            if node.type in _IDENTIFIER_TOKENS and node.child_count == 0 and node.text:
                word = node.text.decode("utf-8", errors="replace")
                assert re2.search(_word(re2.escape(word)), text), (name, node.type, word)
                checked += 1
    assert checked > 5000


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
