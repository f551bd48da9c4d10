"""The review as the JSON document ``GET /api/v1/reviews/{id}`` returns."""

from __future__ import annotations

from typing import Any

__all__ = ["review_document", "review_summary"]


def review_summary(review: dict[str, Any], *, base_url: str = "") -> dict[str, Any]:
    """The fields of a review shown in lists, without files and findings."""
    rid = review["id"]
    model = review["provenance"].get("model_review", {})
    return {
        "id": rid,
        "status": review["status"],
        "title": review["title"],
        "repository": review["repository"],
        "source": review["source"],
        "base_ref": review["base_ref"],
        "head_ref": review["head_ref"],
        "created_by": review["created_by_name"],
        "created_at": review["created_at"],
        "started_at": review["started_at"],
        "completed_at": review["finished_at"] if review["status"] in ("done", "failed") else None,
        "attempts": review["attempts"],
        "error": review["error"],
        "summary": {
            "files_total": review["files_total"],
            "files_reviewed": review["files_reviewed"],
            "lines_added": review["lines_added"],
            "findings_total": review["findings_total"],
            "by_severity": review["counts"].get("severity", {}),
            "by_source": review["counts"].get("source", {}),
        },
        "model": {
            "requested": review["use_model"],
            "status": review["model_status"],
            "note": model.get("note", ""),
            "dropped": review["model_dropped"],
            "dropped_by_reason": model.get("dropped", {}),
        },
        "decoding_replaced": review["decoding_replaced"],
        "links": {
            "self": f"{base_url}/api/v1/reviews/{rid}",
            "sarif": f"{base_url}/api/v1/reviews/{rid}/sarif",
            "markdown": f"{base_url}/api/v1/reviews/{rid}/markdown",
            "dashboard": f"{base_url}/reviews/{rid}",
        },
    }


def review_document(review: dict[str, Any], *, base_url: str = "") -> dict[str, Any]:
    doc = review_summary(review, base_url=base_url)
    doc["files"] = review["files"]
    doc["findings"] = [
        {k: f.get(k) for k in ("id", "rank", "source", "rule_id", "pack_id", "pack_version", "path", "line",
                               "severity", "cwe", "title", "message", "fix", "snippet", "fingerprint", "controls",
                               "status", "status_reason")}
        for f in review["findings"]
    ]
    doc["provenance"] = review["provenance"]
    return doc
