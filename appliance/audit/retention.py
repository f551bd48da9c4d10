"""Retention per action class, legal holds, and the purge that keeps the remaining log verifiable.

A purge (``cortex audit purge``, or hourly inside ``cortex serve``) removes the events older than their
class's retention, in one write transaction:

1. it signs a checkpoint at the current head, which covers every event it removes;
2. it writes a signed archive of those events and that checkpoint (``<data_dir>/audit/archives/``), in the
   export format with ``kind = "archive"``: the archive verifies on its own;
3. it deletes the events (the delete trigger admits only seqs declared in ``audit_purge_permit``, a row that
   exists only inside this transaction), records each removed run of seqs in ``audit_gaps`` with the hash
   of its last event, and appends the marker ``audit:retention:purged``, whose details commit to those runs
   (count and SHA-256) and carry an Ed25519 signature. The chain links across each gap through that hash,
   so the remaining log still verifies from its start.

Never purged: purge markers themselves, and events a forwarder has not delivered yet. An active legal hold
that covers a class being purged refuses the purge, and the refusal is audited.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from appliance import clock
from appliance.audit.checkpoints import checkpoint_in, latest_checkpoint, load_key
from appliance.audit.export import write_export, write_export_file
from appliance.audit.models import Actor
from appliance.audit.recorder import record_event
from appliance.audit.tags import AuditTag
from appliance.audit.verify import Gap, marker_statement, ranges_digest
from appliance.errors import ConflictError, NotFoundError, ValidationError
from appliance.store import Database, Transaction

__all__ = ["PurgeResult", "archive_dir", "clear_policy", "list_holds", "list_policies", "place_hold", "purge",
           "release_hold", "set_policy"]

_CLASS = re.compile(r"^[a-z]+(:[a-z_]+){0,2}$")
# Events one purge removes at most: it holds the single writer while it archives and deletes, and other
# writers wait at most busy_timeout (15 s). The next run (hourly, or `cortex audit purge` again) goes on.
PURGE_BATCH = 50_000


def archive_dir(data_dir: Path) -> Path:
    return data_dir / "audit" / "archives"


def _check_class(action_class: str) -> str:
    value = action_class.strip().lower()
    if not _CLASS.match(value) or not any(t.value == value or t.value.startswith(value + ":") for t in AuditTag):
        raise ValidationError(f"{action_class!r} is not an action class: use an area (auth), an area and subject "
                              "(auth:session) or a tag (auth:session:failed) from the audit events page")
    if value.startswith("audit:retention"):
        raise ValidationError("purge markers (audit:retention:*) are kept for good; they cannot have a retention")
    return value


def _matches(action: str, action_class: str) -> bool:
    return action_class == "" or action == action_class or action.startswith(action_class + ":")


def _overlap(a: str, b: str) -> bool:
    return _matches(a, b) or _matches(b, a)


def set_policy(db: Database, action_class: str, days: int, *, actor: Actor) -> None:
    """Keep events of ``action_class`` for ``days`` days (audited)."""
    value = _check_class(action_class)
    if days <= 0:
        raise ValidationError("retention days must be a positive number")
    with db.write() as tx:
        old = tx.scalar("SELECT days FROM audit_retention WHERE action_class = ?", (value,))
        tx.execute("INSERT INTO audit_retention (action_class, days, updated_at, updated_by) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (action_class) DO UPDATE SET days = excluded.days, updated_at = excluded.updated_at, "
                   "updated_by = excluded.updated_by", (value, days, clock.now_iso(), actor.name))
        record_event(tx, AuditTag.AUDIT_RETENTION_CHANGED, actor, target=f"retention:{value}",
                     details={"action_class": value, "days": days, "previous_days": old})


def clear_policy(db: Database, action_class: str, *, actor: Actor) -> None:
    value = action_class.strip().lower()
    with db.write() as tx:
        old = tx.scalar("SELECT days FROM audit_retention WHERE action_class = ?", (value,))
        if old is None:
            raise NotFoundError(f"no retention policy for {value!r}")
        tx.execute("DELETE FROM audit_retention WHERE action_class = ?", (value,))
        record_event(tx, AuditTag.AUDIT_RETENTION_CHANGED, actor, target=f"retention:{value}",
                     details={"action_class": value, "days": None, "previous_days": old})


def list_policies(db: Database) -> list[dict[str, Any]]:
    with db.read() as tx:
        return tx.query("SELECT * FROM audit_retention ORDER BY action_class")


def place_hold(db: Database, reason: str, *, actor: Actor, action_class: str = "") -> int:
    """Stop purges of ``action_class`` (every class when empty) until released; returns the hold's id."""
    value = _check_class(action_class) if action_class else ""
    if not reason.strip():
        raise ValidationError("a legal hold needs a reason (a case or matter reference)")
    with db.write() as tx:
        hold_id = tx.insert("audit_legal_holds", {"action_class": value, "reason": reason.strip()[:500],
                                                  "placed_at": clock.now_iso(), "placed_by": actor.name})
        record_event(tx, AuditTag.AUDIT_HOLD_PLACED, actor, target=f"hold:{hold_id}",
                     details={"hold": hold_id, "action_class": value or "*", "reason": reason.strip()[:500]})
    return hold_id


def release_hold(db: Database, hold_id: int, *, actor: Actor) -> None:
    with db.write() as tx:
        row = tx.one("SELECT * FROM audit_legal_holds WHERE id = ? AND released_at IS NULL", (hold_id,))
        if row is None:
            raise NotFoundError(f"no active legal hold {hold_id}")
        tx.execute("UPDATE audit_legal_holds SET released_at = ?, released_by = ? WHERE id = ?",
                   (clock.now_iso(), actor.name, hold_id))
        record_event(tx, AuditTag.AUDIT_HOLD_RELEASED, actor, target=f"hold:{hold_id}",
                     details={"hold": hold_id, "action_class": row["action_class"] or "*"})


def list_holds(db: Database, *, active_only: bool = False) -> list[dict[str, Any]]:
    with db.read() as tx:
        if active_only:
            return tx.query("SELECT * FROM audit_legal_holds WHERE released_at IS NULL ORDER BY id")
        return tx.query("SELECT * FROM audit_legal_holds ORDER BY id")


@dataclass
class PurgeResult:
    events: int = 0
    marker_seq: int | None = None
    archive: Path | None = None
    ranges: int = 0
    dry_run: bool = False
    by_class: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"events": self.events, "marker_seq": self.marker_seq, "archive": str(self.archive or ""),
                "ranges": self.ranges, "dry_run": self.dry_run, "by_class": self.by_class}


def _candidates(tx: Transaction, policies: list[dict[str, Any]], now: datetime) -> tuple[list[int], dict[str, int]]:
    # Events a forwarder still has to deliver stay until it has.
    floor = tx.scalar("SELECT MIN(cursor_seq) FROM audit_forwarders WHERE removed_at IS NULL")
    limit = floor if floor is not None else 1 << 62
    seqs: set[int] = set()
    counts: dict[str, int] = {}
    for policy in policies:
        cls = policy["action_class"]
        cutoff = clock.iso(now - timedelta(days=int(policy["days"])))
        prefix = cls + ":"
        rows = tx.rows("SELECT seq FROM audit_events WHERE (action = ? OR (action >= ? AND action < ?)) AND at < ? "
                       "AND seq <= ? AND action NOT LIKE 'audit:retention:%'",
                       (cls, prefix, cls + ";", cutoff, limit))
        found = {r[0] for r in rows} - seqs
        counts[cls] = len(found)
        seqs |= found
    return sorted(seqs), counts


def _runs(seqs: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for seq in seqs:
        if runs and runs[-1][1] == seq - 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def purge(db: Database, data_dir: Path, *, actor: Actor, dry_run: bool = False, now: datetime | None = None,
          audit_refusal: bool = True) -> PurgeResult:
    """Apply the retention policies (see the module docstring).

    Raises:
        ConflictError: an active legal hold covers a class with events due (the refusal is audited).
    """
    now = now or clock.now()
    policies = list_policies(db)
    result = PurgeResult(dry_run=dry_run)
    if not policies:
        return result
    with db.read() as tx:
        seqs, counts = _candidates(tx, policies, now)
        holds = tx.query("SELECT * FROM audit_legal_holds WHERE released_at IS NULL ORDER BY id")
    due = [cls for cls, n in counts.items() if n]
    blocking = [h for h in holds if any(_overlap(h["action_class"], cls) for cls in due)]
    if blocking:
        hold = blocking[0]
        message = (f"purge refused: legal hold {hold['id']} ({hold['reason']}) covers "
                   f"{hold['action_class'] or 'every class'}; release it with `cortex audit hold release "
                   f"{hold['id']}` when the matter is closed")
        if audit_refusal:
            with db.write() as tx:
                record_event(tx, AuditTag.AUDIT_RETENTION_REFUSED, actor, target="retention", outcome="denied",
                             details={"holds": [h["id"] for h in blocking], "events_due": len(seqs),
                                      "by_class": counts})
        raise ConflictError(message, details={"holds": [h["id"] for h in blocking]})
    result.by_class = counts
    result.events = len(seqs) if dry_run else min(len(seqs), PURGE_BATCH)
    if dry_run or not seqs:
        return result
    key = load_key(db, data_dir)
    with db.write() as tx:
        seqs, counts = _candidates(tx, policies, now)  # again, inside the writer: nothing moves now
        seqs = seqs[:PURGE_BATCH]
        if not seqs:
            result.events = 0
            return result
        checkpoint = checkpoint_in(tx, key, data_dir) or latest_checkpoint(tx)
        if checkpoint is None:  # unreachable: the log has events, so there is a head to sign
            raise ConflictError("the log has no head to checkpoint")
        head = int(tx.scalar("SELECT MAX(seq) FROM audit_events"))
        marker_seq = head + 1
        runs = _runs(seqs)
        gaps = [Gap(first, last, str(tx.scalar("SELECT hash FROM audit_events WHERE seq = ?", (last,))), marker_seq)
                for first, last in runs]
        stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
        path = archive_dir(data_dir) / f"purge-{stamp}-seq{seqs[0]}-{seqs[-1]}.jsonl"
        write_export_file(path, lambda fh: write_export(tx, key, fh, seqs=seqs, kind="archive",
                                                        extra_checkpoints=[checkpoint]))
        archive_sha = hashlib.sha256(path.read_bytes()).hexdigest()
        tx.execute("INSERT INTO audit_purge_permit (id, up_to_seq) VALUES (1, ?)", (seqs[-1],))
        tx.executemany("DELETE FROM audit_events WHERE seq = ?", [(s,) for s in seqs])
        tx.execute("DELETE FROM audit_purge_permit")
        tx.executemany("INSERT INTO audit_gaps (first_seq, last_seq, last_hash, marker_seq) VALUES (?, ?, ?, ?)",
                       [(g.first_seq, g.last_seq, g.last_hash, g.marker_seq) for g in gaps])
        details: dict[str, Any] = {
            "policies": {p["action_class"]: int(p["days"]) for p in policies}, "by_class": counts,
            "events": len(seqs), "first_seq": seqs[0], "last_seq": seqs[-1], "ranges": len(gaps),
            "ranges_sha256": ranges_digest(gaps), "archive": path.name, "archive_sha256": archive_sha,
            "checkpoint_size": checkpoint.size, "checkpoint_head": checkpoint.head,
            "appliance_id": key.appliance_id, "key_id": key.key_id}
        details["signature"] = key.sign(marker_statement(details))
        written = record_event(tx, AuditTag.AUDIT_RETENTION_PURGED, actor, target="retention", details=details)
        if written != marker_seq:
            raise RuntimeError(f"purge marker landed at seq {written}, expected {marker_seq}")
    result.marker_seq, result.archive, result.ranges, result.by_class = marker_seq, path, len(gaps), counts
    result.events = len(seqs)
    return result
