"""Sign-in, sessions, CSRF, throttling, bootstrap and API tokens through the real app."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from appliance.auth import User, issue_bootstrap_token
from appliance.config import Settings
from appliance.store import Database
from tests.support import ADMIN_PASSWORD, form_csrf, sign_in


def audit(db: Database, action: str) -> list[dict[str, Any]]:
    with db.read() as tx:
        return tx.query("SELECT * FROM audit_events WHERE action = ? ORDER BY seq", (action,))


def test_pages_need_a_session_and_the_api_needs_credentials(client: TestClient[Any], admin: User) -> None:
    page = client.get("/reviews", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=%2Freviews")
    api = client.get("/api/v1/reviews")
    assert api.status_code == 401 and api.json()["error"] == "unauthenticated"
    bad_token = client.get("/api/v1/reviews", headers={"Authorization": "Bearer cca_not-a-real-token"})
    assert bad_token.status_code == 401 and "not valid" in bad_token.json()["message"]


def test_sign_in_sets_a_hardened_session_cookie_and_sign_out_ends_it(client: TestClient[Any], admin: User,
                                                                       db: Database) -> None:
    page = client.get("/login")
    response = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                           "_csrf": form_csrf(page.text), "next": "/reviews"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/reviews"
    cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and "cortex_session=" in v)
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Path=/" in cookie
    assert client.get("/reviews").status_code == 200
    csrf = form_csrf(client.get("/reviews").text)
    assert client.post("/logout", data={"_csrf": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/reviews", follow_redirects=False).status_code == 303
    assert [e["outcome"] for e in audit(db, "auth:session:created")] == ["success"]
    assert '"signed out"' in str(audit(db, "auth:session:ended")[0]["details"])


def test_a_form_without_its_csrf_token_is_refused_and_audited(client: TestClient[Any], admin: User,
                                                               db: Database) -> None:
    sign_in(client)
    response = client.post("/settings/tokens", data={"name": "ci"})
    assert response.status_code == 403 and "security token" in response.text
    forged = client.post("/settings/tokens", data={"name": "ci", "_csrf": "forged"})
    assert forged.status_code == 403
    assert len(audit(db, "auth:csrf:refused")) == 2
    login_without = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert login_without.status_code == 403


def test_wrong_passwords_are_throttled_per_account(client: TestClient[Any], admin: User, db: Database,
                                                   settings: Settings) -> None:
    for _ in range(settings.login_max_failures):
        page = client.get("/login")
        failed = client.post("/login", data={"username": "admin", "password": "wrong-password-1",
                                             "_csrf": form_csrf(page.text)})
        assert failed.status_code == 401 and "wrong username or password" in failed.text
    page = client.get("/login")
    throttled = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                            "_csrf": form_csrf(page.text)})
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    assert len(audit(db, "auth:session:failed")) == settings.login_max_failures
    assert len(audit(db, "auth:session:throttled")) == 1
    assert audit(db, "auth:session:created") == []


def test_first_admin_bootstrap_is_one_time(client: TestClient[Any], db: Database, settings: Settings) -> None:
    assert client.get("/login", follow_redirects=False).headers["location"] == "/setup"
    token = issue_bootstrap_token(db, settings)
    assert token
    page = client.get("/setup")
    form = {"_csrf": form_csrf(page.text), "token": "wrong", "username": "root-admin",
            "password": "a-long-enough-password", "confirm": "a-long-enough-password"}
    refused = client.post("/setup", data=form)
    assert refused.status_code == 401 and "not accepted" in refused.text
    created = client.post("/setup", data={**form, "token": token}, follow_redirects=False)
    assert created.status_code == 303 and created.headers["location"] == "/reviews"
    assert client.get("/reviews").status_code == 200
    # The token is spent, and with an admin in place no new one is issued.
    assert issue_bootstrap_token(db, settings) is None
    assert client.get("/setup", follow_redirects=False).headers["location"] == "/login"
    with db.read() as tx:
        stored = tx.query("SELECT token_hash, used_at FROM bootstrap_tokens")
        log = " ".join(str(r) for r in tx.query("SELECT * FROM audit_events"))
    assert stored[0]["used_at"] and stored[0]["token_hash"] != token and token not in log
    assert [e["outcome"] for e in audit(db, "auth:bootstrap:refused")] == ["denied"]


def test_api_tokens_from_the_dashboard_authenticate_and_can_be_revoked(client: TestClient[Any], admin: User,
                                                                       db: Database) -> None:
    csrf = sign_in(client)
    created = client.post("/settings/tokens", data={"name": "ci-main", "expires_days": "30", "_csrf": csrf})
    assert created.status_code == 201
    token = created.text.split('<code class="secret">')[1].split("<")[0]
    assert token.startswith("cca_")
    # A bearer token takes precedence over the session cookie this client also holds.
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/reviews", headers=headers).status_code == 200
    token_id = next(t for t in _tokens(db) if t["name"] == "ci-main")["id"]
    revoke = client.post(f"/settings/tokens/{token_id}/revoke", data={"_csrf": csrf}, follow_redirects=False)
    assert revoke.status_code == 303
    assert client.get("/api/v1/reviews", headers=headers).status_code == 401
    with db.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM api_tokens WHERE token_hash = ?", (token,)) == 0
    assert {e["action"] for e in audit(db, "auth:token:created") + audit(db, "auth:token:revoked")} == {
        "auth:token:created", "auth:token:revoked"}
    assert audit(db, "auth:token:refused")


def _tokens(db: Database) -> list[dict[str, Any]]:
    with db.read() as tx:
        return tx.query("SELECT id, name FROM api_tokens")


def test_open_redirects_are_refused(client: TestClient[Any], admin: User) -> None:
    page = client.get("/login")
    response = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                           "_csrf": form_csrf(page.text), "next": "//evil.example/steal"},
                           follow_redirects=False)
    assert response.headers["location"] == "/reviews"


def test_a_deactivated_account_loses_sessions_and_tokens(client: TestClient[Any], admin: User, db: Database) -> None:
    from appliance.audit import Actor
    from appliance.auth import create_token, create_user, deactivate_user
    from appliance.errors import ConflictError

    dev = create_user(db, username="dev", role="developer", actor=Actor.system(), password="builder-pass-123")
    token = create_token(db, dev, name="ci", actor=Actor.system()).token
    sign_in(client, "dev", "builder-pass-123")
    assert client.get("/reviews").status_code == 200
    deactivate_user(db, "dev", actor=Actor.system())
    assert client.get("/reviews", follow_redirects=False).status_code == 303
    assert client.get("/api/v1/reviews", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert [e["target"] for e in audit(db, "auth:user:deactivated")] == ["user:dev"]
    try:
        deactivate_user(db, "admin", actor=Actor.system())
    except ConflictError as exc:
        assert "last active administrator" in exc.message
    else:
        raise AssertionError("the last admin must not be deactivated")


def test_permission_denials_are_audited(client: TestClient[Any], admin: User, db: Database) -> None:
    from appliance.audit import Actor
    from appliance.auth import create_token, create_user

    viewer = create_user(db, username="viewer1", role="viewer", actor=Actor.system(), password="read-only-pass-1")
    token = create_token(db, viewer, name="ro", actor=Actor.system()).token
    response = client.post("/api/v1/reviews", content=b"x", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    denied = audit(db, "auth:permission:denied")
    assert len(denied) == 1 and denied[0]["actor_name"] == "viewer1" and denied[0]["outcome"] == "denied"


def test_an_api_write_without_credentials_is_401_not_a_csrf_error(client: TestClient[Any], admin: User,
                                                                  db: Database) -> None:
    response = client.post("/api/v1/reviews", content=b"x", headers={"Content-Type": "text/x-diff"})
    assert response.status_code == 401 and response.json()["error"] == "unauthenticated"
    revoked = client.post("/api/v1/reviews", content=b"x", headers={"Authorization": "Bearer cca_revoked"})
    assert revoked.status_code == 401 and "not valid" in revoked.json()["message"]
    assert audit(db, "auth:csrf:refused") == []


def test_anonymous_refusals_cannot_flood_the_audit_trail(client: TestClient[Any], admin: User, db: Database) -> None:
    for _ in range(30):
        assert client.get("/api/v1/reviews", headers={"Authorization": "Bearer cca_guess"}).status_code == 401
    refused = audit(db, "auth:token:refused")
    assert len(refused) == client.app.state.services.refusal_gate.burst
