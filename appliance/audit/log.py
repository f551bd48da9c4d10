"""Reading the audit log: search and filters paginated by seq, one event with its nearest checkpoints, and
verification of the whole database log."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from appliance import clock
from appliance.audit.chain import COLUMNS
from appliance.audit.checkpoints import Checkpoint, checkpoint_dir, load_key, read_checkpoint_file, stored_checkpoints
from appliance.audit.keys import PublicKey
from appliance.audit.verify import ROW_SQL, Gap, VerifyReport, verify_rows
from appliance.errors import NotFoundError, ValidationError
from appliance.store import Database, Transaction

__all__ = ["EventFilter", "get_event", "iter_rows", "load_gaps", "moment", "search_events", "verify_database"]

_CHUNK = 20_000
# Events a page may scan for filters no index serves (text, outcome, an area); a page costs ~1 µs per event.
SCAN_WINDOW = 50_000
_SEQ_INDEX = COLUMNS.index("seq")
_OUTCOMES = ("success", "failure", "denied")


@dataclass(frozen=True)
class EventFilter:
    """What the viewer asks for. Every field is optional; text matches actor, action, target and details."""

    text: str = ""
    actor: str = ""
    action: str = ""  # a tag, or a prefix ending in ':' ("auth:"), or an area ("auth")
    outcome: str = ""
    target: str = ""
    since: str = ""  # ISO date or time, inclusive
    until: str = ""  # ISO date or time, exclusive (a bare date means the end of that day)

    def where(self) -> tuple[str, list[Any]]:
        """SQL for the filters except the date range, which :func:`search_events` turns into a seq range
        (events are appended in time order, under the single writer)."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.actor:
            clauses.append("(actor_name = ? OR actor_id = ?)")
            params += [self.actor, self.actor]
        if self.action:
            if self.action.count(":") == 2:
                clauses.append("action = ?")
                params.append(self.action)
            else:
                prefix = self.action if self.action.endswith(":") else self.action + ":"
                clauses.append("action >= ? AND action < ?")
                params += [prefix, prefix[:-1] + ";"]  # ';' sorts right after ':'
        if self.outcome:
            if self.outcome not in _OUTCOMES:
                raise ValidationError(f"outcome must be success, failure or denied, got {self.outcome!r}")
            clauses.append("outcome = ?")
            params.append(self.outcome)
        if self.target:
            clauses.append("target = ?")
            params.append(self.target)
        if self.text:
            like = "%" + self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append("(actor_name LIKE ? ESCAPE '\\' OR action LIKE ? ESCAPE '\\' OR target LIKE ? ESCAPE '\\' "
                           "OR details LIKE ? ESCAPE '\\' OR actor_display LIKE ? ESCAPE '\\' "
                           "OR source_addr LIKE ? ESCAPE '\\')")
            params += [like] * 6
        return (" AND ".join(clauses) or "1"), params


def moment(text: str, name: str) -> str:
    """An ISO date or time as the database's UTC text (a time without a zone is taken as UTC).

    Raises:
        ValidationError: the text is neither.
    """
    try:
        when = clock.from_iso(text if "T" in text else text + "T00:00:00Z")
    except ValueError as exc:
        raise ValidationError(f"{name} must be an ISO date or time (2026-11-24 or 2026-11-24T12:00:00Z), "
                              f"got {text!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return clock.iso(when)


def _event(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["details"] = json.loads(out["details"] or "{}")
    return out


def search_events(db: Database, flt: EventFilter, *, before: int | None = None, after: int | None = None,
                  limit: int = 50, scan_window: int = SCAN_WINDOW) -> dict[str, Any]:
    """One page of events, newest first, keyed by seq (``before``/``after`` are exclusive seq bounds).

    The cost of a page stays flat at a million events: filters on actor, target or one action ride their
    ``(column, seq)`` index; a date range becomes a seq range first (through the index on ``at``); the other
    filters (text, outcome, an area such as ``auth``) scan at most ``scan_window`` events per page, and a
    page that found fewer than ``limit`` in its window says where to go on (``next_before``, ``scanned_from``).
    """
    limit = max(1, min(limit, 500))
    where, params = flt.where()
    with db.read() as tx:
        head = int(tx.scalar("SELECT MAX(seq) FROM audit_events") or 0)
        low, high = 1, head
        if flt.since:
            found = tx.scalar("SELECT seq FROM audit_events WHERE at >= ? ORDER BY at, seq LIMIT 1",
                              (moment(flt.since, "since"),))
            low = found if found is not None else head + 1
        if flt.until:
            bound = moment(flt.until, "until")
            op, bound = ("<=", bound[:10] + "T23:59:59.999999Z") if len(flt.until) == 10 else ("<", bound)
            found = tx.scalar(f"SELECT seq FROM audit_events WHERE at {op} ? "  # noqa: S608
                              "ORDER BY at DESC, seq DESC LIMIT 1", (bound,))
            high = found if found is not None else 0
        ascending = after is not None and before is None
        if before is not None:
            high = min(high, before - 1)
        if after is not None:
            low = max(low, after + 1)
        if low > high:
            return {"events": [], "head": head, "next_before": None,
                    "prev_after": high if before is not None and high < head else None, "scanned_from": None}
        floor, ceiling = low, high
        indexed = bool(flt.actor or flt.target or flt.action.count(":") == 2)
        scanned: int | None = None  # how far a windowed scan went: its lowest seq (or highest, going up)
        if not indexed and (flt.text or flt.outcome or flt.action):
            if ascending:
                high = scanned = min(high, low + scan_window - 1)
            else:
                low = scanned = max(low, high - scan_window + 1)
        rows = tx.query(f"SELECT * FROM audit_events WHERE {where} AND seq >= ? AND seq <= ? "  # noqa: S608
                        f"ORDER BY seq {'ASC' if ascending else 'DESC'} LIMIT ?", (*params, low, high, limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    if ascending:
        rows.reverse()
    events = [_event(r) for r in rows]
    if ascending:
        window_left = scanned is not None and scanned < ceiling
        prev_after = events[0]["seq"] if more else (scanned if window_left else None)
        next_before = events[-1]["seq"] if events else (after + 1 if after is not None else None)
    else:
        window_left = scanned is not None and scanned > floor
        next_before = events[-1]["seq"] if more else (scanned if window_left else None)
        prev_after = (events[0]["seq"] if events else high) if before is not None else None
    return {"events": events, "head": head, "next_before": next_before, "prev_after": prev_after,
            "scanned_from": scanned if not ascending else None}


def get_event(db: Database, seq: int) -> dict[str, Any]:
    """One event, with the checkpoints nearest to it (the first covering it, the last before it).

    Raises:
        NotFoundError: no event has this seq (never written, or purged by retention).
    """
    with db.read() as tx:
        row = tx.one("SELECT * FROM audit_events WHERE seq = ?", (seq,))
        if row is None:
            gap = tx.one("SELECT * FROM audit_gaps WHERE first_seq <= ? AND last_seq >= ?", (seq, seq))
            if gap:
                raise NotFoundError(f"audit event {seq} was purged by retention (marker event {gap['marker_seq']})")
            raise NotFoundError(f"no audit event {seq}")
        covering = tx.one("SELECT * FROM audit_checkpoints WHERE size >= ? ORDER BY size LIMIT 1", (seq,))
        before = tx.one("SELECT * FROM audit_checkpoints WHERE size < ? ORDER BY size DESC LIMIT 1", (seq,))
    event = _event(row)
    event["checkpoint"] = covering and {k: covering[k] for k in ("size", "head", "at", "key_id", "text")}
    event["previous_checkpoint"] = before and {k: before[k] for k in ("size", "head", "at", "key_id", "text")}
    return event


def load_gaps(tx: Transaction) -> list[Gap]:
    return [Gap(r["first_seq"], r["last_seq"], r["last_hash"], r["marker_seq"])
            for r in tx.query("SELECT * FROM audit_gaps ORDER BY first_seq")]


def iter_rows(tx: Transaction, *, first: int = 1, last: int | None = None) -> Iterator[tuple[Any, ...]]:
    """Events ``first``..``last`` in seq order, in chunks (one read snapshot: the caller's ``tx``)."""
    cursor = first - 1
    end = last if last is not None else 1 << 62
    while True:
        rows = tx.rows(f"{ROW_SQL} WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?", (cursor, end, _CHUNK))
        yield from rows
        if len(rows) < _CHUNK:
            return
        cursor = rows[-1][_SEQ_INDEX]


def _file_checkpoints(data_dir: Path) -> list[Checkpoint]:
    found = []
    folder = checkpoint_dir(data_dir)
    if folder.is_dir():
        for path in sorted(folder.glob("checkpoint-*.txt")):
            found.append(read_checkpoint_file(path))
    return found


def verify_database(db: Database, data_dir: Path, *, extra: Sequence[Checkpoint] = (),
                    public: PublicKey | None = None, appliance_id: str | None = None,
                    read_only: bool = False) -> VerifyReport:
    """Verify the database's log against its stored checkpoints, the checkpoint files in the data directory
    and ``extra`` ones (an auditor's copies).

    With ``read_only``, ``public`` and ``appliance_id`` are used as given (None: unknown, so checkpoints
    cannot verify) and the data directory's key is never loaded nor created on first use: ``cortex verify``
    reads state and writes none.
    """
    if not read_only:
        key = load_key(db, data_dir)
        public = public or key.public
        appliance_id = appliance_id or key.appliance_id
    with db.read() as tx:
        checkpoints = [*stored_checkpoints(tx), *_file_checkpoints(data_dir), *extra]
        report = verify_rows(iter_rows(tx), gaps=load_gaps(tx), checkpoints=checkpoints, public=public,
                             appliance_id=appliance_id)
    return report
