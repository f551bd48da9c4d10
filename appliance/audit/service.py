"""Audited use cases over the log: export a range, verify the log, both recorded as audit events."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO, Any

from appliance.audit.checkpoints import Checkpoint, load_key
from appliance.audit.export import ExportInfo, write_export
from appliance.audit.log import moment, verify_database
from appliance.audit.models import Actor
from appliance.audit.recorder import record_event
from appliance.audit.tags import AuditTag
from appliance.audit.verify import VerifyReport
from appliance.errors import ValidationError
from appliance.store import Database

__all__ = ["export_log", "seq_range", "verify_log"]


def seq_range(db: Database, *, first: int | None = None, last: int | None = None, since: str = "",
              until: str = "") -> tuple[int, int]:
    """The seq range an export covers: explicit seqs, or the events between two times."""
    with db.read() as tx:
        low = first or 1
        high = last if last is not None else int(tx.scalar("SELECT MAX(seq) FROM audit_events") or 0)
        if since:
            found = tx.scalar("SELECT seq FROM audit_events WHERE at >= ? ORDER BY at, seq LIMIT 1",
                              (moment(since, "since"),))
            low = max(low, found if found is not None else high + 1)
        if until:
            bound = moment(until, "until")
            found = tx.scalar("SELECT seq FROM audit_events WHERE at < ? ORDER BY at DESC, seq DESC LIMIT 1",
                              (bound[:10] + "T23:59:59.999999Z" if len(until) == 10 else bound,))
            high = min(high, found if found is not None else 0)
    if low > high:
        raise ValidationError(f"no audit events in that range (seq {low}..{high})")
    return low, high


def export_log(db: Database, data_dir: Path, out: IO[bytes], *, actor: Actor, fmt: str = "jsonl",
               first: int | None = None, last: int | None = None, since: str = "", until: str = "",
               via: str = "cli") -> ExportInfo:
    """Write a verifiable export of a range to ``out`` and record ``audit:log:exported``."""
    low, high = seq_range(db, first=first, last=last, since=since, until=until)
    key = load_key(db, data_dir)
    digest = hashlib.sha256()

    class _Counting:
        def write(self, data: bytes) -> int:
            digest.update(data)
            return out.write(data)

    with db.read() as tx:
        info = write_export(tx, key, _Counting(), fmt=fmt, first=low, last=high)  # type: ignore[arg-type]
    info.sha256 = digest.hexdigest()
    with db.write() as tx:
        record_event(tx, AuditTag.AUDIT_LOG_EXPORTED, actor, target=f"audit:{low}-{high}",
                     details={**info.to_dict(), "via": via, "since": since or None, "until": until or None})
    return info


def verify_log(db: Database, data_dir: Path, *, actor: Actor, checkpoints: list[Checkpoint] | None = None,
               via: str = "cli") -> VerifyReport:
    """Verify the database log (with the auditor's ``checkpoints`` too) and record ``audit:log:verified``."""
    report = verify_database(db, data_dir, extra=checkpoints or [])
    details: dict[str, Any] = {"ok": report.ok, "events": report.events, "size": report.size, "head": report.head,
                               "checkpoints_checked": report.checkpoints, "extra_checkpoints": len(checkpoints or []),
                               "via": via}
    if report.problem:
        details["problem"] = report.problem.to_dict()
    with db.write() as tx:
        record_event(tx, AuditTag.AUDIT_LOG_VERIFIED, actor, target="audit",
                     outcome="success" if report.ok else "failure", details=details)
    return report
