"""Rule-engine throughput: every pack under rules/ matched against a 10,000-added-line diff.

The diff is synthetic and seeded (benchmarks/synthdiff.py): about 100 files of Python, Java, JavaScript,
TypeScript and Go, half new and half modified, with a sprinkling of lines the rules flag. Timed:
``RuleSet.match(diff)`` on the parsed diff (best and median of several runs after a warm-up), then the
same with only the pattern rules and only the structural rules compiled, and tree-sitter parsing alone,
to show what dominates. Run alone: ``.venv/bin/python benchmarks/bench_rules.py [--repeats N]``.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from common import ROOT, Row, fmt_rate, load_average, median, standalone, timed_runs
from synthdiff import generate_diff

from appliance.packs import discover_packs
from appliance.review.diffparse import parse_diff
from appliance.review.engine import RuleSet
from appliance.review.models import ParsedDiff
from appliance.review.structure import new_side_source, parser_for

NAME = "rules"
TARGET_LINES_PER_SECOND = 100_000
ANCHOR = "Bandit: 78k lines in 3.5 s (≈ 22k lines/s)"

SEED = 20_240_601
LINES = 10_000
FILES = 100


def _variant(seconds: list[float], lines: int) -> dict[str, Any]:
    return {
        "seconds": [round(s, 5) for s in seconds],
        "seconds_median": round(median(seconds), 5),
        "seconds_best": round(min(seconds), 5),
        "lines_per_second": round(lines / median(seconds)),
        "lines_per_second_best": round(lines / min(seconds)),
    }


def _parse_trees(diff: ParsedDiff, languages: set[str]) -> int:
    parsed = 0
    for change in diff.reviewable:
        if change.language in languages:
            parser_for(change.language).parse(new_side_source(change))
            parsed += 1
    return parsed


def run(*, repeats: int = 7, seed: int = SEED, lines: int = LINES, files: int = FILES) -> dict[str, Any]:
    load_before = load_average()
    synthetic = generate_diff(seed=seed, added_lines=lines, files=files)
    parse_seconds = timed_runs(lambda: parse_diff(synthetic.text), repeats=3)
    diff = parse_diff(synthetic.text)
    if diff.lines_added != synthetic.added_lines:
        raise RuntimeError(f"the parser saw {diff.lines_added} added lines, "
                           f"the generator wrote {synthetic.added_lines}")

    packs, load_errors = discover_packs(ROOT / "rules")
    started = time.perf_counter()
    ruleset = RuleSet.compile(packs)
    compile_seconds = time.perf_counter() - started
    refused = [e.message for e in [*load_errors, *ruleset.refused]]
    pattern_rules = [r for r in ruleset.rules if not r.spec.queries]
    structural_rules = [r for r in ruleset.rules if r.spec.queries]
    pattern_only = RuleSet(ruleset.packs, pattern_rules, [])
    structural_only = RuleSet(ruleset.packs, structural_rules, [])
    structural_languages = {lang for r in structural_rules for lang in r.spec.queries}

    findings = ruleset.match(diff)
    full = timed_runs(lambda: ruleset.match(diff), repeats=repeats)
    patterns = timed_runs(lambda: pattern_only.match(diff), repeats=repeats)
    structure = timed_runs(lambda: structural_only.match(diff), repeats=repeats)
    trees = timed_runs(lambda: _parse_trees(diff, structural_languages), repeats=repeats)
    end_to_end = timed_runs(lambda: ruleset.match(parse_diff(synthetic.text)), repeats=max(3, repeats // 2))

    added = diff.lines_added
    result: dict[str, Any] = {
        "diff": {"seed": seed, "files": synthetic.files, "added_lines": added, "removed_lines": synthetic.removed_lines,
                 "bytes": len(synthetic.text.encode()), "planted_trigger_lines": synthetic.trigger_lines,
                 "added_lines_by_language": synthetic.by_language},
        "packs": [p.provenance() for p in ruleset.packs],
        "refused": refused,
        "rules": {"total": len(ruleset.rules), "pattern": len(pattern_rules), "structural": len(structural_rules)},
        "findings": len(findings),
        "findings_by_rule": dict(sorted(Counter(f.rule_id for f in findings).items())),
        "compile_seconds": round(compile_seconds, 4),
        "repeats": repeats,
        "all_rules": _variant(full, added),
        "pattern_rules_only": _variant(patterns, added),
        "structural_rules_only": _variant(structure, added),
        "tree_sitter_parse_only": {**_variant(trees, added), "files": _parse_trees(diff, structural_languages)},
        "diff_parse": _variant(parse_seconds, added),
        "diff_parse_and_all_rules": _variant(end_to_end, added),
        "target_lines_per_second": TARGET_LINES_PER_SECOND,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    result["meets_target"] = result["all_rules"]["lines_per_second"] >= TARGET_LINES_PER_SECOND
    return result


def rows(fig: dict[str, Any]) -> list[Row]:
    full = fig["all_rules"]
    lines = fig["diff"]["added_lines"]
    main = {
        "benchmark": f"rule engine, all packs ({fig['rules']['total']} rules), {lines:,} added lines / "
                     f"{fig['diff']['files']} files",
        "measured": f"{fmt_rate(full['lines_per_second'])} lines/s (median {full['seconds_median'] * 1000:.0f} ms; "
                    f"best {fmt_rate(full['lines_per_second_best'])}/s)",
        "target": f"≥ {fmt_rate(TARGET_LINES_PER_SECOND)} lines/s",
        "anchor": ANCHOR,
        "status": "meets" if fig["meets_target"] else "misses",
    }
    parts = []
    for key, label in (("pattern_rules_only", f"pattern rules only ({fig['rules']['pattern']})"),
                       ("structural_rules_only", f"structural rules only ({fig['rules']['structural']})"),
                       ("tree_sitter_parse_only", "tree-sitter parsing alone (no queries)"),
                       ("diff_parse", "diff parsing (unidiff) alone"),
                       ("diff_parse_and_all_rules", "diff parsing + all rules")):
        v = fig[key]
        parts.append({"benchmark": f"↳ {label}",
                      "measured": f"{fmt_rate(v['lines_per_second'])} lines/s ({v['seconds_median'] * 1000:.0f} ms)",
                      "target": "—", "anchor": "breakdown", "status": "—"})
    return [main, *parts]


def main(argv: list[str] | None = None) -> None:
    standalone(__doc__ or "", run, rows, "--repeats", 7, "timed runs per variant", argv)


if __name__ == "__main__":
    main()
