"""Forwarding to the site's collectors: real rsyslogd over TCP and TLS, a webhook and a Splunk HEC receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.audit import Actor, AuditTag, record_event
from appliance.audit.forwarders import ForwardError, add_forwarder, deliver, list_forwarders, syslog_frame
from appliance.audit.verify import ROW_SQL
from appliance.store import Database
from tests.audit.collectors import HttpCollector, Rsyslog, make_ca, rsyslog_available
from tests.support import ADMIN_PASSWORD, form_csrf, free_port, make_token

HOSTILE = 'x"]\n<13>1 - forged - - - [a] {"seq":1}\x1b[2J'


def events(db: Database, count: int) -> None:
    with db.write() as tx:
        for n in range(count):
            record_event(tx, AuditTag.AUTH_SESSION_FAILED, Actor(kind="anonymous", name=HOSTILE, address="127.0.0.1"),
                         target=f"user:{HOSTILE}", outcome="failure", details={"n": n, "reason": "wrong password"})


def head(db: Database) -> int:
    with db.read() as tx:
        return int(tx.scalar("SELECT MAX(seq) FROM audit_events"))


def drain(db: Database, forwarder_id: int) -> int:
    sent = 0
    while n := deliver(db, forwarder_id, appliance_id="test-appliance", batch=50):
        sent += n
    return sent


def actions(db: Database, prefix: str) -> list[str]:
    with db.read() as tx:
        return [r[0] for r in tx.rows("SELECT action FROM audit_events WHERE action LIKE ? ORDER BY seq",
                                      (prefix + "%",))]


def test_a_syslog_frame_is_rfc5424_with_octet_counting_and_user_text_cannot_forge_one(db: Database) -> None:
    events(db, 1)
    with db.read() as tx:
        row = tx.rows(f"{ROW_SQL} ORDER BY seq DESC LIMIT 1")[0]
    frame = syslog_frame(row, "appliance-01")
    length, _, message = frame.partition(b" ")
    assert int(length) == len(message)  # RFC 6587 §3.4.1
    assert message.startswith(b"<108>1 ")  # facility 13 (log audit), severity 4 for a failure; version 1
    header, _bom, body = message.partition(b"\xef\xbb\xbf")
    assert header.split(b" ")[2:6] == [b"appliance-01", b"cortex", b"-", b"audit"]
    assert b"\n" not in body and json.loads(body)["target"] == f"user:{HOSTILE}"
    assert json.loads(body)["hash"] == row[-1]


@pytest.mark.skipif(not rsyslog_available(), reason="rsyslogd is not installed (python3 build.py setup installs it)")
@pytest.mark.slow
def test_forwarding_to_rsyslog_survives_its_restart_and_ours(server_factory: Any, tmp_path: Path) -> None:
    """Every event arrives at a real rsyslogd, in order, at least once, across rsyslog being stopped for a while
    and the appliance being killed with kill -9 and restarted."""
    rsyslog = Rsyslog(tmp_path / "rsyslog").start()
    data_dir = tmp_path / "data"
    env = {"CORTEX_MODEL_ENABLED": "false"}
    server = server_factory(data_dir, env=env, workers=0).start()
    make_token(server, "admin", "admin")
    added = server.cli("audit", "forwarders", "add", "siem", "--kind", "syslog-tcp", "--target",
                       f"127.0.0.1:{rsyslog.port}")
    assert added.returncode == 0, added.stderr

    def sign_ins(base: str, count: int) -> None:
        with httpx.Client(base_url=base) as browser:
            for _ in range(count):
                page = browser.get("/login")
                assert browser.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                                    "_csrf": form_csrf(page.text)}).status_code == 303
                browser.cookies.clear()

    sign_ins(server.base, 5)
    db = Database(data_dir / "appliance.db")
    try:
        rsyslog.wait_for(head(db))
        rsyslog.stop()  # the collector goes away for a while
        sign_ins(server.base, 5)
        time.sleep(3)  # the worker tries, fails, backs off
        assert list_forwarders(db)[0].failing
        server.kill()  # and the appliance dies too, with events not yet delivered
        server = server_factory(data_dir, env=env, workers=0).start()
        sign_ins(server.base, 5)
        rsyslog.start()
        target = head(db)
        received = rsyslog.wait_for(target)
        with db.read() as tx:
            hashes = dict(tx.rows("SELECT seq, hash FROM audit_events"))
    finally:
        rsyslog.stop()
        db.close()
    seqs = [e["seq"] for e in received]
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == sorted(first_seen)  # in order
    assert set(range(1, target + 1)) <= set(seqs)  # every event, at least once
    assert all(e["hash"] == hashes[e["seq"]] for e in received)
    db = Database(data_dir / "appliance.db")
    try:
        # The forwarder records its recovery after the send that rsyslog has just received: wait for it.
        deadline = time.monotonic() + 60
        while len(actions(db, "audit:forwarder:")) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert actions(db, "audit:forwarder:") == ["audit:forwarder:added", "audit:forwarder:failing",
                                                   "audit:forwarder:recovered"]
    finally:
        db.close()


@pytest.mark.skipif(not rsyslog_available(tls=True), reason="rsyslog-gnutls is not installed")
def test_syslog_over_tls_checks_the_collectors_certificate(db: Database, tmp_path: Path) -> None:
    ca, cert, key = make_ca(tmp_path / "pki")
    other_ca, _, _ = make_ca(tmp_path / "other", "Someone Else's CA")
    rsyslog = Rsyslog(tmp_path / "rsyslog", tls=(ca, cert, key)).start()
    try:
        events(db, 7)
        wrong = add_forwarder(db, name="wrong-ca", kind="syslog-tls", target=f"127.0.0.1:{rsyslog.port}",
                              actor=Actor.cli(), ca_file=str(other_ca))
        with pytest.raises(ForwardError, match=r"certificate .* does not verify"):
            deliver(db, wrong.id, appliance_id="a")
        good = add_forwarder(db, name="siem-tls", kind="syslog-tls", target=f"127.0.0.1:{rsyslog.port}",
                             actor=Actor.cli(), ca_file=str(ca))
        sent = drain(db, good.id)
        received = rsyslog.wait_for(head(db) - 0)
    finally:
        rsyslog.stop()
    assert sent >= 7 and {e["seq"] for e in received} >= set(range(1, sent + 1))
    assert [f.cursor_seq for f in list_forwarders(db) if f.name == "wrong-ca"] == [0]


def test_a_webhook_gets_hmac_signed_batches_and_a_failure_moves_no_cursor(db: Database, tmp_path: Path) -> None:
    secret = tmp_path / "hmac.key"
    secret.write_text("s3cret-hmac-key\n")
    secret.chmod(0o600)
    collector = HttpCollector()
    try:
        events(db, 12)
        hook = add_forwarder(db, name="hook", kind="webhook", target=f"http://127.0.0.1:{collector.port}/audit",
                             actor=Actor.cli(), secret_file=str(secret))
        collector.fail = True
        for _ in range(3):
            with pytest.raises(ForwardError, match="HTTP 503"):
                deliver(db, hook.id, appliance_id="test-appliance")
        assert list_forwarders(db)[0].cursor_seq == 0
        collector.fail = False
        drain(db, hook.id)
    finally:
        collector.close()
    seen: list[int] = []
    for headers, body in collector.received:
        expected = hmac.new(b"s3cret-hmac-key", headers["x-cortex-timestamp"].encode() + b"." + body,
                            hashlib.sha256).hexdigest()
        assert headers["x-cortex-signature"] == f"sha256={expected}"
        payload = json.loads(body)
        assert payload["appliance"] == "test-appliance"
        seen += [e["seq"] for e in payload["events"]]
    assert seen == list(range(1, len(seen) + 1)) and seen[-1] >= 12
    # Failing and recovering are recorded once each, however many retries there were.
    assert actions(db, "audit:forwarder:f") == ["audit:forwarder:failing"]
    assert actions(db, "audit:forwarder:r") == ["audit:forwarder:recovered"]


def test_splunk_hec_gets_its_token_and_event_json(db: Database, tmp_path: Path) -> None:
    token = tmp_path / "hec.token"
    token.write_text("0c5f1e7a-hec-token")
    collector = HttpCollector()
    try:
        events(db, 3)
        hec = add_forwarder(db, name="splunk", kind="splunk-hec",
                            target=f"http://127.0.0.1:{collector.port}/services/collector/event", actor=Actor.cli(),
                            secret_file=str(token))
        assert drain(db, hec.id) >= 3
    finally:
        collector.close()
    headers, body = collector.received[0]
    assert headers["authorization"] == "Splunk 0c5f1e7a-hec-token"
    lines = [json.loads(line) for line in body.splitlines()]
    assert lines[0]["sourcetype"] == "cortex:audit" and lines[0]["event"]["seq"] == 1
    assert all(isinstance(line["time"], float) and len(line["event"]["hash"]) == 64 for line in lines)


def test_a_target_that_refuses_connections_is_retried_and_nothing_is_lost(db: Database) -> None:
    events(db, 4)
    port = free_port()  # nothing listens there
    dead = add_forwarder(db, name="down", kind="syslog-tcp", target=f"127.0.0.1:{port}", actor=Actor.cli())
    for _ in range(3):
        with pytest.raises(ForwardError, match="refused"):
            deliver(db, dead.id, appliance_id="a")
    forwarder = list_forwarders(db)[0]
    assert forwarder.cursor_seq == 0 and forwarder.failing and "refused" in (forwarder.last_error or "")
    assert actions(db, "audit:forwarder:failing") == ["audit:forwarder:failing"]


def test_bad_forwarder_settings_are_refused(db: Database, tmp_path: Path) -> None:
    from appliance.errors import ValidationError

    with pytest.raises(ValidationError, match="host:port"):
        add_forwarder(db, name="x", kind="syslog-tcp", target="no-port", actor=Actor.cli())
    with pytest.raises(ValidationError, match="URL"):
        add_forwarder(db, name="x", kind="webhook", target="ftp://h/x", actor=Actor.cli(), secret_file=__file__)
    with pytest.raises(ValidationError, match="secret-file"):
        add_forwarder(db, name="x", kind="splunk-hec", target="https://h/x", actor=Actor.cli())
