"""Run a pack's own examples through the engine: every rule must flag its positive examples and leave
its negative ones alone, and every rule needs at least one of each (``cortex packs test``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.review.engine import RuleSet
from appliance.review.ruleset import PackSpec
from appliance.review.sources import file_as_added

__all__ = ["ExampleResult", "PackTestReport", "run_pack_examples"]


@dataclass(frozen=True)
class ExampleResult:
    rule_id: str
    index: int
    expect: str
    passed: bool
    detail: str


@dataclass
class PackTestReport:
    pack: PackSpec
    results: list[ExampleResult] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # rules lacking a positive or a negative example
    refused: str | None = None  # the pack did not compile

    @property
    def ok(self) -> bool:
        return self.refused is None and not self.missing and all(r.passed for r in self.results)

    @property
    def failures(self) -> list[ExampleResult]:
        return [r for r in self.results if not r.passed]


def run_pack_examples(pack: PackSpec) -> PackTestReport:
    report = PackTestReport(pack=pack)
    ruleset = RuleSet.compile([pack])
    if ruleset.refused:
        report.refused = ruleset.refused[0].message
        return report
    for rule in pack.rules:
        kinds = {ex.expect for ex in rule.examples}
        if kinds != {"finding", "clean"}:
            lacking = sorted({"finding", "clean"} - kinds)
            names = " and no ".join("positive" if k == "finding" else "negative" for k in lacking)
            report.missing.append(f"{rule.id}: no {names} example")
        for index, example in enumerate(rule.examples, 1):
            change = file_as_added(example.file, example.code)
            hits = [f for f in ruleset.match_file(change) if f.rule_id == rule.id]
            lines = sorted(f.line for f in hits)
            if example.expect == "finding":
                if not hits:
                    passed, detail = False, f"expected a finding in {example.file}, got none"
                elif example.line is not None and example.line not in lines:
                    passed, detail = False, f"expected a finding on line {example.line}, got lines {lines}"
                else:
                    passed, detail = True, f"flagged line(s) {lines}"
            else:
                passed = not hits
                detail = "no finding" if passed else f"expected no finding, got line(s) {lines}"
            report.results.append(ExampleResult(rule.id, index, example.expect, passed, detail))
    return report
