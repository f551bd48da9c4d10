"""Keep a model finding only if it is about this diff's added lines and says something.

Dropped findings are never shown; they are counted by reason on the review, so an operator can see how
much the model made up. Reasons: ``file_not_in_diff``, ``line_not_added``, ``empty_message``,
``repetitive_message``, ``duplicate``, ``unparseable_output``.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from typing import Any

from appliance.review.models import ParsedDiff

__all__ = ["DROP_REASONS", "GroundedCandidate", "ground_candidates", "is_repetitive"]

DROP_REASONS = ("file_not_in_diff", "line_not_added", "empty_message", "repetitive_message", "duplicate",
                "unparseable_output")

_WORD = re.compile(r"\w+", re.UNICODE)
_RUN = re.compile(r"(.{1,12}?)\1{4,}", re.DOTALL)


def is_repetitive(message: str) -> bool:
    """True for degenerate generations: runs of one unit ("1.1.1.1."), few distinct words, or text that
    compresses far better than language does."""
    text = message.strip()
    words = _WORD.findall(text.lower())
    if len(words) < 3:
        return True
    if _RUN.search(text):
        return True
    if len(words) >= 8 and len(set(words)) / len(words) < 0.5:
        return True
    return len(text) >= 60 and len(zlib.compress(text.encode("utf-8"), 9)) < 0.35 * len(text.encode("utf-8"))


GroundedCandidate = dict[str, Any]


def ground_candidates(candidates: list[dict[str, Any]], diff: ParsedDiff,
                      seen: set[tuple[str, int, str]] | None = None) -> tuple[list[GroundedCandidate], Counter[str]]:
    """Split raw model findings into the grounded ones and counts of the dropped, by reason.

    Args:
        candidates: dicts with ``file``, ``line``, ``severity``, ``message`` as the model produced them.
        diff: the parsed diff the model was shown.
        seen: (file, line, normalized message) already accepted in this review; updated in place.
    """
    kept: list[GroundedCandidate] = []
    dropped: Counter[str] = Counter()
    seen = set() if seen is None else seen
    for raw in candidates:
        path = str(raw.get("file", ""))
        change = diff.file(path)
        if change is None or not change.reviewable:
            dropped["file_not_in_diff"] += 1
            continue
        line = raw.get("line")
        if not isinstance(line, int) or isinstance(line, bool) or line not in change.added_numbers:
            dropped["line_not_added"] += 1
            continue
        message = " ".join(str(raw.get("message", "")).split())
        if not message:
            dropped["empty_message"] += 1
            continue
        if is_repetitive(message):
            dropped["repetitive_message"] += 1
            continue
        key = (path, line, message.lower())
        if key in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(key)
        kept.append({"file": path, "line": line, "severity": raw.get("severity", "low"), "message": message})
    return kept, dropped
