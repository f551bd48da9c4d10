"""End-to-end review of a 300-added-line diff with the default model, as the queue worker runs it.

Services are built the way ``cortex serve`` builds them (settings, database in a temporary data
directory, rule packs, the configured model loaded and sha256-checked), then
``appliance.review.pipeline.analyse`` reviews one seeded synthetic diff per run (five files: Python, Java,
JavaScript, TypeScript, Go; each run a different seed). No warm-up run: the first review is counted.
Run alone: ``.venv/bin/python benchmarks/bench_review.py [--runs N]``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Row, cpu_count, load_average, median, standalone
from synthdiff import generate_diff

from appliance.config import load_settings
from appliance.review.pipeline import analyse
from appliance.tasks.services import Services

NAME = "review"
TARGET_P50_SECONDS = 20.0
ANCHOR = "product spec: < 60 s"

SEED = 300_000
LINES = 300
FILES = 5


def run(*, runs: int = 5, seed: int = SEED, lines: int = LINES, files: int = FILES) -> dict[str, Any]:
    load_before = load_average()
    per_run: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cortex-bench-") as tmp:
        settings = load_settings({}, data_dir=Path(tmp), workers=0)
        services = Services(settings)
        try:
            started = time.perf_counter()
            services.load_model()
            load_seconds = time.perf_counter() - started  # includes the sha256 check of the file
            runtime = services.runtime
            if not runtime.available:
                raise RuntimeError(f"the model did not load: {runtime.reason or runtime.status}")
            ruleset = services.ruleset
            model = runtime.describe()
            for index in range(runs):
                synthetic = generate_diff(seed=seed + index, added_lines=lines, files=files)
                data = synthetic.text.encode()
                started = time.perf_counter()
                outcome = analyse(data, ruleset, runtime, settings)
                seconds = time.perf_counter() - started
                review = outcome.provenance["model_review"]
                if review["status"] != "reviewed":
                    raise RuntimeError(f"the model did not review the diff: {review['status']}: {review['note']}")
                timings = outcome.provenance["timings_ms"]
                per_run.append({
                    "seed": seed + index, "seconds": round(seconds, 3), "added_lines": outcome.diff.lines_added,
                    "chunks": review["chunks"], "chunks_reviewed": review["reviewed"],
                    "prompt_tokens": review["prompt_tokens"], "completion_tokens": review["completion_tokens"],
                    "model_seconds": round(timings["model"] / 1000, 3), "rules_ms": timings["rules"],
                    "parse_ms": timings["parse"], "findings": len(outcome.findings),
                    "findings_by_source": outcome.counts.get("source", {}), "dropped": review["dropped"],
                })
                print(f"  review {index + 1}/{runs}: {seconds:.1f} s, {review['chunks']} chunks, "
                      f"{review['prompt_tokens']} prompt + {review['completion_tokens']} completion tokens",
                      file=sys.stderr)
        finally:
            services.close()

    seconds = [r["seconds"] for r in per_run]
    prompt = sum(r["prompt_tokens"] for r in per_run)
    completion = sum(r["completion_tokens"] for r in per_run)
    model_seconds = sum(r["model_seconds"] for r in per_run)
    result: dict[str, Any] = {
        "model": {k: model.get(k) for k in ("id", "name", "sha256", "context", "plumbing")},
        "threads": settings.model_threads or cpu_count(),
        "model_max_output_tokens": settings.model_max_output_tokens,
        "model_max_chunks": settings.model_max_chunks,
        "model_load_seconds": round(load_seconds, 3),
        "runs": per_run,
        "p50_seconds": round(median(seconds), 3),
        "max_seconds": round(max(seconds), 3),
        "min_seconds": round(min(seconds), 3),
        "median_chunks": median([r["chunks"] for r in per_run]),
        "median_prompt_tokens": median([r["prompt_tokens"] for r in per_run]),
        "median_completion_tokens": median([r["completion_tokens"] for r in per_run]),
        # Where the time goes: the model's share, and its token rate (prompt evaluation dominates).
        "model_share": round(model_seconds / sum(seconds), 4),
        "prompt_tokens_per_model_second": round(prompt / model_seconds, 1),
        "all_tokens_per_model_second": round((prompt + completion) / model_seconds, 1),
        "target_p50_seconds": TARGET_P50_SECONDS,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    result["meets_target"] = result["p50_seconds"] <= TARGET_P50_SECONDS
    return result


def rows(fig: dict[str, Any]) -> list[Row]:
    runs = fig["runs"]
    lines = runs[0]["added_lines"] if runs else LINES
    return [
        {"benchmark": f"review of a {lines}-line diff, default model, end to end ({len(runs)} runs)",
         "measured": f"p50 {fig['p50_seconds']:.1f} s, max {fig['max_seconds']:.1f} s (runs: "
                     + ", ".join(f"{r['seconds']:.1f}" for r in runs)
                     + f" s; median {fig['median_chunks']:g} chunks, {fig['median_prompt_tokens']:g} prompt + "
                     f"{fig['median_completion_tokens']:g} completion tokens)",
         "target": f"p50 ≤ {TARGET_P50_SECONDS:g} s", "anchor": ANCHOR,
         "status": "meets" if fig["meets_target"] else "misses"},
        {"benchmark": "↳ model's share of the review time",
         "measured": f"{fig['model_share'] * 100:.2f} % (parse + rules: median "
                     f"{median([r['parse_ms'] + r['rules_ms'] for r in runs]):.1f} ms; "
                     f"{fig['prompt_tokens_per_model_second']:.0f} prompt tokens per model second)",
         "target": "—", "anchor": "breakdown", "status": "—"},
    ]


def main(argv: list[str] | None = None) -> None:
    standalone(__doc__ or "", run, rows, "--runs", 5, "reviews to run", argv)


if __name__ == "__main__":
    main()
