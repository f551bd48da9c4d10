"""Diff parsing on diffs made by real git, and on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import InvalidDiffError
from appliance.review.diffparse import decode_diff, parse_diff
from tests.support import git, init_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = init_repo(tmp_path / "repo", {
        "app.py": "import os\n\n\ndef main():\n    return 0\n", "old_name.py": "VALUE = 1\n", "gone.txt": "bye\n",
        "logo.bin": b"\x00\x01\x02binary"}, branch="feature")
    (root / "app.py").write_text("import os\n\n\ndef main(cmd):\n    os.system(cmd)\n    return 0\n")
    git(root, "mv", "old_name.py", "new_name.py")
    git(root, "rm", "-q", "gone.txt")
    (root / "logo.bin").write_bytes(b"\x00\x01\x02binary, changed")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    git(root, "add", ".")
    git(root, "commit", "-qm", "Let main run a command\n\nBody.")
    return root


def test_git_diff_lists_every_file_and_skips_what_cannot_be_reviewed(repo: Path) -> None:
    diff = parse_diff(git(repo, "diff", "-M", "main...feature"))
    files = {f.path: f for f in diff.files}
    assert files["app.py"].change == "modified" and files["app.py"].language == "python"
    assert [(line.number, line.text) for line in files["app.py"].added_lines] == [
        (4, "def main(cmd):"), (5, "    os.system(cmd)")]
    assert files["new_name.py"].change == "renamed" and files["new_name.py"].old_path == "old_name.py"
    assert files["new_name.py"].skipped == "renamed without changes"
    assert files["gone.txt"].skipped == "file deleted"
    assert files["logo.bin"].skipped == "binary file"
    assert files["run.sh"].change == "added" and files["run.sh"].reviewable
    assert sorted(f.path for f in diff.reviewable) == ["app.py", "run.sh"]


def test_format_patch_with_mail_headers_parses(repo: Path) -> None:
    patch = git(repo, "format-patch", "--stdout", "main..feature")
    assert patch.startswith("From ")
    diff = parse_diff(patch)
    assert sorted(f.path for f in diff.reviewable) == ["app.py", "run.sh"]


def test_malformed_diff_names_the_first_bad_line() -> None:
    text = ("diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,3 @@\n import os\n+import sys\n"
            "this line does not belong in a hunk\n")
    with pytest.raises(InvalidDiffError) as caught:
        parse_diff(text)
    assert caught.value.line == 7
    assert "line 7" in caught.value.message and "must start with" in caught.value.message
    assert caught.value.status_code == 422


def test_a_hunk_shorter_than_its_header_is_refused() -> None:
    with pytest.raises(InvalidDiffError, match=r"shorter than its @@ header|ends before"):
        parse_diff("--- a/x.py\n+++ b/x.py\n@@ -1,5 +1,6 @@\n import os\n+import sys\n")


def test_empty_and_non_diff_input_are_refused_clearly() -> None:
    with pytest.raises(InvalidDiffError, match="the diff is empty"):
        parse_diff("  \n\n")
    with pytest.raises(InvalidDiffError, match=r"line 2 .*not part of a unified diff") as caught:
        parse_diff("\nhello, this is an email\n")
    assert caught.value.line == 2


def test_non_utf8_is_decoded_with_replacement_and_flagged() -> None:
    raw = b"--- a/x.py\n+++ b/x.py\n@@ -0,0 +1 @@\n+name = 'caf" + b"\xe9'\n"
    text, replaced = decode_diff(raw)
    assert replaced and "\ufffd" in text
    diff = parse_diff(text, decoding_replaced=replaced)
    assert diff.decoding_replaced and diff.files[0].added_lines[0].text == "name = 'caf\ufffd'"
    assert decode_diff(b"ok")[1] is False


def test_crlf_diffs_keep_their_paths_and_languages() -> None:
    text = "--- a/app.py\r\n+++ b/app.py\r\n@@ -0,0 +1,2 @@\r\n+import pickle\r\n+data = pickle.loads(request.data)\r\n"
    change = parse_diff(text).files[0]
    assert change.path == "app.py" and change.language == "python"
    assert [line.text for line in change.added_lines] == ["import pickle", "data = pickle.loads(request.data)"]


def test_form_feeds_and_unicode_separators_are_ordinary_characters() -> None:
    text = ("--- a/x.c\n+++ b/x.c\n@@ -0,0 +1,3 @@\n+int a;\n+\x0c\n+char *s = \"\u2028sep\x1cfs\x85nel\";\n"
            "--- a/y.py\n+++ b/y.py\n@@ -0,0 +1 @@\n+b = 1\n")
    diff = parse_diff(text)
    assert [f.path for f in diff.files] == ["x.c", "y.py"]
    assert [line.number for line in diff.files[0].added_lines] == [1, 2, 3]
    assert diff.files[0].added_lines[2].text == "char *s = \"\u2028sep\x1cfs\x85nel\";"
