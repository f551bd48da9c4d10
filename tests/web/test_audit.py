"""The audit log through the real app: search, detail, export, verify, review reads, and who may see it."""

from __future__ import annotations

import json
from typing import Any

from litestar.testing import TestClient

from appliance.audit import Actor
from appliance.audit.export import verify_export
from appliance.auth import User, create_token, create_user
from appliance.store import Database
from tests.support import ADMIN_PASSWORD, sign_in
from tests.web.test_api import DIFF, bearer, run_jobs


def auditor_token(db: Database) -> str:
    user = create_user(db, username="audrey", role="auditor", actor=Actor.system(), password=ADMIN_PASSWORD,
                       display_name="Audrey Auditor")
    return create_token(db, user, name="audit", actor=Actor.system()).token


def test_only_auditors_and_admins_read_the_log_and_nobody_can_change_it(client: TestClient[Any], db: Database,
                                                                      admin_token: str) -> None:
    dev = create_user(db, username="dev", role="developer", actor=Actor.system(), password=ADMIN_PASSWORD)
    dev_token = create_token(db, dev, name="t", actor=Actor.system()).token
    assert client.get("/api/v1/audit-logs", headers=bearer(dev_token)).status_code == 403
    assert client.get("/api/v1/audit-logs").status_code == 401
    assert client.get("/api/v1/audit-logs", headers=bearer(auditor_token(db))).status_code == 200
    assert client.get("/api/v1/audit-logs", headers=bearer(admin_token)).status_code == 200
    for method in ("put", "patch", "delete"):
        response = getattr(client, method)("/api/v1/audit-logs/1", headers=bearer(admin_token))
        assert response.status_code == 405, method
    assert client.post("/api/v1/audit-logs/1", headers=bearer(admin_token)).status_code == 405


def test_search_filters_and_pages_by_seq(client: TestClient[Any], db: Database) -> None:
    token = auditor_token(db)
    for n in range(30):
        client.post("/login", data={"username": f"ghost{n % 3}", "password": "x"})  # failed sign-ins, no CSRF
        create_user(db, username=f"u{n}", role="viewer", actor=Actor.cli(), password=None)
    page = client.get("/api/v1/audit-logs?action=auth:user:created&limit=10", headers=bearer(token)).json()
    assert [e["action"] for e in page["events"]] == ["auth:user:created"] * 10
    seqs = [e["seq"] for e in page["events"]]
    assert seqs == sorted(seqs, reverse=True)
    older = client.get(f"/api/v1/audit-logs?action=auth:user:created&limit=10&before={page['next_before']}",
                       headers=bearer(token)).json()
    assert max(e["seq"] for e in older["events"]) < min(seqs)
    newer = client.get(f"/api/v1/audit-logs?action=auth:user:created&limit=10&after={older['events'][0]['seq']}",
                       headers=bearer(token)).json()
    assert [e["seq"] for e in newer["events"]] == seqs
    by_text = client.get("/api/v1/audit-logs?q=u17", headers=bearer(token)).json()["events"]
    assert {e["target"] for e in by_text} == {"user:u17"}
    by_area = client.get("/api/v1/audit-logs?action=auth&outcome=denied", headers=bearer(token)).json()["events"]
    assert by_area and all(e["action"].startswith("auth:") and e["outcome"] == "denied" for e in by_area)
    by_actor = client.get("/api/v1/audit-logs?actor=audrey", headers=bearer(token)).json()["events"]
    assert all(e["actor_name"] == "audrey" for e in by_actor)
    assert client.get("/api/v1/audit-logs?since=yesterday", headers=bearer(token)).status_code == 422
    dated = client.get("/api/v1/audit-logs?since=2000-01-01&until=2000-01-02", headers=bearer(token)).json()
    assert dated["events"] == []
    from appliance import clock

    today = clock.now_iso()[:10]
    todays = client.get(f"/api/v1/audit-logs?since={today}&until={today}&action=auth:user:created&limit=100",
                        headers=bearer(token)).json()["events"]
    assert len(todays) == 31  # audrey and the thirty others
    first_half = client.get(f"/api/v1/audit-logs?until={todays[15]['at']}&action=auth:user:created&limit=100",
                            headers=bearer(token)).json()["events"]
    assert [e["seq"] for e in first_half] == [e["seq"] for e in todays[16:]]


def test_event_detail_has_its_hash_and_nearest_checkpoint(client: TestClient[Any], db: Database,
                                                          settings: Any) -> None:
    from appliance.audit.checkpoints import make_checkpoint

    token = auditor_token(db)
    make_checkpoint(db, settings.data_dir)
    event = client.get("/api/v1/audit-logs/2", headers=bearer(token)).json()
    assert len(event["hash"]) == 64 and event["checkpoint"]["size"] >= 2
    assert "signature: " in event["checkpoint"]["text"]
    assert client.get("/api/v1/audit-logs/999999", headers=bearer(token)).status_code == 404
    key = client.get("/api/v1/audit-logs/key", headers=bearer(token)).json()
    assert key["public_key"].startswith("-----BEGIN PUBLIC KEY-----") and len(key["key_id"]) == 16


def test_export_verifies_on_its_own_and_is_audited(client: TestClient[Any], db: Database) -> None:
    token = auditor_token(db)
    for fmt in ("jsonl", "csv"):
        response = client.get(f"/api/v1/audit-logs/export?format={fmt}&from_seq=2", headers=bearer(token))
        assert response.status_code == 200, response.text
        report = verify_export(response.content)
        assert report.ok, report.summary()
        assert report.first_seq == 2
    posted = client.post("/api/v1/audit-logs/export", json={"format": "csv"}, headers=bearer(token))
    assert posted.status_code == 200 and verify_export(posted.content).ok
    events = client.get("/api/v1/audit-logs?action=audit:log:exported", headers=bearer(token)).json()["events"]
    assert len(events) == 3 and {e["details"]["format"] for e in events} == {"jsonl", "csv"}
    assert events[0]["actor_name"] == "audrey" and events[0]["details"]["via"] == "api"
    assert client.get("/api/v1/audit-logs/export?format=xml", headers=bearer(token)).status_code == 422
    assert client.get("/api/v1/audit-logs/export?from_seq=999999", headers=bearer(token)).status_code == 422


def test_verify_on_both_paths_reports_ok_and_is_audited(client: TestClient[Any], db: Database) -> None:
    token = auditor_token(db)
    for path in ("/api/v1/audit-logs/verify", "/api/v1/audit/verify"):
        body = client.get(path, headers=bearer(token)).json()
        assert body["ok"] is True and body["status"] == "ok" and body["events"] == body["size"] > 0
    posted = client.post("/api/v1/audit/verify", json={"checkpoints": ["not a checkpoint"]}, headers=bearer(token))
    assert posted.status_code == 422 and "not a checkpoint" in posted.json()["message"]
    events = client.get("/api/v1/audit-logs?action=audit:log:verified", headers=bearer(token)).json()["events"]
    assert len(events) == 2 and all(e["outcome"] == "success" for e in events)


def test_review_views_and_exports_are_audited_once_per_window(client: TestClient[Any], admin_token: str,
                                                              db: Database, admin: User) -> None:
    created = client.post("/api/v1/reviews?model=false", content=DIFF.encode(),
                          headers={**bearer(admin_token), "Content-Type": "text/x-diff"}).json()
    run_jobs(client)
    review = created["id"]
    for _ in range(5):  # a CI job polling
        assert client.get(f"/api/v1/reviews/{review}", headers=bearer(admin_token)).status_code == 200
    client.get(f"/api/v1/reviews/{review}/sarif", headers=bearer(admin_token))
    client.get(f"/api/v1/reviews/{review}/markdown", headers=bearer(admin_token))
    client.get(f"/api/v1/reviews/{review}/markdown", headers=bearer(admin_token))
    sign_in(client)
    for _ in range(3):
        assert client.get(f"/reviews/{review}").status_code == 200
    with db.read() as tx:
        rows = tx.query("SELECT action, actor_kind, actor_display, details FROM audit_events WHERE target = ? "
                        "AND action IN ('review:review:viewed', 'review:review:exported') ORDER BY seq",
                        (f"review:{review}",))
    seen = [(r["action"], r["actor_kind"], json.loads(r["details"])) for r in rows]
    assert seen == [("review:review:viewed", "token", {"via": "api"}),
                    ("review:review:exported", "token", {"via": "api", "format": "sarif"}),
                    ("review:review:exported", "token", {"via": "api", "format": "markdown"}),
                    ("review:review:viewed", "user", {"via": "dashboard"})]
    assert rows[-1]["actor_display"] == "Ada Admin"


def test_dashboard_pages_for_auditors(client: TestClient[Any], db: Database) -> None:
    auditor_token(db)
    sign_in(client, "audrey")
    page = client.get("/audit?action=auth&outcome=success")
    assert page.status_code == 200 and "auth:session:created" in page.text and "Audit log" in page.text
    detail = client.get("/audit/1")
    assert detail.status_code == 200 and "system:database:migrated" in detail.text and "Hash" in detail.text
    verified = client.get("/audit/verify")
    assert verified.status_code == 200 and "OK:" in verified.text
    assert client.get("/audit?since=nonsense").status_code == 200  # the error is shown on the page


def test_the_audit_page_is_not_for_developers(client: TestClient[Any], db: Database) -> None:
    create_user(db, username="dev", role="developer", actor=Actor.system(), password=ADMIN_PASSWORD)
    sign_in(client, "dev")
    assert client.get("/audit").status_code == 403
    assert 'href="/audit"' not in client.get("/reviews").text


def test_a_search_no_index_serves_scans_a_bounded_window_and_says_where_to_go_on(db: Database) -> None:
    from appliance.audit import AuditTag, record_event
    from appliance.audit.log import EventFilter, search_events

    with db.write() as tx:
        for n in range(300):
            record_event(tx, AuditTag.REVIEW_REVIEW_VIEWED, Actor.system(), target=f"review:{n}",
                         details={"needle": n % 100 == 0})
    flt = EventFilter(text='"needle":true')
    seen: list[int] = []
    page = search_events(db, flt, limit=2, scan_window=40)
    pages = 0
    while True:
        pages += 1
        seen += [e["seq"] for e in page["events"]]
        if page["next_before"] is None:
            break
        page = search_events(db, flt, limit=2, scan_window=40, before=page["next_before"])
    with db.read() as tx:
        expected = [r[0] for r in tx.rows("SELECT seq FROM audit_events WHERE details LIKE '%\"needle\":true%' "
                                          "ORDER BY seq DESC")]
    assert seen == expected and len(expected) == 3 and pages > 3  # several empty windows on the way
    # Going back up (newer) from the oldest match returns to where we were.
    up = search_events(db, flt, limit=2, scan_window=400, after=expected[-1])
    assert [e["seq"] for e in up["events"]] == expected[:2]
