"""What people decided about a finding: open, fixed, accepted risk or false positive.

A decision belongs to the finding's identity in its repository (repository + fingerprint), not to one
review, so it carries over to later reviews that report the same thing. Accepting a risk or calling a
finding a false positive needs a reason; every decision is audited.
"""

from __future__ import annotations

from typing import Any

from appliance import clock
from appliance.audit import Actor, AuditTag, record_event
from appliance.errors import NotFoundError, PermissionDeniedError, ValidationError
from appliance.store import Database

__all__ = ["STATUSES", "set_finding_status"]

STATUSES = ("open", "fixed", "accepted_risk", "false_positive")
_NEEDS_REASON = frozenset({"accepted_risk", "false_positive"})


def set_finding_status(db: Database, finding_id: int, status: str, *, actor: Actor, reason: str = "",
                       may_accept: bool = True) -> dict[str, Any]:
    """Record a decision on finding ``finding_id`` (and every other report of it in the repository).

    Args:
        may_accept: whether the actor may accept a risk or call a finding a false positive (the web layer
            passes the ``findings.accept`` permission; developers may only mark fixed or reopen).

    Raises:
        NotFoundError: no such finding.
        ValidationError: an unknown status, or no reason where one is required.
        PermissionDeniedError: accepting a risk or a false positive without ``may_accept``.
    """
    if status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    if status in _NEEDS_REASON and not may_accept:
        raise PermissionDeniedError(f"marking a finding {status.replace('_', ' ')} is a reviewer's decision "
                                    "(permission findings.accept); you may mark it fixed or reopen it")
    reason = " ".join(reason.split())[:500]
    if status in _NEEDS_REASON and not reason:
        raise ValidationError(f"marking a finding {status.replace('_', ' ')} needs a reason, recorded for auditors")
    with db.write() as tx:
        row = tx.one("SELECT f.id, f.fingerprint, f.rule_id, f.path, f.line, f.review_id, r.repository, "
                     "COALESCE(s.status, 'open') AS previous FROM findings f JOIN reviews r ON r.id = f.review_id "
                     "LEFT JOIN finding_states s ON s.repository = r.repository AND s.fingerprint = f.fingerprint "
                     "WHERE f.id = ?", (finding_id,))
        if row is None:
            raise NotFoundError(f"finding {finding_id} does not exist")
        tx.execute(
            "INSERT INTO finding_states (repository, fingerprint, status, reason, updated_by, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (repository, fingerprint) DO UPDATE SET status = excluded.status, "
            "reason = excluded.reason, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            (row["repository"], row["fingerprint"], status, reason, actor.name, clock.now_iso()))
        record_event(tx, AuditTag.REVIEW_FINDING_TRIAGED, actor, target=f"finding:{finding_id}", details={
            "review": row["review_id"], "repository": row["repository"], "rule": row["rule_id"],
            "location": f"{row['path']}:{row['line']}", "from": row["previous"], "to": status, "reason": reason})
    return {"finding": finding_id, "repository": row["repository"], "status": status, "previous": row["previous"],
            "reason": reason}
