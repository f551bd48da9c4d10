"""Compliance reports: what the rule packs found in a repository over a period, by framework control,
with what people decided (open, fixed, accepted risk, false positive) and the trend week by week.

A finding is counted once per repository however many reviews reported it (its fingerprint), with the
first and last time it was seen; its status is the current decision. Model suggestions map to no control
and are counted apart. Exports (CSV, JSON, the printable page) are audited by the caller's entry point.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any

from appliance import clock
from appliance.audit import Actor, AuditTag, record_event
from appliance.errors import ValidationError
from appliance.review.triage import STATUSES
from appliance.store import Database

__all__ = ["compliance_report", "parse_period", "record_export", "report_csv", "report_json"]


def parse_period(start: str | None, end: str | None, *, default_days: int = 90) -> tuple[date, date]:
    """``YYYY-MM-DD`` bounds, both included; by default the last ``default_days`` days."""
    today = clock.now().date()
    try:
        last = date.fromisoformat(end) if end else today
        first = date.fromisoformat(start) if start else last - timedelta(days=default_days - 1)
    except ValueError as exc:
        raise ValidationError(f"dates are written YYYY-MM-DD: {exc}") from exc
    if first > last:
        raise ValidationError(f"the period starts ({first}) after it ends ({last})")
    if (last - first).days > 3660:
        raise ValidationError("a report covers at most ten years")
    return first, last


def _week(moment: str) -> str:
    year, week, _ = clock.from_iso(moment).isocalendar()
    return f"{year}-W{week:02d}"


def compliance_report(db: Database, *, repository: str | None, start: date, end: date) -> dict[str, Any]:
    since = clock.iso(datetime.combine(start, time.min, tzinfo=clock.now().tzinfo))
    until = clock.iso(datetime.combine(end + timedelta(days=1), time.min, tzinfo=clock.now().tzinfo))
    where = "r.created_at >= ? AND r.created_at < ? AND j.status = 'done'"
    params: list[Any] = [since, until]
    if repository:
        where += " AND r.repository = ?"
        params.append(repository)
    with db.read() as tx:
        reviews = tx.query(f"SELECT r.id, r.repository, r.created_at, r.provenance FROM reviews r JOIN jobs j "  # noqa: S608
                           f"ON j.kind = 'review' AND j.ref_id = r.id WHERE {where} ORDER BY r.id", params)
        rows = tx.query(
            f"SELECT f.fingerprint, f.source, f.rule_id, f.pack_id, f.pack_version, f.severity, f.cwe, f.title, "  # noqa: S608
            f"f.path, f.line, f.controls, r.repository, r.created_at, COALESCE(s.status, 'open') AS status, "
            f"s.reason, s.updated_at AS decided_at, s.updated_by AS decided_by FROM findings f "
            f"JOIN reviews r ON r.id = f.review_id JOIN jobs j ON j.kind = 'review' AND j.ref_id = r.id "
            f"LEFT JOIN finding_states s ON s.repository = r.repository AND s.fingerprint = f.fingerprint "
            f"WHERE {where} ORDER BY r.created_at", params)
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["repository"], row["fingerprint"])
        entry = unique.get(key)
        if entry is None:
            unique[key] = {**row, "first_seen": row["created_at"], "last_seen": row["created_at"],
                           "controls": json.loads(row["controls"])}
        else:
            entry.update({k: row[k] for k in ("path", "line", "severity", "pack_version")})
            entry["last_seen"] = row["created_at"]
    controls: dict[tuple[str, str], dict[str, Any]] = {}
    by_status = dict.fromkeys(STATUSES, 0)
    model = dict.fromkeys(STATUSES, 0)
    weekly: dict[str, dict[str, int]] = defaultdict(lambda: {"reviews": 0, "new": 0, "fixed": 0})
    for review in reviews:
        weekly[_week(review["created_at"])]["reviews"] += 1
    for finding in unique.values():
        status = finding["status"]
        weekly[_week(finding["first_seen"])]["new"] += 1
        if status == "fixed" and finding["decided_at"] and since <= finding["decided_at"] < until:
            weekly[_week(finding["decided_at"])]["fixed"] += 1
        if finding["source"] == "model":
            model[status] += 1
            continue
        by_status[status] += 1
        for pair in finding["controls"] or ["(unmapped)|(unmapped)"]:
            framework, _, control = pair.partition("|")
            slot = controls.setdefault((framework, control), {
                "framework": framework, "control": control, **dict.fromkeys(STATUSES, 0), "total": 0,
                "rules": set(), "severities": defaultdict(int)})
            slot[status] += 1
            slot["total"] += 1
            slot["rules"].add(f"{finding['pack_id']}/{finding['rule_id']}")
            slot["severities"][finding["severity"]] += 1
    packs: dict[str, set[str]] = defaultdict(set)
    for review in reviews:
        for pack in json.loads(review["provenance"] or "{}").get("packs", []):
            packs[pack["id"]].add(str(pack.get("display_version")))
    return {
        "repository": repository or "(all repositories)",
        "period": {"from": start.isoformat(), "to": end.isoformat()},
        "generated_at": clock.now_iso(),
        "reviews": len(reviews),
        "findings": {"rule": sum(by_status.values()), "model": sum(model.values()), "by_status": by_status,
                     "model_by_status": model},
        "controls": [
            {**{k: v for k, v in slot.items() if k not in ("rules", "severities")},
             "rules": sorted(slot["rules"]), "severities": dict(slot["severities"])}
            for _, slot in sorted(controls.items())],
        "trend": [{"week": week, **counts} for week, counts in sorted(weekly.items())],
        "packs": {pack: sorted(versions) for pack, versions in sorted(packs.items())},
        "findings_list": [
            {k: finding[k] for k in ("repository", "pack_id", "rule_id", "severity", "cwe", "title", "path", "line",
                                     "status", "reason", "first_seen", "last_seen", "controls", "source")}
            for finding in sorted(unique.values(), key=lambda f: (f["repository"], f["path"], f["line"]))],
    }


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def report_csv(report: dict[str, Any]) -> str:
    """One row per framework control, the counts by status, then the rules behind it."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["repository", "from", "to", "framework", "control", *STATUSES, "total", "rules"])
    for row in report["controls"]:
        writer.writerow([report["repository"], report["period"]["from"], report["period"]["to"], row["framework"],
                         row["control"], *(row[s] for s in STATUSES), row["total"], " ".join(row["rules"])])
    return out.getvalue()


def record_export(db: Database, report: dict[str, Any], *, fmt: str, actor: Actor) -> None:
    with db.write() as tx:
        record_event(tx, AuditTag.REPORTS_COMPLIANCE_EXPORTED, actor, target=f"repository:{report['repository']}",
                     details={"format": fmt, "period": report["period"], "reviews": report["reviews"],
                              "findings": report["findings"]["rule"]})
