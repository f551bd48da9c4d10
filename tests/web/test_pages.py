"""The dashboard pages: rendered by the real app, complete, and fully offline."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import TestClient

from appliance.audit import Actor
from appliance.auth import User
from appliance.config import Settings
from appliance.jobs import current_owner
from appliance.review import service
from appliance.store import Database
from appliance.tasks.services import Services
from tests.support import ROOT, sign_in

DIFF = b"""\
diff --git a/api/views.py b/api/views.py
--- a/api/views.py
+++ b/api/views.py
@@ -1,2 +1,5 @@
 import pickle
+import random
+session_token = str(random.random())
+obj = pickle.loads(request.body)
 print("<script>alert('x')</script>")
"""


def reviewed(settings: Settings, db: Database) -> int:
    services = Services(settings, db=db)
    accepted = service.submit_review(db, settings, DIFF, actor=Actor.cli(), source="cli", title="<i>Views</i>",
                                     use_model=False)
    service.run_review_job(db, settings, accepted.job_id, owner=current_owner(), ruleset=services.catalog,
                           runtime=None)
    return accepted.review_id


def test_review_page_shows_the_diff_with_findings_inline_and_provenance(client: TestClient[Any], admin: User,
                                                                         settings: Settings, db: Database) -> None:
    review_id = reviewed(settings, db)
    sign_in(client)
    page = client.get(f"/reviews/{review_id}").text
    assert "&lt;i&gt;Views&lt;/i&gt;" in page and "<i>Views</i>" not in page  # escaped title
    assert "&lt;script&gt;alert" in page and "<script>alert" not in page  # escaped diff content
    assert page.count('class="finding-box rule"') >= 2
    assert "CORE-DESER-001" in page and "Provenance" in page and "secure-coding-core" in page
    assert "rules-only review was requested" in page
    high_only = client.get(f"/reviews/{review_id}?severity=critical").text
    assert high_only.count('class="finding-box') < page.count('class="finding-box')
    model_only = client.get(f"/reviews/{review_id}?source=model").text
    assert 'class="finding-box' not in model_only
    listing = client.get("/reviews").text
    assert f'href="/reviews/{review_id}"' in listing and "status-done" in listing


def test_unknown_review_page_is_404(client: TestClient[Any], admin: User) -> None:
    sign_in(client)
    response = client.get("/reviews/424242")
    assert response.status_code == 404 and "review 424242 does not exist" in response.text


def test_upload_form_reports_the_bad_line(client: TestClient[Any], admin: User) -> None:
    csrf = sign_in(client)
    bad = "--- a/x.py\n+++ b/x.py\n@@ -1,1 +1,3 @@\n import os\n+x\n?? broken\n"
    response = client.post("/reviews/new", data={"_csrf": csrf, "diff": bad, "title": "t"},
                           files={"file": ("", b"", "application/octet-stream")})
    assert response.status_code == 422 and "line 6" in response.text


def test_security_headers_on_every_page(client: TestClient[Any], admin: User) -> None:
    for path in ("/login", "/docs", "/healthz", "/static/css/cortex.css"):
        response = client.get(path)
        assert response.headers["content-security-policy"].startswith("default-src 'self'"), path
        assert response.headers["x-frame-options"] == "DENY" and response.headers["x-content-type-options"] == "nosniff"


def test_no_template_static_file_or_manual_page_reaches_another_origin() -> None:
    web = ROOT / "appliance" / "web"
    allowed = re.compile(r"https?://(127\.0\.0\.1|localhost|\[::1\])")
    offenders = []
    for path in [*web.rglob("*.html"), *web.rglob("*.css"), *web.rglob("*.js"), *(ROOT / "offline-docs").glob("*.md")]:
        for url in re.findall(r"https?://[^\s\"')<>]+", path.read_text(encoding="utf-8")):
            if not allowed.match(url) and "example" not in url:
                offenders.append(f"{path.relative_to(ROOT)}: {url}")
    assert offenders == []


def test_vendored_api_explorer_assets_are_served_and_nothing_else(client: TestClient[Any]) -> None:
    page = client.get("/api/docs").text
    assert '/static/vendor/swagger-ui/swagger-ui-bundle.js' in page and "unpkg" not in page and "cdn" not in page
    assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
    assert client.get("/static/vendor/swagger-ui/index.html").status_code == 404
    schema = client.get("/api/schema/openapi.json").json()
    assert "/api/v1/reviews" in schema["paths"]
    assert schema["components"]["securitySchemes"]["apiToken"]["scheme"] == "bearer"


def test_a_pasted_diff_with_crlf_line_endings_is_reviewed_like_any_other(client: TestClient[Any], admin: User,
                                                                          db: Database) -> None:
    csrf = sign_in(client)
    pasted = DIFF.decode().replace("\n", "\r\n")  # what a browser's textarea sends
    response = client.post("/reviews/new", data={"_csrf": csrf, "diff": pasted, "title": "pasted"},
                           files={"file": ("", b"", "application/octet-stream")}, follow_redirects=False)
    assert response.status_code == 303
    services = client.app.state.services
    with db.read() as tx:
        job_id = tx.scalar("SELECT id FROM jobs ORDER BY id DESC LIMIT 1")
    service.run_review_job(db, services.settings, job_id, owner=current_owner(), ruleset=services.catalog,
                           runtime=None)
    review = service.get_review(db, int(response.headers["location"].rsplit("/", 1)[1]))
    assert [f["path"] for f in review["files"]] == ["api/views.py"] and review["files"][0]["language"] == "python"
    assert {"CORE-DESER-001", "CORE-RAND-001"} <= {f["rule_id"] for f in review["findings"]}


def test_an_empty_upload_is_refused_and_audited(client: TestClient[Any], admin: User, db: Database) -> None:
    csrf = sign_in(client)
    response = client.post("/reviews/new", data={"_csrf": csrf, "diff": "  "},
                           files={"file": ("", b"", "application/octet-stream")})
    assert response.status_code == 422 and "the diff is empty" in response.text
    with db.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM audit_events WHERE action = 'review:review:refused'") == 1
