"""Faults during an append: the process killed (kill -9) mid-transaction, and the disk full."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.audit import Actor, AuditTag, record_event
from appliance.audit.log import verify_database
from appliance.config import Settings
from appliance.errors import StoreError
from appliance.store import Database

WRITER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from appliance.audit import Actor, AuditTag, record_event
    from appliance.store import Database

    db = Database(Path(sys.argv[1]))
    with db.write() as tx:
        tx.insert("submissions", {"diff": b"business write", "sha256": "0", "size": 14, "created_at": "t"})
        if sys.argv[2] == "before-audit":
            os.kill(os.getpid(), signal.SIGKILL)
        record_event(tx, AuditTag.REVIEW_REVIEW_CREATED, Actor.system(), target="review:1")
        if sys.argv[2] == "after-audit":
            os.kill(os.getpid(), signal.SIGKILL)
""")


def counts(db: Database) -> tuple[int, int]:
    with db.read() as tx:
        return int(tx.scalar("SELECT COUNT(*) FROM submissions")), int(tx.scalar("SELECT MAX(seq) FROM audit_events"))


@pytest.mark.parametrize("stage", ["before-audit", "after-audit"])
def test_kill_9_between_the_business_write_and_the_audit_append_leaves_neither(db: Database, settings: Settings,
                                                                              stage: str) -> None:
    before = counts(db)
    proc = subprocess.run([sys.executable, "-c", WRITER, str(db.path), stage], capture_output=True, timeout=60,
                          check=False)
    assert proc.returncode == -9, proc.stderr
    assert counts(db) == before  # both or neither: here neither
    with db.write() as tx:
        tx.insert("submissions", {"diff": b"x", "sha256": "0", "size": 1, "created_at": "t"})
        seq = record_event(tx, AuditTag.REVIEW_REVIEW_CREATED, Actor.system(), target="review:2")
    assert seq == before[1] + 1  # no seq was used up by the dead transaction
    report = verify_database(db, settings.data_dir)
    assert report.ok, report.summary()


def test_a_full_disk_refuses_the_change_and_writes_nothing_half(db: Database, settings: Settings) -> None:
    # SQLite's max_page_count makes the database file "full" exactly as ENOSPC would (SQLITE_FULL), on a real
    # file, without needing a small filesystem mounted for the test.
    with db.write() as tx:
        for n in range(50):
            record_event(tx, AuditTag.SYSTEM_SERVICE_STARTED, Actor.system(), details={"n": n})
    before = counts(db)
    with db.write() as tx:
        pages = int(tx.scalar("PRAGMA page_count"))
        tx.execute(f"PRAGMA max_page_count = {pages}")
    try:
        with pytest.raises(StoreError, match="disk holding the database is full; nothing was written"), \
                db.write() as tx:
            tx.insert("submissions", {"diff": b"x" * 400_000, "sha256": "0", "size": 400_000, "created_at": "t"})
            record_event(tx, AuditTag.REVIEW_REVIEW_CREATED, Actor.system(), target="review:1")
        with pytest.raises(StoreError, match="full"), db.write() as tx:
            for n in range(5000):  # the audit append itself runs out of room
                record_event(tx, AuditTag.SYSTEM_SERVICE_STARTED, Actor.system(), details={"pad": "y" * 200, "n": n})
        assert counts(db) == before
    finally:
        with db.write() as tx:
            tx.execute("PRAGMA max_page_count = 4294967294")
    with db.write() as tx:
        assert record_event(tx, AuditTag.SYSTEM_SERVICE_STARTED, Actor.system()) == before[1] + 1
    assert verify_database(db, settings.data_dir).ok


def test_the_writer_script_is_real(tmp_path: Path, db: Database) -> None:
    proc = subprocess.run([sys.executable, "-c", WRITER, str(db.path), "commit"], capture_output=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    with db.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM submissions") == 1
