"""Checkpoints: the key on disk, the cadence (every N events or T minutes) and the checkpoint at shutdown."""

from __future__ import annotations

import pytest

from appliance.audit import Actor, AuditTag, record_event
from appliance.audit.checkpoints import Checkpoint, checkpoint_dir, checkpoint_due, read_checkpoint_file
from appliance.audit.keys import AuditKey, key_dir
from appliance.config import Settings
from appliance.errors import ConfigError
from appliance.store import Database
from appliance.tasks.audit_worker import AuditWorker
from appliance.tasks.services import Services
from tests.support import make_settings


def events(db: Database, count: int) -> None:
    with db.write() as tx:
        for _ in range(count):
            record_event(tx, AuditTag.SYSTEM_SERVICE_STARTED, Actor.system())


def sizes(db: Database) -> list[int]:
    with db.read() as tx:
        return [r[0] for r in tx.rows("SELECT size FROM audit_checkpoints ORDER BY size")]


def test_the_key_is_private_stable_and_its_creation_audited(db: Database, settings: Settings) -> None:
    worker = AuditWorker(settings.replace(audit_checkpoint_events=5), db)
    worker.tick()
    private = key_dir(settings.data_dir) / "audit-ed25519.pem"
    assert private.stat().st_mode & 0o777 == 0o600 and key_dir(settings.data_dir).stat().st_mode & 0o777 == 0o700
    first, again = AuditKey.load(settings.data_dir), AuditKey.load(settings.data_dir)
    assert first.key_id == again.key_id and first.appliance_id == again.appliance_id and not again.created
    with db.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM audit_events WHERE action = 'audit:key:created'") == 1
    private.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        AuditKey.load(settings.data_dir)


def test_a_checkpoint_every_n_events(db: Database, settings: Settings) -> None:
    worker = AuditWorker(settings.replace(audit_checkpoint_events=10, audit_checkpoint_minutes=60), db)
    worker.tick()  # the first checkpoint covers what is there
    first = sizes(db)
    events(db, 9)
    worker.tick()
    assert sizes(db) == first  # 9 new events: not yet
    events(db, 1)
    worker.tick()
    assert len(sizes(db)) == len(first) + 1
    newest = sizes(db)[-1]
    cp = read_checkpoint_file(checkpoint_dir(settings.data_dir) / f"checkpoint-{newest:012d}.txt")
    assert cp.size == newest and cp.verifies_with(AuditKey.load(settings.data_dir).public)
    assert Checkpoint.parse(cp.text()) == Checkpoint.parse(cp.text())


def test_a_checkpoint_every_t_minutes_while_events_arrive(db: Database, settings: Settings) -> None:
    AuditWorker(settings, db).tick()
    assert not checkpoint_due(db, every_events=1000, every_minutes=5)  # nothing new
    events(db, 1)
    assert not checkpoint_due(db, every_events=1000, every_minutes=5)  # one event, a minute has not passed
    assert checkpoint_due(db, every_events=1000, every_minutes=0)


def test_a_clean_stop_signs_its_own_last_event(tmp_path: object) -> None:
    from pathlib import Path

    settings = make_settings(Path(str(tmp_path)) / "data")
    services = Services(settings)
    try:
        services.start(workers=0)
        services.stop()
        with services.db.read() as tx:
            head = tx.one("SELECT seq, action, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            newest = tx.one("SELECT size, head FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
        assert head is not None and newest is not None
        assert head["action"] == "system:service:stopped"
        assert (newest["size"], newest["head"]) == (head["seq"], head["hash"])
    finally:
        services.close()
