"""What a verification run produces: one :class:`Check` per item of the checklist, in a :class:`Report`.

A check is a function from the run's context to a :class:`Verdict`, declared with :func:`checklist_item`,
which gives it its id and title and turns an unexpected error into a FAIL of that item alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.verify.context import VerifyContext

__all__ = ["Check", "ChecklistItem", "Report", "Status", "Verdict", "checklist_item", "worst"]

log = logging.getLogger(__name__)


class Status(StrEnum):
    """PASS: proven as required. WARN: not proven, or weaker than recommended; look at it. FAIL: wrong."""

    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    WARN = "WARN"
    FAIL = "FAIL"


_RANK = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    status: Status
    evidence: list[str] = field(default_factory=list)
    remedy: str | None = None  # what to do about a WARN or FAIL

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "status": self.status.value, "evidence": list(self.evidence),
                "remedy": self.remedy if self.status is not Status.PASS else None}


@dataclass(frozen=True)
class Verdict:
    """What a check found."""

    status: Status
    evidence: list[str]
    remedy: str | None = None


@dataclass(frozen=True)
class ChecklistItem:
    """One item of the checklist: calling it runs the check and returns its :class:`Check`."""

    id: str
    title: str
    run: Callable[[VerifyContext], Verdict]

    def __call__(self, ctx: VerifyContext) -> Check:
        try:
            verdict = self.run(ctx)
        except Exception as exc:  # one broken check must not hide the others' evidence
            log.exception("verify check %s failed", self.id)
            verdict = Verdict(Status.FAIL, [f"the check could not run: {exc!r}"],
                              "run cortex verify as root; if this persists, report it with the log above")
        return Check(self.id, self.title, verdict.status, verdict.evidence, verdict.remedy)


def checklist_item(check_id: str, title: str) -> Callable[[Callable[[VerifyContext], Verdict]], ChecklistItem]:
    """Declare a check function as the checklist item ``check_id``."""

    def wrap(run: Callable[[VerifyContext], Verdict]) -> ChecklistItem:
        return ChecklistItem(check_id, title, run)

    return wrap


def worst(statuses: list[Status]) -> Status:
    return max(statuses, key=_RANK.__getitem__, default=Status.PASS)


@dataclass(frozen=True)
class Report:
    host: str
    version: str
    time: str
    checks: list[Check]
    context: dict[str, Any] = field(default_factory=dict)  # what was checked: release dir, data dir, user…

    @property
    def status(self) -> Status:
        return worst([c.status for c in self.checks])

    @property
    def ok(self) -> bool:
        """No FAIL (WARNs are allowed)."""
        return self.status is not Status.FAIL

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for c in self.checks if c.status is s) for s in Status}

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "version": self.version, "time": self.time, "status": self.status.value,
                "counts": self.counts(), "context": self.context, "checks": [c.to_dict() for c in self.checks]}
