"""The store against real database files: pragmas, migrations, the single writer, error translation."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from appliance.errors import StoreError
from appliance.store import Database, IntegrityError, applied_migrations, available_migrations, migrate


def test_pragmas_make_acknowledged_writes_durable(db: Database) -> None:
    assert db.pragma("journal_mode") == "wal"
    assert db.pragma("foreign_keys") == 1
    assert db.pragma("synchronous") == 2  # FULL
    assert db.pragma("busy_timeout") > 0


def test_migrations_are_recorded_once_with_their_checksums(db: Database) -> None:
    recorded = applied_migrations(db)
    assert [r["version"] for r in recorded] == [m.version for m in available_migrations()]
    assert recorded[0]["checksum"] == available_migrations()[0].checksum
    assert migrate(db) == []  # a second run applies nothing
    with db.read() as tx:
        events = tx.query("SELECT details FROM audit_events WHERE action = 'system:database:migrated'")
    assert len(events) == len(available_migrations())


def test_a_migration_changed_after_it_was_applied_is_refused(db: Database) -> None:
    with db.write() as tx:
        tx.execute("UPDATE schema_migrations SET checksum = 'tampered' WHERE version = 1")
    with pytest.raises(StoreError, match="changed after it was applied"):
        migrate(db)


def test_a_database_from_a_newer_appliance_is_refused(db: Database) -> None:
    with db.write() as tx:
        tx.insert("schema_migrations", {"version": 999, "name": "future", "checksum": "x", "applied_at": "now"})
    with pytest.raises(StoreError, match="newer than this appliance"):
        migrate(db)


def test_a_failed_write_leaves_nothing(db: Database) -> None:
    with pytest.raises(RuntimeError), db.write() as tx:
        tx.insert("submissions", {"diff": b"x", "sha256": "0", "size": 1, "created_at": "t"})
        raise RuntimeError("boom")
    with db.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM submissions") == 0


def test_nested_writes_are_savepoints(db: Database) -> None:
    with db.write() as tx:
        tx.insert("submissions", {"diff": b"outer", "sha256": "0", "size": 1, "created_at": "t"})
        with pytest.raises(RuntimeError), db.write() as inner:
            inner.insert("submissions", {"diff": b"inner", "sha256": "0", "size": 1, "created_at": "t"})
            raise RuntimeError("inner fails")
        # The outer transaction sees its own row, and the inner one is gone.
        with db.read() as reader:
            assert [bytes(r["diff"]) for r in reader.query("SELECT diff FROM submissions")] == [b"outer"]
    with db.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM submissions") == 1


def test_constraint_violations_become_integrity_errors(db: Database) -> None:
    with pytest.raises(IntegrityError), db.write() as tx:
        tx.insert("reviews", {"submission_id": 12345, "source": "api", "created_by_name": "x", "created_at": "t"})


def _hammer(path: str, tag: str, count: int) -> None:
    database = Database(Path(path))
    for i in range(count):
        with database.write() as tx:
            tx.insert("submissions", {"diff": f"{tag}-{i}".encode(), "sha256": tag, "size": i, "created_at": "t"})
    database.close()


def test_writers_in_several_processes_all_commit(db: Database) -> None:
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_hammer, args=(str(db.path), f"p{n}", 150)) for n in range(3)]
    for proc in procs:
        proc.start()
    _hammer(str(db.path), "main", 150)
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    with db.read() as tx:
        rows = tx.rows("SELECT sha256, COUNT(*) FROM submissions GROUP BY sha256 ORDER BY sha256")
    assert rows == [("main", 150), ("p0", 150), ("p1", 150), ("p2", 150)]


def test_online_backup_is_a_consistent_copy(db: Database, tmp_path: Path) -> None:
    with db.write() as tx:
        tx.insert("submissions", {"diff": b"keep me", "sha256": "0", "size": 7, "created_at": "t"})
    target = tmp_path / "backup.db"
    db.backup_to(target)
    copy = Database(target)
    with copy.read() as tx:
        assert bytes(tx.scalar("SELECT diff FROM submissions")) == b"keep me"
    copy.close()
