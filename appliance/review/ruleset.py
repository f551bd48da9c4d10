"""Rule and pack specifications as the engine consumes them (loaded from TOML by ``appliance.packs``).

The file format is documented in offline-docs/rule-packs.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from appliance.review.models import Severity

__all__ = ["VALIDATORS", "ExampleSpec", "PackSpec", "RuleSpec"]

# Named checks a pattern rule can apply to the matched value (review/validators.py).
VALIDATORS = frozenset({"luhn", "ssn", "entropy"})


@dataclass(frozen=True)
class ExampleSpec:
    """A snippet a rule must flag (``expect = "finding"``) or must leave alone (``expect = "clean"``)."""

    file: str
    code: str
    expect: str
    line: int | None = None


@dataclass(frozen=True)
class RuleSpec:
    id: str
    pack_id: str
    title: str
    severity: Severity
    message: str
    fix: str = ""
    cwe: int | None = None
    languages: tuple[str, ...] = ()  # empty: every file
    pattern: str | None = None  # RE2, matched against each added line
    pattern_not: str | None = None  # RE2; a line matching it is not a finding
    queries: dict[str, str] = field(default_factory=dict)  # language -> tree-sitter query with @finding
    validator: str | None = None
    redact: bool = False
    paths_include: tuple[str, ...] = ()
    paths_exclude: tuple[str, ...] = ()
    # (framework, control id) pairs, e.g. ("PCI DSS v4.0", "3.5.1"); frameworks are the pack's.
    controls: tuple[tuple[str, str], ...] = ()
    examples: tuple[ExampleSpec, ...] = ()

    @property
    def kind(self) -> str:
        return "structural" if self.queries else "pattern"


@dataclass(frozen=True)
class PackSpec:
    id: str
    version: int
    display_version: str
    name: str
    description: str
    publisher: str
    rules: tuple[RuleSpec, ...]
    frameworks: tuple[str, ...] = ()
    product: str = "cortex-code-appliance"
    channel: str = "stable"
    min_appliance_version: str = "0.0.0"
    issued: datetime | None = None
    expires: datetime | None = None
    digest: str = ""  # sha256 over the pack's files, for provenance
    path: Path | None = None

    def provenance(self) -> dict[str, object]:
        info: dict[str, object] = {"id": self.id, "version": self.version, "display_version": self.display_version,
                                   "sha256": self.digest, "rules": len(self.rules)}
        if self.expires is not None:
            info["expires"] = self.expires.isoformat()
        return info
