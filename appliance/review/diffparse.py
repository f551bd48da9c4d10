"""Unified diffs (``git diff``, ``git format-patch``, ``diff -u``) into :class:`ParsedDiff`, via unidiff.

Errors name the first line that could not be understood, counted from 1 in the submitted text.
Binary files, rename-only and mode-only changes and deletions are listed and skipped with a reason.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from appliance.errors import InvalidDiffError
from appliance.review.languages import detect_language
from appliance.review.models import FileChange, Hunk, ParsedDiff

__all__ = ["decode_diff", "parse_diff"]


def decode_diff(data: bytes) -> tuple[str, bool]:
    """Decode submitted bytes as UTF-8. Undecodable bytes become U+FFFD and the flag says so."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), True


def _lines(text: str) -> list[str]:
    """Lines ending in their newline. Only "\n" ends a line in a diff: str.splitlines() would also split
    on form feeds, \x1c-\x1e and Unicode separators, which are ordinary characters inside source lines."""
    lines = [line + "\n" for line in text.split("\n")]
    if lines and lines[-1] == "\n":
        lines.pop()
    elif lines:
        lines[-1] = lines[-1][:-1]
    return lines


class _Tracker:
    """Feeds lines to unidiff and remembers which one it was reading when it gave up."""

    def __init__(self, text: str) -> None:
        self.lines = _lines(text)
        self.current = 0  # 1-based number of the last line handed out

    def __iter__(self) -> Iterator[str]:
        for number, line in enumerate(self.lines, 1):
            self.current = number
            yield line


def _first_content_line(text: str) -> tuple[int, str] | None:
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            return number, line
    return None


def _describe(reason: str) -> str:
    reason = reason.split(":", 1)[0].strip()
    return {
        "Hunk diff line expected": "a line inside a hunk must start with '+', '-', ' ' or '\\'",
        "Hunk is longer than expected": "the hunk has more lines than its @@ header counts",
        "Hunk is shorter than expected": "the hunk ends before the number of lines its @@ header counts",
        "Unexpected hunk found": "an @@ hunk header appears before any '--- / +++' file header",
        "Target without source": "a '+++' file header without the '---' header before it",
        "Unexpected marker": "a '\\ No newline at end of file' marker outside a hunk",
    }.get(reason, reason[:1].lower() + reason[1:])


def parse_diff(text: str, *, decoding_replaced: bool = False) -> ParsedDiff:
    """Parse a unified diff.

    Raises:
        InvalidDiffError: the text is empty, holds no file changes, or breaks the format; the error names
            the first bad line.
    """
    if not text.strip():
        raise InvalidDiffError("the diff is empty: submit the output of `git diff` or `git format-patch`")
    # CRLF diffs (a browser's textarea, Windows tools): without this a header's \r ends up in the path,
    # which then has no language and escapes every language-specific rule.
    text = text.replace("\r\n", "\n")
    tracker = _Tracker(text)
    try:
        patch = PatchSet(iter(tracker))
    except UnidiffParseError as exc:
        number = tracker.current
        bad = tracker.lines[number - 1].rstrip("\r\n") if 0 < number <= len(tracker.lines) else ""
        where = f"line {number}" if number else "the end of the diff"
        raise InvalidDiffError(
            f"the diff is malformed at {where} ({bad[:80]!r}): {_describe(str(exc))}",
            line=number, text=bad) from exc

    if len(patch) == 0:
        first = _first_content_line(text) or (1, "")
        raise InvalidDiffError(
            f"the diff holds no file changes: line {first[0]} ({first[1][:80]!r}) is not part of a unified "
            "diff, which starts with 'diff --git' or a '--- a/file' / '+++ b/file' header",
            line=first[0], text=first[1])

    files: list[FileChange] = []
    for patched in patch:
        path = patched.path
        old_path = patched.source_file[2:] if patched.source_file.startswith("a/") else patched.source_file
        if patched.is_removed_file:
            change = "deleted"
        elif patched.is_added_file:
            change = "added"
        elif patched.is_rename:
            change = "renamed"
        else:
            change = "modified"
        entry = FileChange(
            path=path,
            old_path=old_path if patched.is_rename else None,
            change=change,
            language=detect_language(path),
            removed=patched.removed,
        )
        if patched.is_binary_file:
            entry.change = "binary"
            entry.skipped = "binary file"
        elif patched.is_removed_file:
            entry.skipped = "file deleted"
        elif len(patched) == 0:
            entry.skipped = "renamed without changes" if patched.is_rename else "no content change (mode only)"
        else:
            for hunk in patched:
                lines = tuple(
                    (line.line_type, line.source_line_no, line.target_line_no, line.value.removesuffix("\n"))
                    for line in hunk
                    if line.line_type in ("+", "-", " ")
                )
                entry.hunks.append(Hunk(
                    new_start=hunk.target_start, new_length=hunk.target_length,
                    header=hunk.section_header or "", lines=lines,
                    old_start=hunk.source_start, old_length=hunk.source_length))
            if not entry.added_lines:
                entry.skipped = "no added lines"
        files.append(entry)
    return ParsedDiff(files=files, decoding_replaced=decoding_replaced)
