"""The rule engine: RE2 patterns with a Set prefilter, tree-sitter queries, validators, refusals."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

import pytest

from appliance.errors import PackError
from appliance.packs import load_pack
from appliance.review.diffparse import parse_diff
from appliance.review.engine import RuleSet
from appliance.review.sources import file_as_added
from appliance.review.validators import luhn_valid, ssn_valid


def write_pack(root: Path, pack_id: str, rules: str) -> Path:
    folder = root / pack_id
    (folder / "rules").mkdir(parents=True)
    (folder / "pack.toml").write_text(f'id = "{pack_id}"\nversion = 3\ndisplay_version = "3.0"\nname = "T"\n')
    (folder / "rules" / "rules.toml").write_text(textwrap.dedent(rules))
    return folder


GOOD = '''
[[rule]]
id = "T-EVAL"
title = "eval"
severity = "high"
cwe = 95
languages = ["python"]
message = "eval of input"
pattern = '\\beval\\('

[[rule]]
id = "T-SYSTEM"
title = "os.system with a built command"
severity = "critical"
message = "command injection"
[rule.query]
python = """
((call function: (attribute object: (identifier) @o attribute: (identifier) @a)
       arguments: (argument_list (binary_operator))) @finding
 (#eq? @o "os") (#eq? @a "system"))
"""

[[rule]]
id = "T-CARD"
title = "card number"
severity = "high"
message = "card"
pattern = '\\b(?P<value>(?:\\d[ -]?){12,18}\\d)\\b'
validator = "luhn"
redact = true
'''


def test_pattern_structural_and_validated_rules_find_added_lines_only(tmp_path: Path) -> None:
    ruleset = RuleSet.compile([load_pack(write_pack(tmp_path, "good", GOOD))])
    diff = parse_diff(textwrap.dedent("""\
        --- a/app.py
        +++ b/app.py
        @@ -1,4 +1,8 @@
         import os
        -x = 1
        +value = eval(request.args["x"])
         os.system("ls " + old_dir)
        +os.system(
        +    "rm -rf " + path)
        +card = "4111 1111 1111 1111"
        +not_a_card = "4111 1111 1111 1112"
         print(eval)
        """))
    found = sorted((f.rule_id, f.line) for f in ruleset.match(diff))
    # Line 3 is context: the os.system call there was not added by this change, so it is not a finding.
    assert found == [("T-CARD", 6), ("T-EVAL", 2), ("T-SYSTEM", 4)]
    card = next(f for f in ruleset.match(diff) if f.rule_id == "T-CARD")
    assert "1111 1111 1111" not in (card.snippet or "") and "redacted" in (card.snippet or "")
    assert card.pack_id == "good" and card.pack_version == "3.0"


def test_a_pack_with_a_bad_pattern_is_refused_with_the_rule_id_and_others_still_run(tmp_path: Path) -> None:
    good = load_pack(write_pack(tmp_path, "good", GOOD))
    bad = load_pack(write_pack(tmp_path, "bad", '''
        [[rule]]
        id = "B-1"
        title = "broken"
        severity = "low"
        message = "m"
        pattern = '(unclosed'
        '''))
    ruleset = RuleSet.compile([bad, good])
    assert [p.id for p in ruleset.packs] == ["good"]
    assert len(ruleset.refused) == 1
    refusal = ruleset.refused[0]
    assert refusal.pack_id == "bad" and refusal.rule_id == "B-1" and "RE2" in refusal.message
    assert ruleset.match_file(file_as_added("a.py", "eval(x)\n"))[0].rule_id == "T-EVAL"


@pytest.mark.parametrize(("rule", "reason"), [
    ('[rule.query]\npython = "(call @finding"', "query does not compile"),
    ('[rule.query]\npython = "(call) @other"', "no @finding capture"),
    ('[rule.query]\ncobol = "(x) @finding"', "no tree-sitter grammar"),
    ("pattern = 'x'\nvalidator = 'astrology'", "unknown validator"),
    ("pattern = '(?=x)'", "does not compile with RE2: invalid perl operator: (?="),
    ('redact = true\n[rule.query]\npython = "(call) @finding"', "pattern rules only"),
    ('languages = ["java"]\n[rule.query]\npython = "(call) @finding"\njava = "(method_invocation) @finding"',
     "python query never runs"),
])
def test_bad_queries_and_validators_refuse_the_pack(tmp_path: Path, rule: str, reason: str) -> None:
    pack = load_pack(write_pack(tmp_path, "bad", f'[[rule]]\nid = "B-2"\ntitle = "t"\nseverity = "low"\n'
                                                 f'message = "m"\n{rule}\n'))
    ruleset = RuleSet.compile([pack])
    assert ruleset.packs == [] and reason in ruleset.refused[0].message and ruleset.refused[0].rule_id == "B-2"


@pytest.mark.parametrize(("toml", "message"), [
    ('[[rule]]\nid = "X-1"\ntitle = "t"\nseverity = "urgent"\nmessage = "m"\npattern = "x"\n', "severity must be"),
    ('[[rule]]\nid = "X-1"\ntitle = "t"\nseverity = "low"\nmessage = "m"\n', "exactly one matcher"),
    ('[[rule]]\nid = "X-1"\ntitle = "t"\nseverity = "low"\nmessage = "m"\npattern = "x"\ncolour = 1\n',
     "unknown field"),
])
def test_malformed_rules_are_refused_naming_the_rule(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(PackError, match=message) as caught:
        load_pack(write_pack(tmp_path, "shape", toml))
    assert caught.value.pack_id == "shape" and caught.value.rule_id == "X-1"


def test_a_rule_id_used_twice_refuses_the_pack(tmp_path: Path) -> None:
    rule = '[[rule]]\nid = "X-1"\ntitle = "t"\nseverity = "low"\nmessage = "m"\npattern = "x"\n'
    ruleset = RuleSet.compile([load_pack(write_pack(tmp_path, "twice", rule + rule))])
    assert ruleset.packs == [] and "appears twice" in ruleset.refused[0].message


def test_a_pattern_that_spans_lines_is_still_matched_per_line(tmp_path: Path) -> None:
    pack = load_pack(write_pack(tmp_path, "span", '''
        [[rule]]
        id = "S-1"
        title = "t"
        severity = "low"
        message = "m"
        pattern = 'password\\s*=\\s*\\w+'
        '''))
    ruleset = RuleSet.compile([pack])
    # Joined, "password =" on line 1 could run into line 2; per line, only line 3 matches.
    change = file_as_added("a.cfg", "password =\nhunter2\npassword = hunter3\n")
    assert [f.line for f in ruleset.match_file(change)] == [3]


def test_the_prefilter_never_changes_the_result() -> None:
    from appliance.packs import discover_packs
    from appliance.review.engine import RuleSet as Rules

    packs, _ = discover_packs(Path(__file__).resolve().parents[2] / "rules")
    with_set = Rules.compile(packs)
    without_set = Rules.compile(packs)
    without_set._prefilter = None  # every pattern runs on every file
    rng = random.Random(7)
    fragments = ['password = "Zq8!vR2#mK9$wL4"', "eval(user_input)", "import pickle", "pickle.loads(data)",
                 "x = 1", "verify=False", "AKIAIOSFODNN7EXAMPL3", "4111 1111 1111 1111", "yaml.load(f)",
                 "hashlib.md5(password)", 'cursor.execute("SELECT * FROM t WHERE id=" + uid)', "random.random()"]
    for trial in range(20):
        lines = [rng.choice(fragments) for _ in range(40)]
        name = rng.choice(["a.py", "B.java", "c.js", "d.ts", "e.go", "f.txt"])
        change = file_as_added(name, "\n".join(lines) + "\n")
        got = sorted((f.rule_id, f.line) for f in with_set.match_file(change))
        want = sorted((f.rule_id, f.line) for f in without_set.match_file(change))
        assert got == want, f"trial {trial} on {name}"


def test_validators() -> None:
    assert luhn_valid("4111 1111 1111 1111") and luhn_valid("5500-0000-0000-0004")
    assert not luhn_valid("4111 1111 1111 1112") and not luhn_valid("0000 0000 0000 0000")
    assert ssn_valid("123-45-6780") and not ssn_valid("000-12-3456") and not ssn_valid("666-12-3456")
    assert not ssn_valid("900-12-3456") and not ssn_valid("123-00-4567") and not ssn_valid("078-05-1120")


def test_two_packs_with_the_same_rule_id_both_report(tmp_path: Path) -> None:
    rule = '[[rule]]\nid = "X-001"\ntitle = "t"\nseverity = "low"\nmessage = "m"\npattern = "eval"\n'
    packs = [load_pack(write_pack(tmp_path, name, rule)) for name in ("one", "two")]
    ruleset = RuleSet.compile(packs)
    assert sorted(f.pack_id or "" for f in ruleset.match_file(file_as_added("a.py", "eval(x)\n"))) == ["one", "two"]


@pytest.mark.parametrize("content", [
    '[rule]\nid = "X-1"\ntitle = "t"\nseverity = "low"\nmessage = "m"\npattern = "x"\n',
    'rule = ["not", "tables"]\n',
    '[[rule]]\nid = "X-1"\ntitle = "t"\nseverity = "low"\nmessage = "m"\npattern = "x"\nexample = "oops"\n',
])
def test_a_misshapen_rule_file_refuses_its_pack_and_the_others_load(tmp_path: Path, content: str) -> None:
    from appliance.packs import discover_packs

    write_pack(tmp_path, "good", GOOD)
    write_pack(tmp_path, "misshapen", content)
    packs, errors = discover_packs(tmp_path)
    assert [p.id for p in packs] == ["good"]
    assert [e.pack_id for e in errors] == ["misshapen"] and "[[rule" in errors[0].message
