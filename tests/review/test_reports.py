"""Finding decisions and compliance reports over real reviews of real diffs."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest

from appliance import clock
from appliance.audit import Actor
from appliance.config import Settings
from appliance.errors import NotFoundError, ValidationError
from appliance.jobs import current_owner
from appliance.review import service
from appliance.review.reports import compliance_report, parse_period, report_csv
from appliance.review.triage import set_finding_status
from appliance.store import Database
from appliance.tasks.services import Services

DIFF = b"""\
--- a/pay/charge.py
+++ b/pay/charge.py
@@ -0,0 +1,4 @@
+import pickle
+API_SECRET = "h7Tq2LmZ9vX4kP8sWc3R"
+order = pickle.loads(request.body)
+cursor.execute("SELECT * FROM cards WHERE id = " + request.args["id"])
"""


def reviewed(db: Database, settings: Settings, repository: str) -> dict[str, Any]:
    services = Services(settings, db=db)
    accepted = service.submit_review(db, settings, DIFF, actor=Actor.cli(), source="cli", repository=repository,
                                     use_model=False)
    service.run_review_job(db, settings, accepted.job_id, owner=current_owner(), ruleset=services.catalog,
                           runtime=None)
    return service.get_review(db, accepted.review_id)


def test_decisions_carry_over_to_later_reviews_and_need_reasons(db: Database, settings: Settings) -> None:
    first = reviewed(db, settings, "shop/payments")
    finding = next(f for f in first["findings"] if f["rule_id"] == "CORE-DESER-001")
    with pytest.raises(ValidationError, match="needs a reason"):
        set_finding_status(db, finding["id"], "accepted_risk", actor=Actor.cli())
    with pytest.raises(ValidationError, match="status must be one of"):
        set_finding_status(db, finding["id"], "ignored", actor=Actor.cli())
    with pytest.raises(NotFoundError):
        set_finding_status(db, 999_999, "fixed", actor=Actor.cli())
    set_finding_status(db, finding["id"], "accepted_risk", actor=Actor.cli(), reason="signed internal queue only")
    later = reviewed(db, settings, "shop/payments")
    again = next(f for f in later["findings"] if f["rule_id"] == "CORE-DESER-001")
    assert (again["status"], again["status_reason"]) == ("accepted_risk", "signed internal queue only")
    elsewhere = reviewed(db, settings, "other/repo")
    assert next(f for f in elsewhere["findings"] if f["rule_id"] == "CORE-DESER-001")["status"] == "open"
    with db.read() as tx:
        events = tx.query("SELECT details FROM audit_events WHERE action = 'review:finding:triaged'")
    assert len(events) == 1 and '"to":"accepted_risk"' in str(events[0]["details"])


def test_the_report_groups_by_control_counts_each_finding_once_and_shows_the_trend(db: Database,
                                                                                  settings: Settings) -> None:
    first = reviewed(db, settings, "shop/payments")
    reviewed(db, settings, "shop/payments")  # the same findings again: counted once
    sql = next(f for f in first["findings"] if f["rule_id"] == "CORE-SQL-001")
    set_finding_status(db, sql["id"], "fixed", actor=Actor.cli())
    start, end = parse_period(None, None)
    report = compliance_report(db, repository="shop/payments", start=start, end=end)
    rule_findings = {(f["pack_id"], f["rule_id"]) for f in first["findings"] if f["source"] == "rule"}
    assert report["reviews"] == 2
    assert report["findings"]["rule"] == len({f["fingerprint"] for f in first["findings"] if f["source"] == "rule"})
    assert report["findings"]["by_status"]["fixed"] >= 1
    sql_controls = [c for c in report["controls"] if c["framework"] == "CWE" and c["control"] == "CWE-89"]
    assert sql_controls and sql_controls[0]["fixed"] >= 1
    assert "secure-coding-core/CORE-SQL-001" in sql_controls[0]["rules"]
    owasp = {c["control"] for c in report["controls"] if c["framework"] == "OWASP Top 10 2021"}
    assert {"A03", "A08"} <= owasp
    assert sum(w["reviews"] for w in report["trend"]) == 2 and sum(w["fixed"] for w in report["trend"]) == 1
    assert {p for p, _ in rule_findings} <= set(report["packs"])
    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    assert {r["control"] for r in rows} >= {"CWE-89", "A03"} and all(r["repository"] == "shop/payments" for r in rows)
    empty = compliance_report(db, repository="shop/payments", start=end + timedelta(days=1),
                              end=end + timedelta(days=2))
    assert empty["reviews"] == 0 and empty["controls"] == []


def test_report_periods_are_checked() -> None:
    with pytest.raises(ValidationError, match="YYYY-MM-DD"):
        parse_period("24/11/2026", None)
    with pytest.raises(ValidationError, match="starts"):
        parse_period("2026-02-01", "2026-01-01")
    first, last = parse_period(None, None)
    assert last == clock.now().date() and (last - first).days == 89
