"""Retention per action class with legal hold: archive first, signed marker, the rest still verifies."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from appliance import clock
from appliance.audit import Actor, AuditTag, record_event
from appliance.audit.export import verify_export, verify_export_file
from appliance.audit.keys import key_dir, load_public_key
from appliance.audit.log import get_event, verify_database
from appliance.audit.retention import list_holds, place_hold, purge, release_hold, set_policy
from appliance.config import Settings
from appliance.errors import ConflictError, NotFoundError, StoreError, ValidationError
from appliance.store import Database
from tests.audit.tamper import attacker


def events(db: Database, count: int) -> None:
    with db.write() as tx:
        for n in range(count):
            tag = (AuditTag.REVIEW_REVIEW_VIEWED, AuditTag.AUTH_SESSION_CREATED, AuditTag.REVIEW_REVIEW_CREATED)[n % 3]
            record_event(tx, tag, Actor.system(), target=f"review:{n}", details={"n": n})


def later(days: int) -> object:
    return clock.now() + timedelta(days=days)


def actions(db: Database) -> list[str]:
    with db.read() as tx:
        return [r[0] for r in tx.rows("SELECT action FROM audit_events ORDER BY seq")]


def test_a_purge_archives_removes_and_leaves_a_signed_marker(db: Database, settings: Settings) -> None:
    events(db, 60)
    with db.read() as tx:
        purged_seq = tx.scalar("SELECT MIN(seq) FROM audit_events WHERE action LIKE 'review:%'")
    set_policy(db, "review", 30, actor=Actor.cli())
    assert purge(db, settings.data_dir, actor=Actor.cli(), now=later(1)).events == 0  # nothing old enough
    result = purge(db, settings.data_dir, actor=Actor.cli(), now=later(31))
    assert result.events == 40 and result.ranges >= 20 and result.archive is not None
    remaining = actions(db)
    assert not any(a.startswith("review:") for a in remaining)
    assert remaining[-1] == "audit:retention:purged" and "auth:session:created" in remaining
    report = verify_database(db, settings.data_dir)
    assert report.ok, report.summary()
    assert report.gaps == result.ranges
    with pytest.raises(NotFoundError, match="purged by retention"):
        get_event(db, purged_seq)
    # The archive verifies on its own, with the appliance's published public key.
    public = load_public_key(key_dir(settings.data_dir) / "audit-ed25519.pub")
    archive = verify_export_file(result.archive, key_dir(settings.data_dir) / "audit-ed25519.pub")
    assert archive.ok and archive.events == 40, archive.summary()
    tampered = result.archive.read_bytes().replace(b'"n":4', b'"n":5', 1)
    assert not verify_export(tampered, public=public).ok


def test_a_purge_under_legal_hold_is_refused_and_audited(db: Database, settings: Settings) -> None:
    events(db, 9)
    set_policy(db, "review:review", 10, actor=Actor.cli())
    hold = place_hold(db, "matter 2026-17", actor=Actor.cli(), action_class="review")
    with pytest.raises(ConflictError, match="legal hold"):
        purge(db, settings.data_dir, actor=Actor.cli(), now=later(11))
    assert "audit:retention:refused" in actions(db) and not any(a == "audit:retention:purged" for a in actions(db))
    assert sum(a.startswith("review:") for a in actions(db)) == 6
    release_hold(db, hold, actor=Actor.cli())
    assert list_holds(db, active_only=True) == []
    assert purge(db, settings.data_dir, actor=Actor.cli(), now=later(11)).events == 6
    assert verify_database(db, settings.data_dir).ok


def test_a_hold_on_another_class_does_not_block(db: Database, settings: Settings) -> None:
    events(db, 6)
    set_policy(db, "review", 1, actor=Actor.cli())
    place_hold(db, "auth investigation", actor=Actor.cli(), action_class="auth:session")
    assert purge(db, settings.data_dir, actor=Actor.cli(), now=later(2)).events == 4


def test_deletes_outside_a_purge_are_refused_and_markers_are_kept_for_good(db: Database, settings: Settings) -> None:
    events(db, 6)
    set_policy(db, "review", 1, actor=Actor.cli())
    purge(db, settings.data_dir, actor=Actor.cli(), now=later(2))
    with pytest.raises(StoreError, match="append-only"), db.write() as tx:
        tx.execute("DELETE FROM audit_events WHERE action = 'auth:session:created'")
    with pytest.raises(StoreError, match="append-only"), db.write() as tx:
        tx.execute("INSERT INTO audit_purge_permit (id, up_to_seq) VALUES (1, 1000000)")
        tx.execute("DELETE FROM audit_events WHERE action = 'audit:retention:purged'")
    with pytest.raises(ValidationError, match="kept for good"):
        set_policy(db, "audit:retention", 1, actor=Actor.cli())
    with pytest.raises(ValidationError, match="not an action class"):
        set_policy(db, "nonsense", 1, actor=Actor.cli())


def test_a_gap_nobody_declared_or_a_forged_marker_is_caught(db: Database, settings: Settings) -> None:
    events(db, 30)
    set_policy(db, "review", 1, actor=Actor.cli())
    result = purge(db, settings.data_dir, actor=Actor.cli(), now=later(2))
    con = attacker(db.path)
    # Widen the declared gap to hide an auth event next to it: the marker's digest no longer matches.
    gap = con.one("SELECT first_seq, last_seq FROM audit_gaps ORDER BY first_seq LIMIT 1 OFFSET 2")
    hidden = con.one("SELECT hash FROM audit_events WHERE seq = ?", (gap[1] + 1,))[0]
    con.execute("DELETE FROM audit_events WHERE seq = ?", (gap[1] + 1,))
    con.execute("UPDATE audit_gaps SET last_seq = ?, last_hash = ? WHERE first_seq = ?", (gap[1] + 1, hidden, gap[0]))
    report = verify_database(db, settings.data_dir)
    assert not report.ok and report.problem is not None
    assert report.problem.kind == "deleted" and "marker" in report.problem.message
    assert result.marker_seq is not None


def test_events_a_forwarder_has_not_delivered_are_not_purged(db: Database, settings: Settings, tmp_path: Path) -> None:
    from appliance.audit.forwarders import add_forwarder

    events(db, 3)
    add_forwarder(db, name="siem", kind="syslog-tcp", target="127.0.0.1:9", actor=Actor.cli())
    set_policy(db, "review", 1, actor=Actor.cli())
    assert purge(db, settings.data_dir, actor=Actor.cli(), now=later(2)).events == 0


def test_an_export_across_purged_ranges_still_verifies_on_its_own(db: Database, settings: Settings) -> None:
    import io

    from appliance.audit.service import export_log

    events(db, 45)
    set_policy(db, "review", 1, actor=Actor.cli())
    result = purge(db, settings.data_dir, actor=Actor.cli(), now=later(2))
    events(db, 6)  # after the marker
    assert result.marker_seq is not None
    for first, last in ((1, None), (10, 30), (3, result.marker_seq - 1), (result.marker_seq + 1, None)):
        out = io.BytesIO()
        export_log(db, settings.data_dir, out, actor=Actor.cli(), first=first, last=last)
        report = verify_export(out.getvalue())
        assert report.ok, (first, last, report.summary())
