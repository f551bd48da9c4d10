"""The review as a SARIF 2.1.0 log (OASIS Standard, errata 01), for code-scanning tools and CI gates.

One run; every rule that produced a finding is a ``reportingDescriptor`` of the driver, model findings
share one descriptor per model. Provenance travels in the run's property bag (SARIF §3.8).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from appliance import __version__

__all__ = ["SARIF_SCHEMA_PATH", "review_sarif"]

SARIF_SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "sarif-schema-2.1.0.json"
_SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"

# SARIF §3.27.10 levels; GitHub's security-severity scale for ranking in code-scanning views.
_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
_SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "0.0"}


def _descriptor(finding: dict[str, Any]) -> dict[str, Any]:
    tags = ["model" if finding["source"] == "model" else "security"]
    if finding["cwe"]:
        tags.append(f"external/cwe/cwe-{finding['cwe']}")
    descriptor: dict[str, Any] = {
        "id": finding["rule_id"],
        "name": finding["title"],
        "shortDescription": {"text": finding["title"]},
        "defaultConfiguration": {"level": _LEVEL[finding["severity"]]},
        "properties": {"tags": tags, "security-severity": _SECURITY_SEVERITY[finding["severity"]],
                       "source": finding["source"]},
    }
    if finding["source"] == "rule":
        descriptor["fullDescription"] = {"text": finding["message"]}
        if finding["fix"]:
            descriptor["help"] = {"text": finding["fix"]}
        descriptor["properties"].update({"pack": finding["pack_id"], "packVersion": finding["pack_version"]})
        if finding["cwe"]:
            descriptor["properties"]["cwe"] = f"CWE-{finding['cwe']}"
    return descriptor


def _rule_ids(findings: list[dict[str, Any]]) -> dict[tuple[str | None, str], str]:
    """SARIF rule ids: the rule's own id, or ``pack/rule`` where two packs use the same id."""
    packs_by_rule: dict[str, set[str | None]] = {}
    for f in findings:
        packs_by_rule.setdefault(f["rule_id"], set()).add(f["pack_id"])
    return {(f["pack_id"], f["rule_id"]): f"{f['pack_id']}/{f['rule_id']}" if len(packs_by_rule[f["rule_id"]]) > 1
            else f["rule_id"] for f in findings}


def review_sarif(review: dict[str, Any], *, base_url: str = "") -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    results = []
    ids = _rule_ids(review["findings"])
    for finding in review["findings"]:
        rule_id = ids[(finding["pack_id"], finding["rule_id"])]
        if rule_id not in index:
            index[rule_id] = len(rules)
            rules.append({**_descriptor(finding), "id": rule_id})
        region: dict[str, Any] = {"startLine": finding["line"]}
        if finding["snippet"]:
            region["snippet"] = {"text": finding["snippet"]}
        result: dict[str, Any] = {
            "ruleId": rule_id,
            "ruleIndex": index[rule_id],
            "level": _LEVEL[finding["severity"]],
            "message": {"text": finding["message"]},
            "locations": [{"physicalLocation": {
                # SARIF §3.4.3: a URI reference; a path with spaces, '#', '%' or non-ASCII is percent-encoded.
                "artifactLocation": {"uri": quote(finding["path"], safe="/"), "uriBaseId": "%SRCROOT%"},
                "region": region}}],
            "partialFingerprints": {"cortexFingerprint/v1": finding["fingerprint"]},
            "properties": {"source": finding["source"], "severity": finding["severity"]},
        }
        if finding["source"] == "model":
            result["kind"] = "review"
            result["properties"]["unverified"] = True
        results.append(result)
    invocation: dict[str, Any] = {"executionSuccessful": review["status"] == "done"}
    if review.get("started_at"):
        invocation["startTimeUtc"] = review["started_at"]
    if review.get("finished_at"):
        invocation["endTimeUtc"] = review["finished_at"]
    if review.get("error"):
        invocation["toolExecutionNotifications"] = [{"level": "error", "message": {"text": review["error"]}}]
    run: dict[str, Any] = {
        "tool": {"driver": {
            "name": "Cortex Code Appliance",
            "version": __version__,
            "semanticVersion": __version__,
            "rules": rules,
        }},
        "automationDetails": {"id": f"cortex/review/{review['id']}"},
        "invocations": [invocation],
        "results": results,
        "columnKind": "unicodeCodePoints",
        "properties": {"provenance": review["provenance"], "reviewId": review["id"], "title": review["title"],
                       "repository": review["repository"]},
    }
    if base_url:
        run["properties"]["dashboard"] = f"{base_url}/reviews/{review['id']}"
    return {"$schema": _SCHEMA_URI, "version": "2.1.0", "runs": [run]}
