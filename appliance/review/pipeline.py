"""One review, computed: decode, parse, rules, model, merge, rank, provenance. No database here, so the
same function serves the queue worker, ``cortex review`` and the benchmarks."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from appliance import __version__
from appliance.config import Settings
from appliance.inference import PROMPT_VERSION, ModelRuntime
from appliance.review.diffparse import decode_diff, parse_diff
from appliance.review.engine import RuleSet
from appliance.review.modelreview import ModelReviewResult, review_with_model
from appliance.review.models import Finding, ParsedDiff, Source

__all__ = ["ENGINE_NAME", "ReviewOutcome", "analyse", "merge_and_rank"]

ENGINE_NAME = "cortex-appliance"


@dataclass
class ReviewOutcome:
    diff: ParsedDiff
    findings: list[Finding]
    model: ModelReviewResult
    provenance: dict[str, Any]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


def merge_and_rank(rule_findings: list[Finding], model_findings: list[Finding]) -> tuple[list[Finding], int]:
    """Merge both sources, drop duplicates, rank by severity.

    A rule finding is kept over a model finding on the same line; of two rule findings on one line with the
    same CWE, the more severe is kept. Returns the ranked findings and how many model findings were merged away.
    """
    by_line_cwe: dict[tuple[str, int, int | None], Finding] = {}
    kept: list[Finding] = []
    for finding in rule_findings:
        if finding.cwe is None:
            kept.append(finding)
            continue
        key = (finding.path, finding.line, finding.cwe)
        other = by_line_cwe.get(key)
        if other is None or finding.severity.weight > other.severity.weight:
            by_line_cwe[key] = finding
    kept.extend(by_line_cwe.values())
    rule_lines = {(f.path, f.line) for f in kept}
    merged_away = 0
    for finding in model_findings:
        if (finding.path, finding.line) in rule_lines:
            merged_away += 1
            continue
        kept.append(finding)
    kept.sort(key=lambda f: (-f.severity.weight, f.source != Source.RULE, f.path, f.line, f.rule_id))
    return kept, merged_away


def _counts(findings: list[Finding]) -> dict[str, dict[str, int]]:
    return {
        "severity": dict(Counter(str(f.severity) for f in findings)),
        "source": dict(Counter(str(f.source) for f in findings)),
    }


def analyse(data: bytes, ruleset: RuleSet, runtime: ModelRuntime | None, settings: Settings, *,
            use_model: bool = True) -> ReviewOutcome:
    """Review the diff in ``data``.

    Raises:
        InvalidDiffError: the diff cannot be parsed (intake checks this before accepting a review).
    """
    started = time.perf_counter()
    text, replaced = decode_diff(data)
    diff = parse_diff(text, decoding_replaced=replaced)
    parsed = time.perf_counter()
    rule_findings = ruleset.match(diff)
    ruled = time.perf_counter()
    if use_model:
        model = review_with_model(diff, runtime, settings)
    else:
        model = ModelReviewResult(status="not_requested", notes=["rules-only review was requested"])
    modelled = time.perf_counter()
    findings, merged_away = merge_and_rank(rule_findings, model.findings)
    if merged_away:
        model.dropped["duplicate"] += merged_away
    finished = time.perf_counter()
    model_info: dict[str, Any] = runtime.describe() if runtime is not None else {"status": "disabled"}
    provenance = {
        "engine": {"name": ENGINE_NAME, "version": __version__},
        "packs": ruleset.provenance(),
        "selection": {k: v for k, v in ruleset.selection.items() if k != "packs"},
        "packs_refused": [{"pack": e.pack_id, "rule": e.rule_id, "reason": e.message} for e in ruleset.refused],
        "model": model_info,
        "model_review": {"status": model.status, "note": model.note, **model.stats()},
        "prompt_version": PROMPT_VERSION,
        "input": {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "decoding_replaced": replaced},
        "timings_ms": {
            "parse": round((parsed - started) * 1000, 1),
            "rules": round((ruled - parsed) * 1000, 1),
            "model": round((modelled - ruled) * 1000, 1),
            "merge": round((finished - modelled) * 1000, 1),
            "total": round((finished - started) * 1000, 1),
        },
    }
    return ReviewOutcome(diff=diff, findings=findings, model=model, provenance=provenance, counts=_counts(findings))
