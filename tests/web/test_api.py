"""The review API through the real app: intake, bad input, formats, authorization."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar.testing import TestClient

from appliance.audit import Actor
from appliance.auth import User, create_token, create_user
from appliance.jobs import current_owner
from appliance.review.service import run_review_job
from appliance.store import Database

DIFF = """\
diff --git a/srv/app.py b/srv/app.py
--- a/srv/app.py
+++ b/srv/app.py
@@ -1,2 +1,4 @@
 import yaml
+config = yaml.load(open("c.yml"))
+answer = eval(request.args["expr"])
 print("ok")
"""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def run_jobs(client: TestClient[Any]) -> None:
    """Run queued jobs the way a worker does (this app has no consumer threads)."""
    services = client.app.state.services
    with services.db.read() as tx:
        jobs = [r[0] for r in tx.rows("SELECT id FROM jobs WHERE status = 'queued'")]
    for job_id in jobs:
        run_review_job(services.db, services.settings, job_id, owner=current_owner(), ruleset=services.catalog,
                       runtime=None)


def test_submit_raw_diff_then_read_json_sarif_and_markdown(client: TestClient[Any], admin_token: str) -> None:
    response = client.post("/api/v1/reviews?title=Config+loader&repository=srv%2Fapp&model=false",
                           content=DIFF.encode(), headers={**bearer(admin_token), "Content-Type": "text/x-diff"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and response.headers["location"] == f"/api/v1/reviews/{body['id']}"
    queued = client.get(f"/api/v1/reviews/{body['id']}", headers=bearer(admin_token)).json()
    assert queued["status"] == "queued" and queued["findings"] == []
    run_jobs(client)
    review = client.get(f"/api/v1/reviews/{body['id']}", headers=bearer(admin_token)).json()
    assert review["status"] == "done" and review["title"] == "Config loader" and review["repository"] == "srv/app"
    assert review["model"]["requested"] is False and review["model"]["status"] == "not_requested"
    assert {(f["path"], f["line"]) for f in review["findings"]} >= {("srv/app.py", 2), ("srv/app.py", 3)}
    assert "secure-coding-core" in {p["id"] for p in review["provenance"]["packs"]}
    sarif = client.get(f"/api/v1/reviews/{body['id']}/sarif", headers=bearer(admin_token))
    assert sarif.headers["content-type"].startswith("application/sarif+json")
    assert json.loads(sarif.text)["version"] == "2.1.0"
    markdown = client.get(f"/api/v1/reviews/{body['id']}/markdown", headers=bearer(admin_token))
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith(f"### Cortex Code review #{body['id']}")
    listed = client.get("/api/v1/reviews?status=done", headers=bearer(admin_token)).json()
    assert [r["id"] for r in listed["reviews"]] == [body["id"]]


def test_submit_json_body(client: TestClient[Any], admin_token: str) -> None:
    response = client.post("/api/v1/reviews", json={"diff": DIFF, "title": "From JSON", "model": False},
                           headers=bearer(admin_token))
    assert response.status_code == 202
    assert client.get(response.headers["location"], headers=bearer(admin_token)).json()["title"] == "From JSON"


@pytest.mark.parametrize(("body", "content_type", "status", "needle"), [
    (b"", "text/x-diff", 422, "the diff is empty"),
    (b"--- a/x.py\n+++ b/x.py\n@@ -1,1 +1,3 @@\n import os\n+x\nGARBAGE LINE\n", "text/x-diff", 422, "line 6"),
    (b"just some words\n", "text/x-diff", 422, "no file changes"),
    (b"{", "application/json", 422, "does not parse"),
    (b'{"patch": "x"}', "application/json", 422, '"diff" string'),
    (b"<xml/>", "application/xml", 422, "unsupported content type"),
])
def test_bad_input_gets_a_clear_error_and_nothing_is_stored(client: TestClient[Any], admin_token: str, db: Database,
                                                             body: bytes, content_type: str, status: int,
                                                             needle: str) -> None:
    response = client.post("/api/v1/reviews", content=body,
                           headers={**bearer(admin_token), "Content-Type": content_type})
    assert response.status_code == status, response.text
    assert needle in response.json()["message"]
    with db.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM reviews") == 0


def test_malformed_diff_error_names_the_line(client: TestClient[Any], admin_token: str) -> None:
    body = b"--- a/x.py\n+++ b/x.py\n@@ -1,1 +1,3 @@\n import os\n+x\nGARBAGE LINE\n"
    error = client.post("/api/v1/reviews", content=body,
                        headers={**bearer(admin_token), "Content-Type": "text/x-diff"})
    assert error.json()["details"] == {"line": 6, "text": "GARBAGE LINE"}


def test_too_large_is_413(client: TestClient[Any], admin_token: str, settings: Any) -> None:
    big = b"--- a/x.py\n+++ b/x.py\n@@ -0,0 +1,1 @@\n+" + b"x" * (settings.max_diff_bytes + 10) + b"\n"
    response = client.post("/api/v1/reviews", content=big,
                           headers={**bearer(admin_token), "Content-Type": "text/x-diff"})
    assert response.status_code == 413 and "limit is 5.0 MB" in response.json()["message"]


def test_non_utf8_is_accepted_and_flagged(client: TestClient[Any], admin_token: str) -> None:
    body = b"--- a/x.py\n+++ b/x.py\n@@ -0,0 +1,1 @@\n+name = 'caf" + b"\xe9'\n"
    response = client.post("/api/v1/reviews?model=false", content=body,
                           headers={**bearer(admin_token), "Content-Type": "text/x-diff"})
    assert response.status_code == 202
    run_jobs(client)
    review = client.get(response.headers["location"], headers=bearer(admin_token)).json()
    assert review["decoding_replaced"] is True and review["status"] == "done"


def test_unknown_review_is_404(client: TestClient[Any], admin_token: str) -> None:
    for suffix in ("", "/sarif", "/markdown"):
        response = client.get(f"/api/v1/reviews/99999{suffix}", headers=bearer(admin_token))
        assert response.status_code == 404 and response.json()["message"] == "review 99999 does not exist"


def test_roles_limit_what_a_token_can_do(client: TestClient[Any], db: Database, admin: User) -> None:
    viewer = create_user(db, username="vera", role="viewer", actor=Actor.system(), password="viewer-password-1")
    token = create_token(db, viewer, name="read-only", actor=Actor.system()).token
    assert client.get("/api/v1/reviews", headers=bearer(token)).status_code == 200
    denied = client.post("/api/v1/reviews", content=DIFF.encode(),
                         headers={**bearer(token), "Content-Type": "text/x-diff"})
    assert denied.status_code == 403 and "viewer" in denied.json()["message"]


def test_a_session_needs_the_csrf_header_for_api_writes(client: TestClient[Any], admin: User) -> None:
    from tests.support import sign_in

    csrf = sign_in(client)
    without = client.post("/api/v1/reviews", content=DIFF.encode(), headers={"Content-Type": "text/x-diff"})
    assert without.status_code == 403
    with_header = client.post("/api/v1/reviews", content=DIFF.encode(),
                              headers={"Content-Type": "text/x-diff", "X-CSRF-Token": csrf})
    assert with_header.status_code == 202


def test_models_and_packs_endpoints(client: TestClient[Any], admin_token: str) -> None:
    models = client.get("/api/v1/models", headers=bearer(admin_token)).json()
    assert any(m["id"] == "smollm2-135m-instruct-q4_1" and m["active"] for m in models["models"])
    assert models["active"]["status"] == "disabled"
    packs = client.get("/api/v1/packs", headers=bearer(admin_token)).json()
    assert "secure-coding-core" in {p["id"] for p in packs["packs"]} and packs["refused"] == []


def test_a_lone_surrogate_in_json_is_flagged_not_a_500(client: TestClient[Any], admin_token: str) -> None:
    body = b'{"diff": "--- a/x.py\\n+++ b/x.py\\n@@ -0,0 +1 @@\\n+s = \\"\\ud800\\"\\n", "model": false}'
    response = client.post("/api/v1/reviews", content=body,
                           headers={**bearer(admin_token), "Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    run_jobs(client)
    assert client.get(response.headers["location"], headers=bearer(admin_token)).json()["decoding_replaced"] is True
