"""Backups against real data directories: what a backup holds, every way a copy can be damaged, a backup
taken while writers go on, and restores (a bad backup, a newer one, a running server, an older schema)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from appliance.audit import Actor, AuditTag, record_event
from appliance.audit.checkpoints import load_key, make_checkpoint
from appliance.audit.log import verify_database
from appliance.auth import create_token, create_user, find_user, list_users, revoke_token
from appliance.backup import BackupError, RestoreResult, create_backup, restore_backup, verify_backup
from appliance.config import Settings
from appliance.errors import ValidationError
from appliance.store import Database, applied_migrations, available_migrations
from appliance.store.backup import FORMAT, finish_backup, write_backup
from appliance.store.lock import DataDirBusyError, DataDirLock
from appliance.tasks.services import open_database
from tests.audit.tamper import attacker
from tests.support import make_settings


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its sha256 (symbolic links as their target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[path.relative_to(root).as_posix()] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def reseal(backup: Path) -> None:
    """Rewrite BACKUP.json's lengths and hashes from the files: an attacker who also fixes the manifest."""
    manifest = json.loads((backup / "BACKUP.json").read_text())
    for entry in manifest["files"]:
        data = (backup / entry["path"]).read_bytes()
        entry["length"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (backup / "BACKUP.json").write_text(json.dumps(manifest))


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def lived_in(settings: Settings, db: Database) -> Settings:
    """A data directory as a running appliance leaves it: accounts, a signed checkpoint, a queue, a model,
    work in progress."""
    admin = create_user(db, username="ada", role="admin", actor=Actor.system(), password=None)
    create_token(db, admin, name="ci", actor=Actor.system())
    load_key(db, settings.data_dir)
    make_checkpoint(db, settings.data_dir)
    (settings.data_dir / "queue.db").write_bytes(b"queue")
    (settings.data_dir / "queue.db-wal").write_bytes(b"queue wal")
    (settings.data_dir / "models").mkdir()
    (settings.data_dir / "models" / "site.gguf").write_bytes(b"GGUF weights")
    for transient in ("audit/tmp/export-1.jsonl", "packs/.staging/half/pack.toml"):
        path = settings.data_dir / transient
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("in progress")
    return settings


def test_a_backup_holds_the_state_and_nothing_else_and_verifies(lived_in: Settings, db: Database) -> None:
    report = create_backup(db, lived_in, actor=Actor.cli())
    backup = report.path
    assert backup.parent == lived_in.data_dir / "backups"
    assert backup.name.startswith("cortex-backup-") and backup.name.endswith("Z")
    assert not [p for p in backup.parent.iterdir() if p.name.startswith(".")]  # no work directory left
    manifest = json.loads((backup / "BACKUP.json").read_text())
    assert manifest["format"] == FORMAT == "cortex-backup/1"
    assert manifest["schema_version"] == len(available_migrations())
    assert manifest["source_data_dir"] == str(lived_in.data_dir)
    assert manifest["appliance_version"] and manifest["created_at"].endswith("Z")
    paths = [f["path"] for f in manifest["files"]]
    assert paths == sorted(paths) and set(paths) == set(tree(backup)) - {"BACKUP.json"}
    assert {"appliance.db", "keys/audit-ed25519.pem", "keys/appliance-id"} <= set(paths)
    assert any(p.startswith("audit/checkpoints/checkpoint-") for p in paths)
    assert any(p.startswith("packs/secure-coding-core/") for p in paths)
    for left_out in ("queue.db", "queue.db-wal", "appliance.db-wal", "appliance.db-shm", "models/site.gguf",
                     "audit/tmp/export-1.jsonl", "packs/.staging/half/pack.toml", "appliance.lock"):
        assert left_out not in paths
    assert not any(p.startswith("backups/") for p in paths)
    for entry in manifest["files"]:
        data = (backup / entry["path"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["length"], entry["sha256"])
    # Private: the directory 0700, every folder 0700 and every file 0600.
    for path in [backup, *backup.rglob("*")]:
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path
    # The copy is one self-contained file: rollback-journal mode, no -wal beside it.
    assert (backup / "appliance.db").read_bytes()[18:20] == b"\x01\x01"
    checked = verify_backup(backup)
    assert checked.audit.ok and checked.audit.checkpoints >= 1 and checked.manifest.files
    with db.read() as tx:
        event = tx.one("SELECT * FROM audit_events ORDER BY seq DESC LIMIT 1")
    assert event is not None and event["action"] == "store:backup:created"
    details = json.loads(event["details"])
    assert details["path"] == str(backup) and details["files"] == len(paths)
    assert event["target"] == f"backup:{backup.name}" and event["actor_kind"] == "cli"


def test_a_taken_name_gets_a_suffix_and_leftovers_of_a_dead_create_are_cleared(settings: Settings,
                                                                               db: Database) -> None:
    out = settings.data_dir / "backups"
    out.mkdir()
    leftover = out / f".cortex-backup-20200101T000000Z.partial-{dead_pid()}"
    leftover.mkdir()
    work, manifest = write_backup(db, settings.data_dir, out, appliance_version="test")
    assert not leftover.exists()
    stamp = manifest.created_at[:19].replace("-", "").replace(":", "") + "Z"
    (out / f"cortex-backup-{stamp}").mkdir()
    assert finish_backup(work, manifest) == out / f"cortex-backup-{stamp}-2"


def test_out_inside_the_data_directory_is_refused(settings: Settings, db: Database) -> None:
    with pytest.raises(ValidationError, match="inside the data directory"):
        create_backup(db, settings, actor=Actor.cli(), out=settings.data_dir / "keys")


def _corrupt_db_byte(backup: Path) -> str:
    path = backup / "appliance.db"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return f"{path} changed after the backup was made"


def _missing_file(backup: Path) -> str:
    path = backup / "keys" / "appliance-id"
    path.unlink()
    return f"{path} is listed in BACKUP.json but missing"


def _extra_file(backup: Path) -> str:
    path = backup / "keys" / "planted.pem"
    path.write_text("not mine")
    return f"extra file {path} is not listed in BACKUP.json"


def _truncated_file(backup: Path) -> str:
    path = backup / "keys" / "audit-ed25519.pub"
    path.write_bytes(path.read_bytes()[:10])
    return f"{path} is 10 bytes but BACKUP.json lists"


def _corrupt_manifest(backup: Path) -> str:
    path = backup / "BACKUP.json"
    path.write_text(path.read_text()[:-40])
    return f"{path} is not valid JSON (line"


def _missing_manifest(backup: Path) -> str:
    (backup / "BACKUP.json").unlink()
    return f"{backup / 'BACKUP.json'} is missing: {backup} is not a finished Cortex backup"


def _manifest_escaping_the_backup(backup: Path) -> str:
    manifest = json.loads((backup / "BACKUP.json").read_text())
    manifest["files"][1]["path"] = "../../etc/passwd"
    (backup / "BACKUP.json").write_text(json.dumps(manifest))
    return "('../../etc/passwd') is not a plain relative path"


def _unknown_format(backup: Path) -> str:
    manifest = json.loads((backup / "BACKUP.json").read_text())
    manifest["format"] = "cortex-backup/9"
    (backup / "BACKUP.json").write_text(json.dumps(manifest))
    return "has format 'cortex-backup/9', and this appliance reads 'cortex-backup/1' only"


def _damaged_database_with_a_fixed_manifest(backup: Path) -> str:
    path = backup / "appliance.db"
    data = bytearray(path.read_bytes())
    page = 4096
    data[3 * page:4 * page] = b"\xa5" * page  # a b-tree page turned to noise
    path.write_bytes(bytes(data))
    reseal(backup)
    return f"{path} fails SQLite's integrity check"


def _rewritten_audit_event_with_a_fixed_manifest(backup: Path) -> str:
    con = attacker(backup / "appliance.db")
    con.execute("UPDATE audit_events SET target = 'user:mallory' WHERE seq = 2")
    con.con.close()
    reseal(backup)
    return f"the audit log in {backup / 'appliance.db'} fails its hash chain (FAILED at seq 2: modified"


@pytest.mark.parametrize("damage", [
    _corrupt_db_byte, _missing_file, _extra_file, _truncated_file, _corrupt_manifest, _missing_manifest,
    _manifest_escaping_the_backup, _unknown_format, _damaged_database_with_a_fixed_manifest,
    _rewritten_audit_event_with_a_fixed_manifest,
])
def test_verify_names_what_is_wrong(lived_in: Settings, db: Database, damage: object) -> None:
    backup = create_backup(db, lived_in, actor=Actor.cli()).path
    expected = damage(backup)  # type: ignore[operator]
    with pytest.raises(BackupError) as caught:
        verify_backup(backup)
    assert expected in caught.value.message, caught.value.message


def test_verify_lists_every_damaged_file(lived_in: Settings, db: Database) -> None:
    backup = create_backup(db, lived_in, actor=Actor.cli()).path
    problems = [_corrupt_db_byte(backup), _missing_file(backup), _extra_file(backup)]
    with pytest.raises(BackupError) as caught:
        verify_backup(backup)
    assert caught.value.message.startswith(f"backup {backup} does not verify (3 problems):\n  - ")
    for problem in problems:
        assert problem in caught.value.message


def test_verify_reads_only(lived_in: Settings, db: Database) -> None:
    backup = create_backup(db, lived_in, actor=Actor.cli()).path
    before = tree(backup)
    modes = {p: p.stat().st_mode for p in backup.rglob("*")}
    for path in [backup, *backup.rglob("*")]:
        path.chmod(0o500 if path.is_dir() else 0o400)  # as on write-protected media
    try:
        verify_backup(backup)
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
        backup.chmod(0o700)
    assert tree(backup) == before


def test_a_backup_taken_while_writers_go_on_is_consistent(lived_in: Settings, db: Database) -> None:
    """Another connection appends audit events and signs a checkpoint every 25 of them while backups run:
    every backup passes SQLite's integrity check and its chain verifies against the checkpoint files it
    holds (a file ahead of the database copy would show as a truncated log)."""
    stop = threading.Event()
    written: list[int] = []
    failures: list[BaseException] = []

    def write() -> None:
        other = Database(lived_in.db_path)
        try:
            while not stop.is_set():
                with other.write() as tx:
                    written.append(record_event(tx, AuditTag.AUTH_SESSION_FAILED, Actor.anonymous("127.0.0.1"),
                                                target="user:nobody", outcome="failure",
                                                details={"reason": "x" * 200}))
                if len(written) % 25 == 0:
                    make_checkpoint(other, lived_in.data_dir)
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            other.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        reports = []
        for _ in range(3):
            before = len(written)
            reports.append(create_backup(db, lived_in, actor=Actor.cli()))
            assert len(written) > before  # the writer was not held off for the whole backup
    finally:
        stop.set()
        writer.join(timeout=60)
    assert not failures, failures
    sizes = []
    for report in reports:
        copy = Database(report.path / "appliance.db", read_only=True)
        assert copy.integrity_problems() == []
        copy.close()
        checked = verify_backup(report.path)
        assert checked.audit.ok and checked.audit.checkpoints >= 1
        sizes.append(checked.audit.size)
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]


def _restore(settings: Settings, backup: Path) -> RestoreResult:
    return restore_backup(settings, backup, actor=Actor.cli(), open_database=open_database)


def test_restore_brings_the_old_state_back_and_keeps_the_replaced_one(lived_in: Settings, db: Database) -> None:
    data = lived_in.data_dir
    token = create_token(db, find_user(db, "ada"), name="deploy", actor=Actor.system())
    backup = create_backup(db, lived_in, actor=Actor.cli()).path
    # Life goes on after the backup.
    create_user(db, username="eve", role="viewer", actor=Actor.system(), password=None)
    revoke_token(db, token.id, actor=Actor.system())
    make_checkpoint(db, data)
    db.close()
    (data / "appliance.db-wal").touch()  # left by a server that was killed
    result = _restore(lived_in, backup)
    restored = Database(lived_in.db_path)
    try:
        assert sorted(u.username for u in list_users(restored)) == ["ada"]
        with restored.read() as tx:
            assert tx.scalar("SELECT revoked_at FROM api_tokens WHERE id = ?", (token.id,)) is None
            last = tx.one("SELECT * FROM audit_events ORDER BY seq DESC LIMIT 1")
        assert last is not None and last["action"] == "store:backup:restored"
        details = json.loads(last["details"])
        assert details["backup"] == str(backup)
        assert details["created_at"] == result.backup.manifest.created_at
        # The chain goes on from the backup's head, and verifies with the restored checkpoints and key.
        assert verify_database(restored, data).ok
    finally:
        restored.close()
    assert not (data / "queue.db").exists() and not (data / "queue.db-wal").exists()
    assert (data / "models" / "site.gguf").read_bytes() == b"GGUF weights"  # not state: left in place
    assert tree(data / "keys") == tree(backup / "keys")
    # The replaced state is a backup of its own: the restore can be undone.
    pre = result.pre_restore
    assert pre is not None and pre.parent == data / "backups" and pre.name.startswith("pre-restore-")
    assert result.pre_restore_verified
    assert not (pre / "appliance.db-wal").exists() and not (pre / "audit" / "tmp").exists()
    old = Database(pre / "appliance.db", read_only=True)
    assert sorted(u.username for u in list_users(old)) == ["ada", "eve"]
    old.close()
    undone = _restore(lived_in, pre)
    again = Database(lived_in.db_path)
    assert sorted(u.username for u in list_users(again)) == ["ada", "eve"]
    assert verify_database(again, data).ok
    again.close()
    assert undone.pre_restore is not None


def test_restore_refuses_a_bad_backup_and_changes_nothing(lived_in: Settings, db: Database) -> None:
    backup = create_backup(db, lived_in, actor=Actor.cli()).path
    _corrupt_db_byte(backup)
    db.close()
    before = tree(lived_in.data_dir)
    with pytest.raises(BackupError, match="changed after the backup was made"):
        _restore(lived_in, backup)
    assert tree(lived_in.data_dir) == before
    assert not list((lived_in.data_dir / "backups").glob("pre-restore-*"))


def test_restore_refuses_a_backup_newer_than_this_appliance(lived_in: Settings, db: Database) -> None:
    backup = create_backup(db, lived_in, actor=Actor.cli()).path
    db.close()
    con = attacker(backup / "appliance.db")
    con.execute("INSERT INTO schema_migrations VALUES (99, 'future', 'x', '2030-01-01T00:00:00Z')")
    con.con.close()
    manifest = json.loads((backup / "BACKUP.json").read_text())
    manifest["schema_version"] = 99
    (backup / "BACKUP.json").write_text(json.dumps(manifest))
    reseal(backup)
    assert verify_backup(backup).manifest.schema_version == 99  # it is a good backup, only too new
    before = tree(lived_in.data_dir)
    with pytest.raises(BackupError, match=r"schema version 99, newer than this appliance \(.*\) understands "
                                          rf"\({len(available_migrations())}\)"):
        _restore(lived_in, backup)
    assert tree(lived_in.data_dir) == before


def test_restore_refuses_while_the_data_directory_is_in_use(lived_in: Settings, db: Database) -> None:
    backup = create_backup(db, lived_in, actor=Actor.cli()).path
    db.close()
    before = tree(lived_in.data_dir)
    with DataDirLock.hold_shared(lived_in.data_dir, purpose="serve"), \
            pytest.raises(DataDirBusyError, match="the appliance is running against"):
        _restore(lived_in, backup)
    assert tree(lived_in.data_dir) == before
    with DataDirLock.hold_exclusive(lived_in.data_dir, purpose="restore"), \
            pytest.raises(DataDirBusyError, match="a restore is replacing the data"):
        DataDirLock.hold_shared(lived_in.data_dir, purpose="start the server")


def test_a_cancelled_restore_changes_nothing(lived_in: Settings, db: Database) -> None:
    backup = create_backup(db, lived_in, actor=Actor.cli()).path
    db.close()
    before = tree(lived_in.data_dir)
    with pytest.raises(ValidationError, match="restore cancelled; nothing was changed"):
        restore_backup(lived_in, backup, actor=Actor.cli(), open_database=open_database, confirm=lambda _: False)
    assert tree(lived_in.data_dir) == before


def test_restore_onto_a_new_host(lived_in: Settings, db: Database, tmp_path: Path) -> None:
    backup = create_backup(db, lived_in, actor=Actor.cli()).path
    moved = shutil.copytree(backup, tmp_path / "usb" / backup.name)
    fresh = make_settings(tmp_path / "new-host" / "data")
    result = _restore(fresh, moved)
    assert result.pre_restore is None
    restored = Database(fresh.db_path)
    assert [u.username for u in list_users(restored)] == ["ada"]
    assert verify_database(restored, fresh.data_dir).ok
    restored.close()


def test_an_older_schema_is_brought_up_to_date_by_the_restore(tmp_path: Path) -> None:
    """A backup from before the hash chain (schema 2): it verifies (with a note), and the restore applies
    the newer migrations, audited, then records itself on the sealed chain."""
    old = make_settings(tmp_path / "old" / "data")
    old_db = Database(old.db_path)
    applied_migrations(old_db)  # the ledger
    for migration in available_migrations()[:2]:
        with old_db.write() as tx:
            tx.script(migration.sql)
            tx.insert("schema_migrations", {"version": migration.version, "name": migration.name,
                                            "checksum": migration.checksum, "applied_at": "2026-01-01T00:00:00Z"})
            record_event(tx, AuditTag.SYSTEM_DATABASE_MIGRATED, Actor.system(), target="database",
                         details={"version": migration.version})
    create_user(old_db, username="grace", role="viewer", actor=Actor.system(), password=None)
    report = create_backup(old_db, old, actor=Actor.cli())
    old_db.close()
    assert report.manifest.schema_version == 2
    assert "predates the hash chain" in verify_backup(report.path).audit.notes[0]
    target = make_settings(tmp_path / "new" / "data")
    result = _restore(target, report.path)
    assert result.schema_version == len(available_migrations()) > 2
    restored = Database(target.db_path)
    try:
        assert [u.username for u in list_users(restored)] == ["grace"]
        with restored.read() as tx:
            actions = [r["action"] for r in tx.query("SELECT action FROM audit_events ORDER BY seq")]
        assert actions[-2:] == ["system:database:migrated", "store:backup:restored"]
        assert verify_database(restored, target.data_dir).ok
    finally:
        restored.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to another account")
def test_as_root_the_files_left_in_the_data_directory_belong_to_its_owner(lived_in: Settings, db: Database) -> None:
    """The installer runs backups and restores as root; the service account must still own its data."""
    nobody = 65534
    data = lived_in.data_dir
    for path in [data, *data.rglob("*")]:
        os.chown(path, nobody, nobody, follow_symlinks=False)
    backup = create_backup(db, lived_in, actor=Actor.cli()).path
    db.close()
    for path in [data / "backups", backup, *backup.rglob("*"), data / "appliance.lock"]:
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody, nobody), path
    result = _restore(lived_in, backup)
    assert result.pre_restore is not None
    for path in [data / "appliance.db", *(data / "keys").rglob("*"), *(data / "packs").rglob("*"),
                 result.pre_restore, result.pre_restore / "BACKUP.json"]:
        assert path.stat().st_uid == nobody, path


def test_a_database_copy_that_is_not_a_database_is_named(lived_in: Settings, db: Database) -> None:
    backup = create_backup(db, lived_in, actor=Actor.cli()).path
    (backup / "appliance.db").write_bytes(b"not SQLite at all" * 100)
    reseal(backup)
    with pytest.raises(BackupError, match=rf"{backup / 'appliance.db'} fails SQLite's integrity check \(.*not a "
                                          "database"):
        verify_backup(backup)
