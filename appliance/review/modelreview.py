"""Review a diff with the local model: split it into chunks that fit the context window, ask for
JSON-constrained findings at temperature 0, and keep only grounded ones."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from appliance.config import Settings
from appliance.inference import ModelClosedError, ModelRuntime
from appliance.inference.prompts import (
    MAX_FINDINGS_PER_CHUNK,
    SYSTEM_PROMPT,
    ChunkLine,
    PromptChunk,
    findings_schema,
    render_chunk,
)
from appliance.review.engine import fingerprint
from appliance.review.grounding import ground_candidates
from appliance.review.models import FileChange, Finding, ParsedDiff, Severity, Source

__all__ = ["ModelReviewResult", "build_chunks", "review_with_model"]

# Tokens the chat template wraps around the two messages.
_TEMPLATE_OVERHEAD = 48


@dataclass
class ModelReviewResult:
    status: str  # reviewed, unavailable, disabled, not_requested, no_changes
    notes: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    chunks_total: int = 0
    chunks_reviewed: int = 0
    chunks_failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def note(self) -> str:
        return "; ".join(self.notes)

    @property
    def chunks_skipped(self) -> int:
        return self.chunks_total - self.chunks_reviewed - self.chunks_failed

    def stats(self) -> dict[str, Any]:
        return {"chunks": self.chunks_total, "reviewed": self.chunks_reviewed, "skipped": self.chunks_skipped,
                "failed": self.chunks_failed,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "dropped": dict(sorted(self.dropped.items())), "seconds": round(self.seconds, 3)}


def _hunk_lines(change: FileChange) -> list[list[ChunkLine]]:
    return [[ChunkLine(kind, new, text) for kind, _, new, text in hunk.lines] for hunk in change.hunks]


def build_chunks(diff: ParsedDiff, budget: int, count_tokens: Any) -> list[PromptChunk]:
    """Group each file's hunks into chunks of at most ``budget`` tokens; split hunks that are larger.

    Chunks without added lines are left out: there is nothing in them to ground a finding on.
    """
    chunks: list[PromptChunk] = []
    for change in diff.reviewable:
        header = count_tokens(f"File: {change.path} ({change.language})\n")
        current: list[ChunkLine] = []
        used = header

        def flush(change: FileChange = change, header: int = header) -> None:
            nonlocal current, used
            if any(ln.kind == "+" for ln in current):
                chunks.append(PromptChunk(change.path, change.language, tuple(current)))
            current, used = [], header

        for hunk in _hunk_lines(change):
            cost = [count_tokens(f"{ln.kind}{ln.new_line or ''} | {ln.text}\n") for ln in hunk]
            if used + sum(cost) <= budget:
                current.extend(hunk)
                used += sum(cost)
                continue
            flush()
            for line, tokens in zip(hunk, cost, strict=True):
                if used + tokens > budget and current:
                    flush()
                if tokens > budget:
                    # One enormous line (minified code): cut it to what fits.
                    line = ChunkLine(line.kind, line.new_line, line.text[: budget * 2])
                    tokens = budget
                current.append(line)
                used += tokens
        flush()
    return chunks


def _severity(value: str) -> Severity:
    try:
        return Severity(value)
    except ValueError:
        return Severity.LOW


def review_with_model(diff: ParsedDiff, runtime: ModelRuntime | None, settings: Settings) -> ModelReviewResult:
    """Run the model over ``diff``. Never raises for model trouble: the result says what happened."""
    if runtime is not None and runtime.status == "closed":
        raise ModelClosedError("the model was closed before the review reached it (the service is stopping)")
    if runtime is None or runtime.status == "disabled":
        return ModelReviewResult(status="disabled", notes=["model review is switched off"])
    if not runtime.available or runtime.backend is None or runtime.entry is None:
        return ModelReviewResult(status="unavailable",
                                 notes=[f"model unavailable: {runtime.reason or runtime.status}"])
    backend = runtime.backend
    entry = runtime.entry
    if not diff.reviewable:
        return ModelReviewResult(status="no_changes", notes=["no added lines for the model to review"])
    started = time.perf_counter()
    context = min(backend.n_ctx, settings.model_context)
    budget = context - backend.count_tokens(SYSTEM_PROMPT) - settings.model_max_output_tokens - _TEMPLATE_OVERHEAD
    chunks = build_chunks(diff, max(budget, 64), backend.count_tokens)
    result = ModelReviewResult(status="reviewed", chunks_total=len(chunks))
    limit = settings.model_max_chunks
    seen: set[tuple[str, int, str]] = set()
    for chunk in chunks[:limit]:
        schema = findings_schema([chunk.path], chunk.added_numbers)
        try:
            completion = backend.chat_json(SYSTEM_PROMPT, render_chunk(chunk), schema,
                                           max_tokens=settings.model_max_output_tokens)
        except ModelClosedError:
            raise  # the service is stopping: the whole review goes back to the queue
        except Exception as exc:  # a failed generation costs that chunk, not the review
            result.chunks_failed += 1
            if result.chunks_failed == 1:
                result.notes.append(f"the model failed on a chunk of {chunk.path}: {exc}")
            continue
        result.chunks_reviewed += 1
        result.prompt_tokens += completion.prompt_tokens
        result.completion_tokens += completion.completion_tokens
        try:
            answer = json.loads(completion.text)
            candidates = answer.get("findings", []) if isinstance(answer, dict) else []
            if not isinstance(candidates, list):
                raise ValueError("findings is not a list")
        except (ValueError, AttributeError):
            result.dropped["unparseable_output"] += 1
            continue
        candidates = [c for c in candidates if isinstance(c, dict)][:MAX_FINDINGS_PER_CHUNK]
        kept, dropped = ground_candidates(candidates, diff, seen)
        result.dropped.update(dropped)
        for item in kept:
            change = diff.file(item["file"])
            text = next((ln.text for ln in change.added_lines if ln.number == item["line"]), "") if change else ""
            rule_id = f"model/{entry.id}"
            result.findings.append(Finding(
                source=Source.MODEL, rule_id=rule_id, path=item["file"], line=item["line"],
                severity=_severity(item["severity"]),
                title="Model suggestion (plumbing model, unverified)" if entry.plumbing else "Model suggestion",
                message=item["message"], snippet=text.strip()[:240],
                fingerprint=fingerprint(rule_id, item["file"], text + "\0" + item["message"])))
    if result.chunks_failed > 1:
        result.notes.append(f"{result.chunks_failed} chunks failed in all")
    if len(chunks) > limit:
        result.notes.append(f"the model reviewed {limit} of {len(chunks)} chunks (model_max_chunks); "
                            "the rest was reviewed by rules only")
    if entry.plumbing:
        result.notes.append(f"{entry.name} is a plumbing model: it proves the inference path; "
                            "its suggestions are not a judgement")
    result.seconds = time.perf_counter() - started
    return result
