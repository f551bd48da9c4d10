"""Packs, decisions and compliance reports through the real app."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from appliance.audit import Actor
from appliance.auth import User, create_token, create_user
from appliance.store import Database
from tests.support import Trust, sign_in
from tests.web.test_api import DIFF, bearer, run_jobs


def test_admin_imports_a_pack_over_the_api_and_a_viewer_cannot(client: TestClient[Any], admin_token: str,
                                                              db: Database, test_trust: Trust) -> None:
    data = test_trust.packs["secure-coding-core"].read_bytes()
    same = client.post("/api/v1/packs", content=data,
                       headers={**bearer(admin_token), "Content-Type": "application/x-tar"})
    assert same.status_code == 200 and same.json()["outcome"] in ("unchanged", "renewed")
    broken = client.post("/api/v1/packs", content=data[:4000],
                         headers={**bearer(admin_token), "Content-Type": "application/x-tar"})
    assert broken.status_code == 422 and broken.json()["error"] == "pack_refused"
    viewer = create_user(db, username="vic", role="viewer", actor=Actor.system(), password="viewer-pass-1234")
    denied = client.post("/api/v1/packs", content=data, headers={**bearer(create_token(
        db, viewer, name="v", actor=Actor.system()).token), "Content-Type": "application/x-tar"})
    assert denied.status_code == 403


def test_selections_choose_the_packs_a_repository_is_reviewed_with(client: TestClient[Any], admin_token: str) -> None:
    chosen = client.put("/api/v1/packs/selections", headers=bearer(admin_token),
                        json={"repository": "gov/app", "template": "government"})
    assert chosen.status_code == 200 and chosen.json()["strict"] is True
    assert "secure-coding-core" in chosen.json()["packs"]
    bad = client.put("/api/v1/packs/selections", headers=bearer(admin_token),
                     json={"repository": "gov/app", "packs": ["no-such-pack"]})
    assert bad.status_code == 422 and "not active" in bad.json()["message"]
    for repository in ("gov/app", "plain/app"):
        response = client.post(f"/api/v1/reviews?model=false&repository={repository}", content=DIFF.encode(),
                               headers={**bearer(admin_token), "Content-Type": "text/x-diff"})
        assert response.status_code == 202
    run_jobs(client)
    reviews = {r["repository"]: r for r in client.get("/api/v1/reviews", headers=bearer(admin_token)).json()["reviews"]}
    strict = client.get(reviews["gov/app"]["links"]["self"], headers=bearer(admin_token)).json()
    plain = client.get(reviews["plain/app"]["links"]["self"], headers=bearer(admin_token)).json()
    assert strict["provenance"]["selection"] == {"scope": "repo:gov/app", "template": "government", "strict": True}
    assert plain["provenance"]["selection"]["scope"] == "all"
    # Strict severities: the same rule is one level more severe in the government repository.
    def severity(review: dict[str, Any], rule: str) -> str:
        return next(f["severity"] for f in review["findings"] if f["rule_id"] == rule)

    assert (severity(plain, "CORE-DESER-002"), severity(strict, "CORE-DESER-002")) in (
        ("medium", "high"), ("high", "critical"), ("low", "medium"))


def test_triage_and_the_compliance_report_and_its_audited_exports(client: TestClient[Any], admin: User,
                                                                  admin_token: str, db: Database) -> None:
    response = client.post("/api/v1/reviews?model=false&repository=svc/app", content=DIFF.encode(),
                           headers={**bearer(admin_token), "Content-Type": "text/x-diff"})
    run_jobs(client)
    review = client.get(response.headers["location"], headers=bearer(admin_token)).json()
    finding = review["findings"][0]
    with db.read() as tx:
        finding_id = tx.scalar("SELECT id FROM findings WHERE fingerprint = ?", (finding["fingerprint"],))
    refused = client.post(f"/api/v1/findings/{finding_id}/status", json={"status": "false_positive"},
                          headers=bearer(admin_token))
    assert refused.status_code == 422 and "needs a reason" in refused.json()["message"]
    done = client.post(f"/api/v1/findings/{finding_id}/status", json={"status": "fixed"}, headers=bearer(admin_token))
    assert done.status_code == 200 and done.json()["previous"] == "open"
    report = client.get("/api/v1/admin/compliance-report?repository=svc/app", headers=bearer(admin_token))
    assert report.status_code == 200 and report.json()["findings"]["by_status"]["fixed"] == 1
    url = "/api/v1/admin/compliance-report?repository=svc/app"
    csv_export = client.get(f"{url}&format=csv", headers=bearer(admin_token))
    assert csv_export.headers["content-type"].startswith("text/csv") and "framework,control" in csv_export.text
    html = client.get(f"{url}&format=html", headers=bearer(admin_token))
    assert "<h1>Compliance report</h1>" in html.text and "attachment" in html.headers["content-disposition"]
    assert "script" not in html.headers["content-security-policy"]
    bad = client.get("/api/v1/admin/compliance-report?format=pdf", headers=bearer(admin_token))
    assert bad.status_code == 422
    with db.read() as tx:
        exports = tx.rows("SELECT details FROM audit_events WHERE action = 'reports:compliance:exported'")
    assert len(exports) == 3
    # The dashboard pages render.
    sign_in(client)
    assert "By framework control" in client.get("/reports/compliance?repository=svc/app").text
    page = client.get("/admin/packs").text
    assert "Trust root" in page and "secure-coding-core" in page and "development root" in page
    assert "status-fixed" in client.get(f"/reviews/{review['id']}").text


def test_a_developer_may_mark_fixed_but_not_accept_a_risk(client: TestClient[Any], admin_token: str,
                                                           db: Database) -> None:
    response = client.post("/api/v1/reviews?model=false&repository=dev/app", content=DIFF.encode(),
                           headers={**bearer(admin_token), "Content-Type": "text/x-diff"})
    run_jobs(client)
    finding = client.get(response.headers["location"], headers=bearer(admin_token)).json()["findings"][0]
    assert finding["id"] and finding["status"] == "open" and finding["controls"]
    dev = create_user(db, username="devin", role="developer", actor=Actor.system(), password="builder-pass-9876")
    token = create_token(db, dev, name="d", actor=Actor.system()).token
    accept = client.post(f"/api/v1/findings/{finding['id']}/status", headers=bearer(token),
                         json={"status": "accepted_risk", "reason": "ship it"})
    assert accept.status_code == 403 and "reviewer's decision" in accept.json()["message"]
    fixed = client.post(f"/api/v1/findings/{finding['id']}/status", headers=bearer(token), json={"status": "fixed"})
    assert fixed.status_code == 200
