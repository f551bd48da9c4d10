"""The review domain's SQL."""

from __future__ import annotations

import json
from typing import Any

from appliance.review.models import FileChange, Finding
from appliance.store import Transaction

__all__ = ["count_reviews", "insert_results", "load_review", "load_reviews", "submission_bytes"]

_REVIEW_COLUMNS = """
    r.id, r.source, r.title, r.repository, r.base_ref, r.head_ref, r.use_model, r.created_by_name,
    r.created_at, r.decoding_replaced, r.files_total, r.files_reviewed, r.lines_added, r.findings_total,
    r.counts, r.model_status, r.model_dropped, r.provenance, r.submission_id,
    j.id AS job_id, j.status, j.attempts, j.error, j.started_at, j.finished_at
"""
_FROM = "FROM reviews r JOIN jobs j ON j.kind = 'review' AND j.ref_id = r.id"


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row["counts"] = json.loads(row["counts"] or "{}")
    row["provenance"] = json.loads(row["provenance"] or "{}")
    row["use_model"] = bool(row["use_model"])
    row["decoding_replaced"] = bool(row["decoding_replaced"])
    return row


def load_review(tx: Transaction, review_id: int) -> dict[str, Any] | None:
    row = tx.one(f"SELECT {_REVIEW_COLUMNS} {_FROM} WHERE r.id = ?", (review_id,))
    if row is None:
        return None
    review = _decode(row)
    review["files"] = tx.query(
        "SELECT path, old_path, change, language, added, removed, skipped FROM review_files "
        "WHERE review_id = ? ORDER BY position", (review_id,))
    review["findings"] = tx.query(
        "SELECT f.id, f.rank, f.source, f.rule_id, f.pack_id, f.pack_version, f.path, f.line, f.severity, f.cwe, "
        "f.title, f.message, f.fix, f.snippet, f.fingerprint, f.controls, COALESCE(s.status, 'open') AS status, "
        "s.reason AS status_reason FROM findings f LEFT JOIN finding_states s "
        "ON s.repository = ? AND s.fingerprint = f.fingerprint WHERE f.review_id = ? ORDER BY f.rank",
        (review["repository"], review_id))
    for finding in review["findings"]:
        finding["controls"] = json.loads(finding["controls"])
    return review


def load_reviews(tx: Transaction, *, limit: int, before: int | None = None, status: str | None = None,
                 repository: str | None = None) -> list[dict[str, Any]]:
    where: list[str] = []
    params: list[Any] = []
    if before is not None:
        where.append("r.id < ?")
        params.append(before)
    if status:
        where.append("j.status = ?")
        params.append(status)
    if repository:
        where.append("r.repository = ?")
        params.append(repository)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = tx.query(f"SELECT {_REVIEW_COLUMNS} {_FROM} {clause} ORDER BY r.id DESC LIMIT ?",
                    (*params, limit))
    return [_decode(r) for r in rows]


def count_reviews(tx: Transaction) -> dict[str, int]:
    rows = tx.rows("SELECT status, COUNT(*) FROM jobs WHERE kind = 'review' GROUP BY status")
    return {status: n for status, n in rows}


def submission_bytes(tx: Transaction, review_id: int) -> bytes | None:
    value = tx.scalar("SELECT s.diff FROM submissions s JOIN reviews r ON r.submission_id = s.id WHERE r.id = ?",
                      (review_id,))
    return bytes(value) if value is not None else None


def insert_results(tx: Transaction, review_id: int, files: list[FileChange], findings: list[Finding]) -> None:
    tx.executemany(
        "INSERT INTO review_files (review_id, position, path, old_path, change, language, added, removed, skipped) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(review_id, i, f.path, f.old_path, f.change, f.language, len(f.added_lines), f.removed, f.skipped)
         for i, f in enumerate(files)])
    tx.executemany(
        "INSERT INTO findings (review_id, rank, source, rule_id, pack_id, pack_version, path, line, severity, cwe, "
        "title, message, fix, snippet, fingerprint, controls) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(review_id, rank, str(f.source), f.rule_id, f.pack_id, f.pack_version, f.path, f.line, str(f.severity),
          f.cwe, f.title, f.message, f.fix, f.snippet, f.fingerprint, json.dumps(f.extra.get("controls", [])))
         for rank, f in enumerate(findings, 1)])
