"""Review use cases: accept a diff, run a review job, read reviews back.

Acceptance is one transaction: the submitted bytes, the review, its job and the audit event commit
together, after the diff was checked (size, encoding, format), so bad input is refused with a clear
error and leaves nothing behind. Running is fenced by the job's lease (see ``appliance.jobs``), so a
review's results are stored exactly once even when its job is delivered twice or a worker died mid-way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from appliance import clock
from appliance.audit import Actor, AuditTag, record_event
from appliance.config import Settings
from appliance.errors import ApplianceError, InvalidDiffError, NotFoundError, PayloadTooLargeError, StoreError
from appliance.inference import ModelClosedError, ModelRuntime
from appliance.jobs import claim_job, create_job, finish_job, keep_lease, release_job
from appliance.review import repo
from appliance.review.diffparse import decode_diff, parse_diff
from appliance.review.engine import RuleSet
from appliance.review.models import ParsedDiff
from appliance.review.pipeline import ReviewOutcome, analyse
from appliance.store import Database

__all__ = ["JOB_KIND", "Accepted", "get_review", "list_reviews", "review_diff_text", "run_review_job",
           "submit_review"]

JOB_KIND = "review"
SOURCES = frozenset({"api", "dashboard", "cli", "scan"})
log = logging.getLogger(__name__)
_SUBJECT = re.compile(r"^Subject: (?:\[PATCH[^\]]*\] )?(.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Accepted:
    review_id: int
    job_id: int


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB" if n >= 1 << 20 else f"{n / 1024:.1f} KB"


def _default_title(text: str, diff: ParsedDiff) -> str:
    subject = _SUBJECT.search(text[:4096])
    if subject:
        return subject.group(1).strip()[:200]
    if len(diff.files) == 1:
        return f"Change to {diff.files[0].path}"[:200]
    return f"{len(diff.files)} files changed"


def submit_review(
    db: Database,
    settings: Settings,
    data: bytes,
    *,
    actor: Actor,
    source: str,
    title: str = "",
    repository: str = "",
    base_ref: str | None = None,
    head_ref: str | None = None,
    use_model: bool = True,
    max_bytes: int | None = None,
) -> Accepted:
    """Check and accept a diff for review.

    Raises:
        PayloadTooLargeError: larger than ``max_diff_bytes`` (or ``max_bytes``).
        InvalidDiffError: empty or malformed; names the first bad line.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown review source {source!r}")
    limit = max_bytes or settings.max_diff_bytes
    try:
        if len(data) > limit:
            raise PayloadTooLargeError(
                f"the diff is {_size(len(data))}; the limit is {_size(limit)} (setting max_diff_bytes). "
                "Split the change or raise the limit.")
        text, replaced = decode_diff(data)
        diff = parse_diff(text, decoding_replaced=replaced)
    except (PayloadTooLargeError, InvalidDiffError) as exc:
        with db.write() as tx:
            record_event(tx, AuditTag.REVIEW_REVIEW_REFUSED, actor, target="review", outcome="failure",
                         details={"source": source, "bytes": len(data), "reason": exc.message})
        raise
    now = clock.now_iso()
    with db.write() as tx:
        submission_id = tx.insert("submissions", {
            "diff": data, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "created_at": now})
        review_id = tx.insert("reviews", {
            "submission_id": submission_id, "source": source,
            "title": (title.strip() or _default_title(text, diff))[:200], "repository": repository.strip()[:200],
            "base_ref": base_ref, "head_ref": head_ref, "use_model": int(use_model),
            "created_by": int(actor.id) if actor.id and actor.kind in ("user", "token") else None,
            "created_by_name": actor.name, "created_at": now, "decoding_replaced": int(replaced),
            "files_total": len(diff.files), "lines_added": diff.lines_added})
        job_id = create_job(tx, JOB_KIND, review_id)
        record_event(tx, AuditTag.REVIEW_REVIEW_CREATED, actor, target=f"review:{review_id}", details={
            "source": source, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "files": len(diff.files), "repository": repository, "job": job_id, "decoding_replaced": replaced})
    return Accepted(review_id, job_id)


def _store_outcome(db: Database, review_id: int, job_id: int, owner: str, outcome: ReviewOutcome) -> bool:
    diff = outcome.diff
    with db.write() as tx:
        if not finish_job(tx, job_id, owner, status="done"):
            return False
        repo.insert_results(tx, review_id, diff.files, outcome.findings)
        dropped = sum(outcome.model.dropped.values())
        tx.execute(
            "UPDATE reviews SET files_total = ?, files_reviewed = ?, lines_added = ?, findings_total = ?, "
            "counts = ?, model_status = ?, model_dropped = ?, provenance = ? WHERE id = ?",
            (len(diff.files), len(diff.reviewable), diff.lines_added, len(outcome.findings),
             json.dumps(outcome.counts, sort_keys=True), outcome.model.status, dropped,
             json.dumps(outcome.provenance, sort_keys=True), review_id))
        record_event(tx, AuditTag.REVIEW_REVIEW_COMPLETED, Actor.system(), target=f"review:{review_id}", details={
            "job": job_id, "findings": len(outcome.findings), "counts": outcome.counts,
            "model": outcome.model.status, "model_dropped": dropped,
            "packs": [f"{p['id']}@{p['display_version']}" for p in outcome.provenance["packs"]]})
    return True


class RuleSetSource(Protocol):
    """Gives the rule set for a repository: a fixed :class:`RuleSet`, or the catalog of active packs."""

    def for_repository(self, repository: str) -> RuleSet: ...


def run_review_job(db: Database, settings: Settings, job_id: int, *, owner: str, ruleset: RuleSetSource,
                   runtime: ModelRuntime | None) -> str:
    """Claim, run and store one review job. Returns what happened: done, failed, released (handed back
    after a transient failure), finished, held, exhausted or superseded (another worker took the job over
    while this one ran)."""
    with db.write() as tx:
        claim = claim_job(tx, job_id, owner, lease_seconds=settings.job_lease_seconds,
                          max_attempts=settings.job_max_attempts)
        target = f"review:{claim.job.ref_id}"
        if claim.reason == "exhausted":
            record_event(tx, AuditTag.REVIEW_REVIEW_FAILED, Actor.system(), target=target, outcome="failure",
                         details={"job": job_id, "error": claim.job.error})
        elif claim.claimed:
            record_event(tx, AuditTag.REVIEW_REVIEW_STARTED, Actor.system(), target=target,
                         details={"job": job_id, "attempt": claim.job.attempts, "worker": owner})
    if not claim.claimed:
        return claim.reason
    review_id = claim.job.ref_id
    try:
        with db.read() as tx:
            row = tx.one("SELECT use_model, repository FROM reviews WHERE id = ?", (review_id,))
            data = repo.submission_bytes(tx, review_id)
        if row is None or data is None:
            raise NotFoundError(f"review {review_id} of job {job_id} has no stored submission")
        with keep_lease(db, job_id, owner, settings.job_lease_seconds):
            rules = ruleset.for_repository(row["repository"])
            outcome = analyse(data, rules, runtime, settings, use_model=bool(row["use_model"]))
        return "done" if _store_outcome(db, review_id, job_id, owner, outcome) else "superseded"
    except (StoreError, ModelClosedError) as exc:
        # Transient: the disk, a lock, or the service stopping. Hand the job back for another attempt;
        # if even that write fails, the lease lapses and reconcile hands it back.
        why = exc.message if isinstance(exc, StoreError) else str(exc)
        log.warning("review %s handed back to the queue: %s", review_id, why)
        with contextlib.suppress(StoreError), db.write() as tx:
            release_job(tx, job_id, owner, why=why)
        return "released"
    except Exception as exc:
        if isinstance(exc, ApplianceError):
            error = exc.message
        else:
            incident = uuid.uuid4().hex[:12]
            log.exception("review %s failed (incident %s)", review_id, incident)
            error = f"internal error while reviewing (incident {incident}; details in the service log)"
        try:
            with db.write() as tx:
                if finish_job(tx, job_id, owner, status="failed", error=error):
                    record_event(tx, AuditTag.REVIEW_REVIEW_FAILED, Actor.system(), target=f"review:{review_id}",
                                 outcome="failure", details={"job": job_id, "error": error})
        except StoreError:
            log.exception("could not record the failure of review %s; its lease will lapse", review_id)
        return "failed"


def get_review(db: Database, review_id: int) -> dict[str, Any]:
    """The full review record (status, summary, files, findings, provenance).

    Raises:
        NotFoundError: no such review.
    """
    with db.read() as tx:
        review = repo.load_review(tx, review_id)
    if review is None:
        raise NotFoundError(f"review {review_id} does not exist")
    return review


def list_reviews(db: Database, *, limit: int = 50, before: int | None = None, status: str | None = None,
                 repository: str | None = None) -> list[dict[str, Any]]:
    with db.read() as tx:
        return repo.load_reviews(tx, limit=max(1, min(limit, 200)), before=before, status=status,
                                 repository=repository)


def review_diff_text(db: Database, review_id: int) -> str:
    with db.read() as tx:
        data = repo.submission_bytes(tx, review_id)
    if data is None:
        raise NotFoundError(f"review {review_id} does not exist")
    return decode_diff(data)[0]


def record_review_access(db: Database, review_id: int, *, actor: Actor, via: str,
                         exported_as: str | None = None) -> int:
    """Record that ``actor`` read a review (``review:review:viewed``) or took it away as a file
    (``review:review:exported``, with ``exported_as``: json, sarif or markdown); returns the event's seq.
    Callers decide how often a repeated read is worth a record (see the web layer's view gate)."""
    tag = AuditTag.REVIEW_REVIEW_EXPORTED if exported_as else AuditTag.REVIEW_REVIEW_VIEWED
    details: dict[str, Any] = {"via": via}
    if exported_as:
        details["format"] = exported_as
    with db.write() as tx:
        return record_event(tx, tag, actor, target=f"review:{review_id}", details=details)
