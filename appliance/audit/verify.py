"""Verification of the chain, its checkpoints and retention gaps: in the database, or in an exported file.

The verifier walks events in seq order and stops at the first one that is wrong, saying what is wrong:

- ``modified``: an event does not match its own hash, or was changed and its hash recomputed (the next
  event still links to the original);
- ``deleted``: seqs are missing and no retention purge declared them;
- ``reordered``: an event links to one that comes after it;
- ``inserted``: two events claim the same predecessor;
- ``truncated``: a checkpoint signs a size beyond the log's end;
- ``recomputed``: a checkpoint signs another head for its size than the log has (the chain was rewritten
  from some event on, with fresh hashes);
- ``bad_signature``: a checkpoint, purge marker or export signature does not verify with the key;
- ``forked``: two validly signed checkpoints give two heads for one size;
- ``malformed``: an export or checkpoint file does not parse.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from appliance.audit.chain import COLUMNS, GENESIS, canonical_details, event_hash
from appliance.audit.checkpoints import Checkpoint
from appliance.audit.keys import PublicKey

__all__ = ["ROW_SQL", "Gap", "Problem", "VerifyReport", "marker_statement", "ranges_digest", "verify_rows"]

# Rows as the verifier reads them: the hashed columns, then prev_hash and hash.
ROW_SQL = f"SELECT {', '.join(COLUMNS)}, prev_hash, hash FROM audit_events"  # noqa: S608
_SEQ, _PREV, _HASH = COLUMNS.index("seq"), len(COLUMNS), len(COLUMNS) + 1
PURGE_ACTION = "audit:retention:purged"


@dataclass(frozen=True)
class Gap:
    first_seq: int
    last_seq: int
    last_hash: str
    marker_seq: int


@dataclass(frozen=True)
class Problem:
    seq: int
    kind: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "message": self.message}


@dataclass
class VerifyReport:
    ok: bool = True
    events: int = 0  # events present and checked
    size: int = 0  # seq of the last event
    head: str = GENESIS
    first_seq: int | None = None
    checkpoints: int = 0  # checkpoints whose signature and head were checked
    newest_checkpoint: int | None = None
    gaps: int = 0
    problem: Problem | None = None
    notes: list[str] = field(default_factory=list)

    def fail(self, problem: Problem) -> None:
        if self.problem is None or problem.seq < self.problem.seq:
            self.problem = problem
        self.ok = False

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "status": "ok" if self.ok else "failed", "events": self.events, "size": self.size,
                "head": self.head, "first_seq": self.first_seq, "checkpoints_checked": self.checkpoints,
                "newest_checkpoint": self.newest_checkpoint, "purged_gaps": self.gaps,
                "problem": self.problem.to_dict() if self.problem else None, "notes": self.notes}

    def summary(self) -> str:
        if self.ok:
            return (f"OK: {self.events} events verified, size {self.size}, head {self.head}; "
                    f"{self.checkpoints} checkpoint(s) checked"
                    + (f", newest at size {self.newest_checkpoint}" if self.newest_checkpoint else "")
                    + (f"; {self.gaps} purged range(s) declared by signed markers" if self.gaps else ""))
        problem = self.problem or Problem(0, "malformed", "unknown")
        return f"FAILED at seq {problem.seq}: {problem.kind}: {problem.message}"


def ranges_digest(gaps: Sequence[Gap]) -> str:
    """SHA-256 over the canonical JSON list ``[[first, last, last_hash], …]`` of one purge's gaps."""
    body = json.dumps([[g.first_seq, g.last_seq, g.last_hash] for g in sorted(gaps, key=lambda g: g.first_seq)],
                      separators=(",", ":"))
    return hashlib.sha256(body.encode("ascii")).hexdigest()


def marker_statement(details: dict[str, Any]) -> bytes:
    """The bytes a purge marker's ``signature`` signs: its details without the signature, canonical."""
    return canonical_details({k: v for k, v in details.items() if k != "signature"}).encode("utf-8")


class _Peekable:
    def __init__(self, rows: Iterable[Sequence[Any]]) -> None:
        self._it: Iterator[Sequence[Any]] = iter(rows)
        self._next: Sequence[Any] | None = None

    def __iter__(self) -> _Peekable:
        return self

    def __next__(self) -> Sequence[Any]:
        if self._next is not None:
            row, self._next = self._next, None
            return row
        return next(self._it)

    def peek(self) -> Sequence[Any] | None:
        if self._next is None:
            self._next = next(self._it, None)
        return self._next


def _check_checkpoints(report: VerifyReport, checkpoints: Sequence[Checkpoint], public: PublicKey | None,
                       appliance_id: str | None) -> dict[int, Checkpoint]:
    """Signatures, appliance ids and forks; returns the good checkpoints by size."""
    by_size: dict[int, Checkpoint] = {}
    for cp in checkpoints:
        if appliance_id is not None and cp.appliance_id != appliance_id:
            report.fail(Problem(cp.size, "bad_signature", f"checkpoint {cp.origin} belongs to appliance "
                                f"{cp.appliance_id}, not {appliance_id}"))
            continue
        if public is None or not cp.verifies_with(public):
            why = "no public key to check it with" if public is None else (
                f"its signature does not verify with key {public.key_id}" if cp.key_id == public.key_id
                else f"it names key {cp.key_id}, not {public.key_id}")
            report.fail(Problem(cp.size, "bad_signature", f"checkpoint at size {cp.size} ({cp.origin}): {why}"))
            continue
        known = by_size.get(cp.size)
        if known is not None and known.head != cp.head:
            report.fail(Problem(cp.size, "forked", f"two heads for size {cp.size}: {known.head} "
                                f"({known.origin}) and {cp.head} ({cp.origin}), both validly signed"))
            continue
        by_size[cp.size] = cp
    return by_size


def _classify_link(seq: int, row: Sequence[Any], prev_row: Sequence[Any] | None, nxt: Sequence[Any] | None,
                   recomputed: str) -> Problem:
    if prev_row is not None and row[_PREV] == prev_row[_PREV]:
        return Problem(prev_row[_SEQ], "inserted", f"events {prev_row[_SEQ]} and {seq} both claim the same "
                       f"predecessor: event {prev_row[_SEQ]} was inserted")
    if nxt is not None and row[_PREV] == nxt[_HASH]:
        return Problem(seq, "reordered", f"event {seq} links to event {nxt[_SEQ]}, which comes after it: "
                       "events were swapped or moved")
    if recomputed == row[_HASH] and prev_row is not None:
        return Problem(prev_row[_SEQ], "modified", f"event {prev_row[_SEQ]} was changed and its hash "
                       f"recomputed: event {seq} still links to its original hash")
    return Problem(seq, "modified", f"event {seq} does not link to the event before it")


def verify_rows(rows: Iterable[Sequence[Any]], *, gaps: Sequence[Gap] = (), checkpoints: Sequence[Checkpoint] = (),
                public: PublicKey | None = None, appliance_id: str | None = None, from_genesis: bool = True,
                markers: dict[int, dict[str, Any]] | None = None) -> VerifyReport:
    """Verify events given in seq order (each row: :data:`ROW_SQL`'s columns).

    Args:
        rows: the events, oldest first.
        gaps: purged ranges, each declared by a purge marker event.
        checkpoints: signed checkpoints to hold the chain to (the database's, files, an export's).
        public: the appliance's public key (needed for checkpoints and purge markers).
        appliance_id: the appliance the checkpoints must name (None: do not check).
        from_genesis: the first event must be seq 1 (or follow declared gaps) and link to 64 zeros; off
            for an exported range, which starts wherever it starts.
        markers: purge marker details by seq, when they are not among ``rows`` (an export's range).
    """
    report = VerifyReport()
    by_size = _check_checkpoints(report, checkpoints, public, appliance_id)
    by_first = {g.first_seq: g for g in gaps}
    gap_by_last = {g.last_seq: g for g in gaps}
    seen_markers: dict[int, dict[str, Any]] = dict(markers or {})
    expected_seq: int | None = 1 if from_genesis else None
    expected_prev = GENESIS
    prev_row: Sequence[Any] | None = None
    stream = _Peekable(rows)
    for row in stream:
        seq = row[_SEQ]
        if expected_seq is None:
            expected_seq, expected_prev = seq, row[_PREV]
            report.first_seq = seq
        while expected_seq in by_first and seq > expected_seq:
            gap = by_first[expected_seq]
            expected_seq, expected_prev = gap.last_seq + 1, gap.last_hash
            report.gaps += 1
        if report.first_seq is None:
            report.first_seq = seq
        if seq > expected_seq:
            report.fail(Problem(expected_seq, "deleted", f"events {expected_seq}..{seq - 1} are missing and no "
                                "retention purge declared them" if seq - 1 > expected_seq else
                                f"event {expected_seq} is missing and no retention purge declared it"))
            break
        if seq < expected_seq:
            report.fail(Problem(seq, "reordered", f"event {seq} comes after event {expected_seq - 1}"))
            break
        recomputed = event_hash(row[_PREV], row)
        if row[_PREV] != expected_prev:
            report.fail(_classify_link(seq, row, prev_row, stream.peek(), recomputed))
            break
        if recomputed != row[_HASH]:
            report.fail(Problem(seq, "modified", f"event {seq} does not match its hash: it was changed after "
                                "it was written"))
            break
        if row[COLUMNS.index("action")] == PURGE_ACTION:
            seen_markers[seq] = json.loads(row[COLUMNS.index("details")])
        cp = by_size.get(seq)
        if cp is not None:
            if cp.head != row[_HASH]:
                report.fail(Problem(seq, "recomputed", f"checkpoint at size {seq} ({cp.origin}, signed {cp.at}) "
                                    f"signs head {cp.head}, but the log has {row[_HASH]}: the chain was rewritten "
                                    f"at or before seq {seq}"))
                break
            report.checkpoints += 1
            report.newest_checkpoint = seq
        report.events += 1
        report.size, report.head = seq, row[_HASH]
        expected_seq, expected_prev = seq + 1, row[_HASH]
        prev_row = row
    if report.problem is None or report.problem.kind in ("bad_signature", "forked"):
        end = report.size
        for size, cp in sorted(by_size.items()):
            if size <= end:
                purged = gap_by_last.get(size)
                if purged is not None and purged.last_hash != cp.head:
                    report.fail(Problem(size, "recomputed", f"checkpoint at size {size} signs head {cp.head}, "
                                        f"but the purge recorded {purged.last_hash}"))
                continue
            if size < (report.first_seq or 1):
                continue
            report.fail(Problem(end + 1, "truncated", f"the log ends at seq {end}, but checkpoint {cp.origin} "
                                f"(signed {cp.at}) covers {size} events: events after {end} were removed"))
            break
    _check_markers(report, gaps, seen_markers, public)
    if report.ok and not by_size:
        report.notes.append("no checkpoint was checked: the chain is consistent, but a chain rewritten from the "
                            "start, or cut at its end, would look the same")
    return report


def _check_markers(report: VerifyReport, gaps: Sequence[Gap], markers: dict[int, dict[str, Any]],
                   public: PublicKey | None) -> None:
    by_marker: dict[int, list[Gap]] = {}
    for gap in gaps:
        by_marker.setdefault(gap.marker_seq, []).append(gap)
    for marker_seq, own in sorted(by_marker.items()):
        first = min(g.first_seq for g in own)
        details = markers.get(marker_seq)
        if details is None:
            report.fail(Problem(first, "deleted", f"purged ranges cite marker event {marker_seq}, which is not "
                                "in the log"))
            continue
        if details.get("ranges_sha256") != ranges_digest(own) or details.get("ranges") != len(own):
            report.fail(Problem(first, "deleted", f"the purged ranges do not match what marker event "
                                f"{marker_seq} declared"))
            continue
        if public is None or not public.verify(str(details.get("signature", "")), marker_statement(details)):
            report.fail(Problem(marker_seq, "bad_signature", f"the purge marker at seq {marker_seq} is not "
                                "signed by the appliance's audit key"))
