"""The hash chain and its verification against real database files tampered with plain sqlite3."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import shutil
import threading
from pathlib import Path

import pytest
import rfc8785

from appliance.audit import Actor, AuditTag, record_event
from appliance.audit.chain import COLUMNS, GENESIS, canonical_event, event_hash
from appliance.audit.checkpoints import checkpoint_dir, make_checkpoint, read_checkpoint_file
from appliance.audit.log import verify_database
from appliance.config import Settings
from appliance.store import Database, available_migrations
from appliance.tasks.services import open_database
from tests.audit.tamper import attacker
from tests.support import make_settings

HOSTILE = 'evil"\n{"action":"auth:session:created"}\x1b[31m\\ \u2028 \U0001f600 \x7f'


def fill(db: Database, count: int, *, start: int = 0) -> None:
    with db.write() as tx:
        for n in range(start, start + count):
            record_event(tx, AuditTag.REVIEW_REVIEW_CREATED if n % 3 else AuditTag.AUTH_SESSION_FAILED,
                         Actor(kind="user", name=f"user{n % 7}", id=str(n % 7), address="127.0.0.1",
                               display=f"User {n % 7}"),
                         target=f"review:{n}", outcome="success" if n % 3 else "failure",
                         details={"n": n, "text": HOSTILE if n % 10 == 0 else "plain", "nested": {"b": [1, None]}})


def verify(db: Database, settings: Settings, *extra: Path) -> dict[str, object]:
    return verify_database(db, settings.data_dir,
                           extra=[read_checkpoint_file(p) for p in extra]).to_dict()


def head(db: Database) -> int:
    with db.read() as tx:
        return int(tx.scalar("SELECT MAX(seq) FROM audit_events"))


def test_canonical_event_is_rfc8785(db: Database) -> None:
    with db.write() as tx:
        record_event(tx, AuditTag.AUTH_SESSION_FAILED, Actor(kind="anonymous", name=HOSTILE, address="::1",
                                                              display=HOSTILE + "\ud800"),
                     target=HOSTILE, outcome="failure", details={"z": HOSTILE, "a": [1.5, 2, None, True],
                                                                 "\u00e9": {"y": 1, "x": "\t"}})
    with db.read() as tx:
        row = tx.rows(f"SELECT {', '.join(COLUMNS)}, prev_hash, hash FROM audit_events ORDER BY seq DESC LIMIT 1")[0]  # noqa: S608
    obj = dict(zip(COLUMNS, row[:len(COLUMNS)], strict=True))
    obj["details"] = json.loads(obj["details"])
    assert canonical_event(row[:len(COLUMNS)]) == rfc8785.dumps(obj)
    assert obj["actor_display"].endswith("\\ud800")  # a lone surrogate cannot reach the record as such
    assert row[-1] == event_hash(row[-2], row[:len(COLUMNS)])
    # User text stays data: the record is still one JSON object with the hostile text as one value.
    assert json.loads(canonical_event(row[:len(COLUMNS)]))["target"] == HOSTILE


def test_the_chain_links_every_event_and_verifies(db: Database, settings: Settings) -> None:
    fill(db, 200)
    verify(db, settings)  # creates the audit key, an event of its own
    with db.read() as tx:
        rows = tx.rows("SELECT seq, prev_hash, hash FROM audit_events ORDER BY seq")
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0][1] == GENESIS
    assert all(b[1] == a[2] for a, b in itertools.pairwise(rows))
    report = verify(db, settings)
    assert report["ok"] and report["events"] == len(rows) and report["head"] == rows[-1][2]


def test_an_edited_row_is_found(db: Database, settings: Settings) -> None:
    fill(db, 100)
    con = attacker(db.path)
    con.execute("UPDATE audit_events SET actor_name = 'someone-else' WHERE seq = 40")
    report = verify(db, settings)
    assert not report["ok"]
    assert report["problem"]["seq"] == 40 and report["problem"]["kind"] == "modified"


def test_an_edited_row_with_its_own_hash_recomputed_is_found(db: Database, settings: Settings) -> None:
    fill(db, 100)
    con = attacker(db.path)
    con.execute("UPDATE audit_events SET actor_name = 'mallory' WHERE seq = 41")
    row = con.one(f"SELECT {', '.join(COLUMNS)}, prev_hash FROM audit_events WHERE seq = 41")  # noqa: S608
    con.execute("UPDATE audit_events SET hash = ? WHERE seq = 41", (event_hash(row[-1], row[:-1]),))
    report = verify(db, settings)
    assert report["problem"]["seq"] == 41 and report["problem"]["kind"] == "modified"
    assert "recomputed" in report["problem"]["message"]


def test_a_deleted_row_is_found(db: Database, settings: Settings) -> None:
    fill(db, 100)
    attacker(db.path).execute("DELETE FROM audit_events WHERE seq = 57")
    report = verify(db, settings)
    assert report["problem"]["seq"] == 57 and report["problem"]["kind"] == "deleted"


def test_two_swapped_rows_are_found(db: Database, settings: Settings) -> None:
    fill(db, 100)
    con = attacker(db.path)
    cols = [c for c in (*COLUMNS, "prev_hash", "hash") if c != "seq"]
    a = con.one(f"SELECT {', '.join(cols)} FROM audit_events WHERE seq = 30")  # noqa: S608
    b = con.one(f"SELECT {', '.join(cols)} FROM audit_events WHERE seq = 31")  # noqa: S608
    sets = ", ".join(f"{c} = ?" for c in cols)
    con.execute("UPDATE audit_events SET prev_hash = 'x' || seq WHERE seq IN (30, 31)")
    con.execute(f"UPDATE audit_events SET {sets} WHERE seq = 30", (*b,))  # noqa: S608
    con.execute(f"UPDATE audit_events SET {sets} WHERE seq = 31", (*a,))  # noqa: S608
    report = verify(db, settings)
    assert report["problem"]["seq"] == 30 and report["problem"]["kind"] == "reordered"


def test_an_inserted_row_is_found(db: Database, settings: Settings) -> None:
    fill(db, 60)
    con = attacker(db.path)
    # Make room at seq 20 and forge a well-hashed event there, linked to event 19.
    con.execute("UPDATE audit_events SET seq = -seq WHERE seq >= 20")
    con.execute("UPDATE audit_events SET seq = -seq + 1 WHERE seq <= -20")
    prev = con.one("SELECT hash FROM audit_events WHERE seq = 19")[0]
    forged = ("auth:user:created", "", None, "cli", "cli:mallory", "2026-11-24T12:00:00.000000Z", "{}", "success", 20,
              "local", "user:mallory")
    con.execute(f"INSERT INTO audit_events ({', '.join(COLUMNS)}, prev_hash, hash) VALUES "  # noqa: S608
                f"({', '.join('?' * len(COLUMNS))}, ?, ?)", (*forged, prev, event_hash(prev, forged)))
    report = verify(db, settings)
    assert report["problem"]["seq"] == 20 and report["problem"]["kind"] == "inserted"


def test_the_last_50_rows_deleted_are_caught_only_with_a_checkpoint(db: Database, settings: Settings,
                                                                    tmp_path: Path) -> None:
    fill(db, 150)
    checkpoint = make_checkpoint(db, settings.data_dir)
    assert checkpoint is not None and checkpoint.size == head(db)
    auditor_copy = tmp_path / "kept-off-box.txt"
    shutil.copy(checkpoint_dir(settings.data_dir) / f"checkpoint-{checkpoint.size:012d}.txt", auditor_copy)
    # The attacker cuts the tail and removes every checkpoint on the box.
    con = attacker(db.path)
    con.execute("DELETE FROM audit_events WHERE seq > ?", (checkpoint.size - 50,))
    con.execute("DELETE FROM audit_checkpoints")
    shutil.rmtree(checkpoint_dir(settings.data_dir))
    without = verify(db, settings)
    assert without["ok"] and without["size"] == checkpoint.size - 50  # a plain chain cannot tell
    with_checkpoint = verify(db, settings, auditor_copy)
    assert not with_checkpoint["ok"]
    assert with_checkpoint["problem"]["kind"] == "truncated"
    assert with_checkpoint["problem"]["seq"] == checkpoint.size - 49


def test_a_chain_recomputed_end_to_end_is_caught_by_the_checkpoint(db: Database, settings: Settings,
                                                                   tmp_path: Path) -> None:
    fill(db, 120)
    checkpoint = make_checkpoint(db, settings.data_dir)
    assert checkpoint is not None
    auditor_copy = tmp_path / "cp.txt"
    auditor_copy.write_text(checkpoint.text())
    con = attacker(db.path)
    con.execute("UPDATE audit_events SET actor_name = 'nobody' WHERE seq = 10")
    con.rehash_from(1)
    con.execute("DELETE FROM audit_checkpoints")
    shutil.rmtree(checkpoint_dir(settings.data_dir))
    assert verify(db, settings)["ok"]  # internally consistent
    report = verify(db, settings, auditor_copy)
    assert report["problem"]["kind"] == "recomputed" and report["problem"]["seq"] == checkpoint.size


def test_a_checkpoint_with_a_bad_signature_is_refused(db: Database, settings: Settings, tmp_path: Path) -> None:
    fill(db, 20)
    checkpoint = make_checkpoint(db, settings.data_dir)
    assert checkpoint is not None
    forged = tmp_path / "forged.txt"
    forged.write_text(checkpoint.text().replace(f"size: {checkpoint.size}", f"size: {checkpoint.size - 1}"))
    report = verify(db, settings, forged)
    assert report["problem"]["kind"] == "bad_signature" and report["problem"]["seq"] == checkpoint.size - 1
    garbled = tmp_path / "garbled.txt"
    garbled.write_text("cortex-audit-checkpoint/v1\nsize: 3\n")
    with pytest.raises(Exception, match="not a checkpoint"):
        read_checkpoint_file(garbled)


def test_two_heads_for_one_size_are_reported(db: Database, settings: Settings, tmp_path: Path) -> None:
    fill(db, 30)
    first = make_checkpoint(db, settings.data_dir)
    assert first is not None
    kept = tmp_path / "first.txt"
    kept.write_text(first.text())
    # Someone with the key rewrites history and re-signs the same size with the new head.
    con = attacker(db.path)
    con.execute("UPDATE audit_events SET target = 'review:999' WHERE seq = 5")
    con.rehash_from(1)
    con.execute("DELETE FROM audit_checkpoints")
    shutil.rmtree(checkpoint_dir(settings.data_dir))
    con.close()
    second = make_checkpoint(db, settings.data_dir)
    assert second is not None and second.size == first.size and second.head != first.head
    report = verify(db, settings, kept)
    assert report["problem"]["kind"] == "forked" and report["problem"]["seq"] == first.size


def _append(path: str, count: int) -> None:
    database = Database(Path(path))
    for n in range(count):
        with database.write() as tx:
            record_event(tx, AuditTag.SYSTEM_SERVICE_STARTED, Actor.system(), details={"n": n})
    database.close()


def test_concurrent_writers_in_threads_and_processes_never_fork_the_chain(db: Database, settings: Settings) -> None:
    before = head(db)
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_append, args=(str(db.path), 100)) for _ in range(2)]
    threads = [threading.Thread(target=fill, args=(db, 1), kwargs={"start": n}) for n in range(100)]
    for proc in procs:
        proc.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    with db.read() as tx:
        seqs = [r[0] for r in tx.rows("SELECT seq FROM audit_events ORDER BY seq")]
        prevs = tx.rows("SELECT COUNT(DISTINCT prev_hash), COUNT(*) FROM audit_events")[0]
    assert seqs == list(range(1, before + 301))
    assert prevs[0] == prevs[1]
    assert verify(db, settings)["ok"]


def test_events_written_before_the_chain_are_sealed_by_the_migration(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "core-release")  # a database from before any pack was imported
    settings.data_dir.mkdir(parents=True)
    old = Database(settings.db_path)
    first = available_migrations()[0]
    with old.write() as tx:
        tx.script("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                  "checksum TEXT NOT NULL, applied_at TEXT NOT NULL)")
        tx.script(first.sql)
        tx.insert("schema_migrations", {"version": 1, "name": first.name, "checksum": first.checksum,
                                        "applied_at": "2026-11-01T00:00:00.000000Z"})
        for n in range(5):  # the core release's recorder: json.dumps details, no hashes
            tx.insert("audit_events", {"at": f"2026-11-0{n + 1}T00:00:00.000000Z", "actor_name": "appliance",
                                       "actor_kind": "system", "action": "system:service:started", "outcome": "success",
                                       "details": json.dumps({"workers": n, "seconds": 0.1 * n}, sort_keys=True)})
    old.close()
    db = open_database(settings)
    try:
        with db.read() as tx:
            rows = tx.query("SELECT seq, prev_hash, hash, details FROM audit_events ORDER BY seq")
        assert all(r["hash"] for r in rows) and rows[0]["prev_hash"] == GENESIS
        names = [json.loads(r["details"]).get("name") for r in rows[5:]]
        assert "audit_chain" in names  # the chain migration's own event follows the sealed ones
        assert verify(db, settings)["ok"]
        with pytest.raises(Exception, match="append-only"), db.write() as tx:
            tx.execute("UPDATE audit_events SET hash = 'x' WHERE seq = 1")
    finally:
        db.close()


@pytest.mark.parametrize("details", [
    {"b": 1, "a": HOSTILE, "c": [None, True, False, {"z": "y"}]},
    {"seconds": 0.1, "tiny": 1e-7, "big": 1e21, "neg": -0.0},
    {"\u00e9": 1, "\U0001f600": 2, "\ue000": 3, "a": {"\u00e9": "x"}},
    {"n": 2**53 - 1, "m": -(2**53 - 1)},
])
def test_stored_details_are_rfc8785(details: dict[str, object]) -> None:
    from appliance.audit.chain import canonical_details

    assert canonical_details(details) == rfc8785.dumps(details).decode()


def test_details_json_cannot_carry_exactly_are_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="canonically"), db.write() as tx:
        record_event(tx, AuditTag.SYSTEM_SERVICE_STARTED, Actor.system(), details={"n": 2**60})
