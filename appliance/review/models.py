"""Plain data of a review: the parsed diff, findings, provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "AddedLine",
    "FileChange",
    "Finding",
    "Hunk",
    "ParsedDiff",
    "Severity",
    "Source",
]


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def weight(self) -> int:
        """Higher is more severe; used for ranking and ``--fail-on``."""
        return _WEIGHTS[self]


_WEIGHTS = {Severity.CRITICAL: 4, Severity.HIGH: 3, Severity.MEDIUM: 2, Severity.LOW: 1, Severity.INFO: 0}


class Source(StrEnum):
    RULE = "rule"
    MODEL = "model"


@dataclass(frozen=True)
class AddedLine:
    number: int  # line number on the new side
    text: str


@dataclass(frozen=True)
class Hunk:
    """One hunk's new side: context and added lines, with new-side numbers."""

    new_start: int
    new_length: int
    header: str
    # (kind, old line or None, new line or None, text); kind is "+", "-" or " ".
    lines: tuple[tuple[str, int | None, int | None, str], ...]
    old_start: int = 0
    old_length: int = 0

    @property
    def range_text(self) -> str:
        """The hunk's ``@@ -a,b +c,d @@`` line as git prints it."""
        return f"@@ -{self.old_start},{self.old_length} +{self.new_start},{self.new_length} @@"

    @property
    def added(self) -> list[AddedLine]:
        return [AddedLine(new, text) for kind, _, new, text in self.lines if kind == "+" and new is not None]


@dataclass
class FileChange:
    path: str
    old_path: str | None
    change: str  # added, modified, deleted, renamed, binary, mode
    language: str | None
    hunks: list[Hunk] = field(default_factory=list)
    skipped: str | None = None  # why the file is listed but not reviewed
    removed: int = 0
    # The whole new file, when the source could provide it (a local repository); else None.
    new_text: str | None = None

    @property
    def added_lines(self) -> list[AddedLine]:
        return [line for hunk in self.hunks for line in hunk.added]

    @property
    def added_numbers(self) -> frozenset[int]:
        return frozenset(line.number for line in self.added_lines)

    @property
    def reviewable(self) -> bool:
        return self.skipped is None and bool(self.hunks)


@dataclass
class ParsedDiff:
    files: list[FileChange]
    decoding_replaced: bool = False

    @property
    def reviewable(self) -> list[FileChange]:
        return [f for f in self.files if f.reviewable]

    @property
    def lines_added(self) -> int:
        return sum(len(f.added_lines) for f in self.files)

    def file(self, path: str) -> FileChange | None:
        for f in self.files:
            if f.path == path:
                return f
        return None


@dataclass
class Finding:
    source: Source
    rule_id: str
    path: str
    line: int
    severity: Severity
    title: str
    message: str
    cwe: int | None = None
    fix: str | None = None
    snippet: str | None = None
    pack_id: str | None = None
    pack_version: str | None = None
    fingerprint: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source), "rule_id": self.rule_id, "pack_id": self.pack_id,
            "pack_version": self.pack_version, "path": self.path, "line": self.line,
            "severity": str(self.severity), "cwe": self.cwe, "title": self.title, "message": self.message,
            "fix": self.fix, "snippet": self.snippet, "fingerprint": self.fingerprint,
        }
