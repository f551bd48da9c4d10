"""The audit trail: one writer, the same transaction as the change, append-only."""

from __future__ import annotations

import json

import pytest

from appliance.audit import Actor, AuditTag, record_event
from appliance.errors import StoreError
from appliance.store import Database


@pytest.fixture
def head(db: Database) -> int:
    """The trail's last seq before the test (the seeded data directory already holds events)."""
    with db.read() as tx:
        return int(tx.scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_events"))


def _events(db: Database, since: int) -> list[dict[str, object]]:
    with db.read() as tx:
        return tx.query("SELECT * FROM audit_events WHERE seq > ? ORDER BY seq", (since,))


def test_event_and_change_commit_together_or_not_at_all(db: Database, head: int) -> None:
    with pytest.raises(RuntimeError), db.write() as tx:
        tx.insert("submissions", {"diff": b"x", "sha256": "0", "size": 1, "created_at": "t"})
        record_event(tx, AuditTag.REVIEW_REVIEW_CREATED, Actor.system(), target="review:1")
        raise RuntimeError("the business write fails after the audit append")
    assert _events(db, head) == []
    with db.write() as tx:
        tx.insert("submissions", {"diff": b"x", "sha256": "0", "size": 1, "created_at": "t"})
        seq = record_event(tx, AuditTag.REVIEW_REVIEW_CREATED, Actor.system(), target="review:1")
    assert [e["seq"] for e in _events(db, head)] == [seq]


def test_sequence_numbers_have_no_gaps(db: Database) -> None:
    with db.read() as tx:
        start = tx.scalar("SELECT MAX(seq) FROM audit_events") or 0
    for i in range(5):
        with pytest.raises(RuntimeError) if i % 2 else _nullcontext(), db.write() as tx:
            record_event(tx, AuditTag.SYSTEM_SERVICE_STARTED, Actor.system())
            if i % 2:
                raise RuntimeError("rolled back")
    with db.read() as tx:
        seqs = [r[0] for r in tx.rows("SELECT seq FROM audit_events WHERE seq > ? ORDER BY seq", (start,))]
    assert seqs == list(range(start + 1, start + 4))


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_events_cannot_be_updated_or_deleted(db: Database) -> None:
    with db.write() as tx:
        record_event(tx, AuditTag.SYSTEM_SERVICE_STARTED, Actor.system())
    with pytest.raises(StoreError, match="append-only"), db.write() as tx:
        tx.execute("UPDATE audit_events SET outcome = 'failure'")
    with pytest.raises(StoreError, match="append-only"), db.write() as tx:
        tx.execute("DELETE FROM audit_events")


def test_details_are_canonical_and_user_text_cannot_forge_a_record(db: Database, head: int) -> None:
    hostile = 'evil"\n{"action":"auth:session:created"}\x1b[31m'
    with db.write() as tx:
        record_event(tx, AuditTag.AUTH_SESSION_FAILED, Actor(kind="anonymous", name=hostile, address="127.0.0.1"),
                     target=f"user:{hostile}", outcome="failure", details={"b": 1, "a": hostile})
    event = _events(db, head)[-1]
    assert event["actor_name"] == hostile
    assert event["details"] == json.dumps({"a": hostile, "b": 1}, sort_keys=True, separators=(",", ":"),
                                          ensure_ascii=False)
    assert json.loads(str(event["details"]))["a"] == hostile


def test_secrets_are_never_recorded(db: Database) -> None:
    with pytest.raises(ValueError, match="secrets"), db.write() as tx:
        record_event(tx, AuditTag.AUTH_TOKEN_CREATED, Actor.system(), details={"token": "cca_abc"})


def test_a_read_transaction_cannot_record(db: Database) -> None:
    with pytest.raises(ValueError, match="write transaction"), db.read() as tx:
        record_event(tx, AuditTag.SYSTEM_SERVICE_STARTED, Actor.system())
