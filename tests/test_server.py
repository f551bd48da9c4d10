"""The real server process on 127.0.0.1: the model, crash recovery under kill -9, the peer address, TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import socket
import ssl
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.store import Database
from tests.support import ADMIN_PASSWORD, ServerProcess, form_csrf, make_token, wait_for_review

pytestmark = pytest.mark.slow


def review_diff(files: int) -> bytes:
    """A diff with several files, so the model works for a while (several chunks)."""
    parts = []
    for n in range(files):
        body = "".join(f"+def handler_{n}_{i}(request):\n+    value = request.args.get('v{i}')\n"
                       f"+    return compute(value, {i})\n" for i in range(12))
        parts.append(f"diff --git a/svc/mod{n}.py b/svc/mod{n}.py\n--- a/svc/mod{n}.py\n+++ b/svc/mod{n}.py\n"
                     f"@@ -0,0 +1,36 @@\n{body}")
    parts.append("diff --git a/svc/db.py b/svc/db.py\n--- a/svc/db.py\n+++ b/svc/db.py\n@@ -0,0 +1,2 @@\n"
                 "+import pickle\n+state = pickle.loads(request.data)\n")
    return "".join(parts).encode()


def submit(server: ServerProcess, token: str, data: bytes, **params: str) -> int:
    response = httpx.post(f"{server.base}/api/v1/reviews", content=data, params=params, timeout=30,
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "text/x-diff"})
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def ledger(data_dir: Path, review_id: int) -> dict[str, Any]:
    db = Database(data_dir / "appliance.db")
    with db.read() as tx:
        job = tx.one("SELECT status, attempts FROM jobs WHERE kind = 'review' AND ref_id = ?", (review_id,))
        findings = tx.scalar("SELECT COUNT(*) FROM findings WHERE review_id = ?", (review_id,))
        ranks = tx.scalar("SELECT COUNT(DISTINCT rank) FROM findings WHERE review_id = ?", (review_id,))
        actions = Counter(r[0] for r in tx.rows(
            "SELECT action FROM audit_events WHERE target = ? OR (action = 'jobs:job:requeued' AND target = ?)",
            (f"review:{review_id}", f"review:{review_id}")))
    db.close()
    return {"job": job, "findings": findings, "distinct_ranks": ranks, "actions": actions}


def test_server_reviews_with_the_model_and_serves_every_page(server_factory: Any) -> None:
    server = server_factory(env={"CORTEX_MODEL_ENABLED": "true"}).start()
    ready = httpx.get(f"{server.base}/readyz").json()
    assert ready["status"] == "ready" and ready["checks"]["model"]["status"] == "ready"
    assert ready["checks"]["queue"]["alive"] == 1
    token = make_token(server, "admin", "admin")
    review_id = submit(server, token, review_diff(1), title="Handlers", repository="svc/api")
    review = wait_for_review(server.base, token, review_id)
    assert review["status"] == "done" and review["model"]["status"] == "reviewed"
    model = httpx.get(f"{server.base}/api/v1/reviews/{review_id}", headers={"Authorization": f"Bearer {token}"}).json()
    assert model["provenance"]["model"]["sha256"].startswith("b179c952")
    assert any(f["rule_id"] == "CORE-DESER-001" for f in review["findings"])
    # The dashboard, signed in through the real form, over a real socket.
    with httpx.Client(base_url=server.base, follow_redirects=True) as browser:
        page = browser.get("/login")
        signed = browser.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                              "_csrf": form_csrf(page.text)})
        assert signed.url.path == "/reviews" and "Handlers" in signed.text
        detail = browser.get(f"/reviews/{review_id}")
        assert "finding-box" in detail.text and "Provenance" in detail.text and "b179c952" in detail.text
        for path in ("/reviews", f"/reviews/{review_id}?severity=high&source=rule", "/reviews/new",
                     "/settings/tokens", "/docs", "/docs/quickstart", "/api/docs", "/api/schema/openapi.json"):
            response = browser.get(path)
            assert response.status_code == 200, path
            external = re.findall(r"(?:src|href)=\"(https?://[^\"]+)\"", response.text)
            assert [u for u in external if not u.startswith(server.base)] == [], path


def test_a_review_running_when_the_server_is_killed_completes_once_after_restart(server_factory: Any,
                                                                                  tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = server_factory(data_dir, env={"CORTEX_MODEL_ENABLED": "true"}).start()
    token = make_token(server)
    review_id = submit(server, token, review_diff(6))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = ledger(data_dir, review_id)["job"]
        if state["status"] == "running":
            break
        time.sleep(0.05)
    assert state["status"] == "running", "the review should be mid-way when the server dies"
    server.kill()
    crashed = ledger(data_dir, review_id)
    assert crashed["job"] == {"status": "running", "attempts": 1} and crashed["findings"] == 0

    restarted = server_factory(data_dir, env={"CORTEX_MODEL_ENABLED": "true"}).start()
    review = wait_for_review(restarted.base, token, review_id)
    assert review["status"] == "done" and review["attempts"] == 2
    # The restarted worker waited for the model: the review is not silently rules-only.
    assert review["model"]["status"] == "reviewed"
    after = ledger(data_dir, review_id)
    assert after["job"] == {"status": "done", "attempts": 2}
    assert after["findings"] == after["distinct_ranks"] == review["summary"]["findings_total"] > 0
    assert after["actions"]["review:review:created"] == 1
    assert after["actions"]["review:review:started"] == 2
    assert after["actions"]["review:review:completed"] == 1
    assert after["actions"]["jobs:job:requeued"] == 1


def test_a_review_accepted_before_a_crash_runs_after_restart(server_factory: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    api_only = server_factory(data_dir, workers=0).start()
    token = make_token(api_only)
    review_id = submit(api_only, token, review_diff(1), model="false")
    api_only.kill()
    assert ledger(data_dir, review_id)["job"] == {"status": "queued", "attempts": 0}
    worker = server_factory(data_dir, workers=1).start()
    review = wait_for_review(worker.base, token, review_id)
    assert review["status"] == "done" and review["attempts"] == 1
    assert ledger(data_dir, review_id)["actions"]["review:review:completed"] == 1


def test_throttling_keys_on_the_socket_peer_not_x_forwarded_for(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory(env={"CORTEX_LOGIN_MAX_FAILURES": "3"}).start()
    make_token(server, "admin", "admin")
    with httpx.Client(base_url=server.base) as client:
        for n in range(3):
            page = client.get("/login")
            failed = client.post("/login", headers={"X-Forwarded-For": f"203.0.113.{n}"},
                                 data={"username": "admin", "password": "not-the-password",
                                       "_csrf": form_csrf(page.text)})
            assert failed.status_code == 401
        page = client.get("/login")
        blocked = client.post("/login", headers={"X-Forwarded-For": "198.51.100.7"},
                              data={"username": "admin", "password": ADMIN_PASSWORD, "_csrf": form_csrf(page.text)})
        assert blocked.status_code == 429
    db = Database(tmp_path / "data" / "appliance.db")
    with db.read() as tx:
        peers = {r[0] for r in tx.rows("SELECT source_addr FROM audit_events WHERE action LIKE 'auth:session:%'")}
    db.close()
    assert peers == {"127.0.0.1"}


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")  # an old client, on purpose
def test_over_tls_the_session_cookie_is_secure_and_host_prefixed(server_factory: Any, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = server_factory(env={"CORTEX_TLS_CERT": str(cert), "CORTEX_TLS_KEY": str(key)}, tls_ca=cert).start()
    make_token(server, "admin", "admin")
    with httpx.Client(base_url=server.base, verify=server.verify) as client:
        page = client.get("/login")
        response = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                               "_csrf": form_csrf(page.text)})
        cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and "session" in v)
        assert cookie.startswith("__Host-cortex_session=") and "Secure" in cookie and "HttpOnly" in cookie
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.base.replace("https://", "http://") + "/healthz", timeout=5)
    # TLS 1.2 and 1.3 only, forward-secret AEAD suites only: an old client is turned away.
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        legacy.load_verify_locations(cert)
        legacy.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        legacy.maximum_version = version
        legacy.set_ciphers("ALL:@SECLEVEL=0")
        with pytest.raises((ssl.SSLError, OSError)), socket.create_connection(("127.0.0.1", server.port), 5) as raw:
            legacy.wrap_socket(raw, server_hostname="127.0.0.1").close()
    weak = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    weak.load_verify_locations(cert)
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("AES128-SHA:AES256-SHA:AES128-GCM-SHA256")  # static RSA key exchange, CBC
    with pytest.raises((ssl.SSLError, OSError)), socket.create_connection(("127.0.0.1", server.port), 5) as raw:
        weak.wrap_socket(raw, server_hostname="127.0.0.1").close()
    modern = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", server.port), 5) as raw, \
            modern.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_the_server_is_ready_before_its_rules_compile_and_a_review_waits_for_them(server_factory: Any) -> None:
    """/readyz answers once the packs are checked (files and signatures); their queries compile after.
    A review sent at once still runs every rule of the packs it reports."""
    server = server_factory().start()
    token = make_token(server)
    review_id = submit(server, token, review_diff(1), repository="svc/api")
    packs = httpx.get(f"{server.base}/readyz").json()["checks"]["packs"]
    assert packs["ok"] and "secure-coding-core" in {p["id"] for p in packs["active"]}
    assert isinstance(packs["compiled"], bool)
    review = wait_for_review(server.base, token, review_id)
    assert review["status"] == "done"
    assert any(f["rule_id"] == "CORE-DESER-001" for f in review["findings"])
    assert "secure-coding-core" in {p["id"] for p in review["provenance"]["packs"]}
    deadline = time.monotonic() + 60
    while not httpx.get(f"{server.base}/readyz").json()["checks"]["packs"]["compiled"]:
        assert time.monotonic() < deadline, "the packs never finished compiling"
        time.sleep(0.1)
