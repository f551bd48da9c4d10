"""Model findings are kept only when grounded in the diff's added lines and saying something."""

from __future__ import annotations

from appliance.review.diffparse import parse_diff
from appliance.review.grounding import ground_candidates, is_repetitive

DIFF = parse_diff("""\
--- a/app.py
+++ b/app.py
@@ -1,2 +1,3 @@
 import os
+os.system(user_input)
 print("done")
--- a/notes.bin
+++ b/notes.bin
@@ -1 +1 @@
-a
+b
""")


def candidate(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {"file": "app.py", "line": 2, "severity": "high",
                               "message": "os.system runs user input through a shell: command injection."}
    base.update(overrides)
    return base


def test_each_kind_of_ungrounded_finding_is_dropped_and_counted() -> None:
    kept, dropped = ground_candidates([
        candidate(),
        candidate(file="elsewhere.py"),
        candidate(line=1),
        candidate(line=3),
        candidate(line="2"),
        candidate(message="   "),
        candidate(message="1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1"),
        candidate(message="bad bad bad bad bad bad bad bad bad bad"),
        candidate(),
    ], DIFF)
    assert kept == [candidate()]
    assert dropped == {"file_not_in_diff": 1, "line_not_added": 3, "empty_message": 1, "repetitive_message": 2,
                       "duplicate": 1}


def test_repetition_heuristics_do_not_reject_ordinary_sentences() -> None:
    assert not is_repetitive("The query is built by concatenating request input, so it is open to SQL injection.")
    assert not is_repetitive("Password compared with == leaks timing; use hmac.compare_digest.")
    assert is_repetitive("ok")
    assert is_repetitive("abcabcabcabcabcabcabc")
