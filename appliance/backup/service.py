"""The backup use cases: create, verify and restore, each with its audit record.

Why a package of its own: the file work (what is state, the copy, the manifest, SQLite's online backup and
integrity check, the swap of a restore) is :mod:`appliance.store.backup`, the only place apsw may be used;
but a backup is also checked against the audit hash chain, and creating or restoring one records an
audit event, and the store may not import :mod:`appliance.audit`, which is built on it. So this package
sits one layer above ``audit`` (beside ``jobs`` and ``rbac`` in the import-linter layers) and below every
entry point. Migrations after a restore are the entry point's ``open_database``, passed in, so that they
run, and are audited, exactly as at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.audit import Actor, AuditTag, record_event
from appliance.audit.checkpoints import checkpoint_dir, read_checkpoint_file, stored_checkpoints
from appliance.audit.keys import ID_FILE, KEY_FILE, PUBLIC_FILE, PublicKey, key_dir, load_public_key
from appliance.audit.log import iter_rows, load_gaps
from appliance.audit.verify import VerifyReport, verify_rows
from appliance.config import Settings
from appliance.errors import ApplianceError, ValidationError
from appliance.store import Database, available_migrations
from appliance.store.backup import (
    DATABASE,
    BackupError,
    Manifest,
    check_backup,
    finish_backup,
    remove_tree,
    schema_version,
    write_backup,
)
from appliance.store.lock import DataDirLock
from appliance.store.restore import restore_files, seal_directory

__all__ = ["BackupReport", "RestoreResult", "create_backup", "live_database", "restore_backup", "verify_backup"]

_CHAINED = "SELECT 1 FROM pragma_table_info('audit_events') WHERE name = 'hash'"


@dataclass(frozen=True)
class BackupReport:
    """A backup that verified: its manifest and what its audit log's verification found."""

    path: Path
    manifest: Manifest
    audit: VerifyReport

    def summary(self) -> str:
        m = self.manifest
        return (f"OK: backup {self.path} verifies: {len(m.files)} files, {m.total_bytes} bytes, made "
                f"{m.created_at} by appliance {m.appliance_version} from {m.source_data_dir}, schema version "
                f"{m.schema_version}; SQLite integrity check ok; audit log: {self.audit.events} events verified, "
                f"size {self.audit.size}, {self.audit.checkpoints} checkpoint(s) checked")


@dataclass
class RestoreResult:
    backup: BackupReport
    data_dir: Path
    pre_restore: Path | None = None  # the state it replaced (None: there was none)
    pre_restore_verified: bool = False
    notes: list[str] = field(default_factory=list)
    schema_version: int = 0  # after migrations


def _copy_key(folder: Path) -> tuple[PublicKey | None, str | None]:
    """The copy's own audit public key and appliance id (read, never created)."""
    keys = key_dir(folder)
    public = None
    for name in (KEY_FILE, PUBLIC_FILE):
        if (keys / name).is_file():
            public = load_public_key(keys / name)
            break
    appliance_id = (keys / ID_FILE).read_text(encoding="ascii").strip() if (keys / ID_FILE).is_file() else None
    return public, appliance_id


def _verify_audit(folder: Path) -> VerifyReport:
    """The copy's hash chain against its own checkpoints (rows and files) and key, as ``cortex audit verify``
    checks the live log, but read-only: nothing is created or recorded in the copy."""
    try:
        public, appliance_id = _copy_key(folder)
        files = sorted(checkpoint_dir(folder).glob("checkpoint-*.txt")) if checkpoint_dir(folder).is_dir() else []
        on_disk = [read_checkpoint_file(p) for p in files]
    except ValidationError as exc:
        raise BackupError(f"backup {folder} does not verify: {exc.message}; use another backup") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BackupError(f"backup {folder} does not verify: cannot read its audit key or checkpoints ({exc}); "
                          "use another backup") from exc
    copy = Database(folder / DATABASE, read_only=True)
    try:
        with copy.read() as tx:
            if tx.scalar(_CHAINED) is None:
                report = VerifyReport()
                report.notes.append("the audit log predates the hash chain (schema version below 3), so there is "
                                    "no chain to check; restoring it brings it up to date and seals it")
                return report
            return verify_rows(iter_rows(tx), gaps=load_gaps(tx), checkpoints=[*stored_checkpoints(tx), *on_disk],
                               public=public, appliance_id=appliance_id)
    finally:
        copy.close()


def verify_backup(path: Path) -> BackupReport:
    """Check a backup: ``BACKUP.json``, every file's length and sha256, no extra file, SQLite's integrity
    check and schema version of the database copy, and the copy's audit hash chain and checkpoints.

    Reads only: the backup may sit on read-only media, and no data directory is needed.

    Raises:
        BackupError: what is wrong, which file, and what to do.
    """
    path = Path(path).absolute()
    manifest = check_backup(path)
    audit = _verify_audit(path)
    if not audit.ok:
        raise BackupError(f"backup {path} does not verify: the audit log in {path / DATABASE} fails its hash chain "
                          f"({audit.summary()}): the copy was altered, or made from a log that was; use another "
                          "backup, and run `cortex audit verify` on the appliance")
    return BackupReport(path, manifest, audit)


def live_database(settings: Settings) -> Database:
    """The database to back up, as it is: never created (a wrong data directory is an error, not a new empty
    one) and never migrated (a backup before an upgrade holds the data as the installed release left it).

    Raises:
        ValidationError: there is no database in the data directory.
    """
    if not settings.db_path.is_file():
        raise ValidationError(f"no database at {settings.db_path}: nothing to back up; check --data-dir "
                              "(setting data_dir)")
    return Database(settings.db_path)


def create_backup(db: Database, settings: Settings, *, actor: Actor, out: Path | None = None) -> BackupReport:
    """Back up the data directory into ``out`` (default ``<data_dir>/backups``), verify the copy, give it its
    final name and record ``store:backup:created`` in the live database.

    Runs beside a live server (it holds the data directory's lock shared, as the server does).

    Raises:
        BackupError: the copy just written does not verify (it is removed, so no bad backup is left).
        DataDirBusyError: a restore is running.
    """
    data_dir = settings.data_dir
    out_dir = Path(out) if out is not None else data_dir / "backups"
    with DataDirLock.hold_shared(data_dir, purpose="back up the data directory"):
        work, manifest = write_backup(db, data_dir, out_dir, appliance_version=__version__)
        try:
            report = verify_backup(work)
        except ApplianceError as exc:
            remove_tree(work)
            raise BackupError(f"the backup just written does not verify, so it was removed: {exc.message}. The "
                              "live data is unchanged; if the audit log is the problem, `cortex audit verify` says "
                              "where") from exc
        except BaseException:
            remove_tree(work)
            raise
        final = finish_backup(work, manifest)
        with db.write() as tx:
            record_event(tx, AuditTag.STORE_BACKUP_CREATED, actor, target=f"backup:{final.name}", details={
                "path": str(final), "files": len(manifest.files), "bytes": manifest.total_bytes,
                "schema_version": manifest.schema_version, "created_at": manifest.created_at,
                "database_sha256": next(f.sha256 for f in manifest.files if f.path == DATABASE),
                "audit_size": report.audit.size, "audit_head": report.audit.head})
    return BackupReport(final, manifest, report.audit)


def _seal_pre_restore(result: RestoreResult) -> None:
    """Make the state a restore moved aside a backup of its own, so the restore can be undone with
    ``cortex backup restore``; keep it as raw files, and say why, when it does not verify."""
    pre = result.pre_restore
    if pre is None:
        return
    try:
        seal_directory(pre, source_data_dir=result.data_dir, appliance_version=__version__)
        verify_backup(pre)
        result.pre_restore_verified = True
    except ApplianceError as exc:
        (pre / "BACKUP.json").unlink(missing_ok=True)
        result.notes.append(f"the data that was replaced is kept in {pre} as it was, but it is not a backup that "
                            f"verifies ({exc.message}), so `cortex backup restore` cannot take it back")


def restore_backup(settings: Settings, path: Path, *, actor: Actor,
                   open_database: Callable[[Settings], Database],
                   confirm: Callable[[BackupReport], bool] | None = None) -> RestoreResult:
    """Replace the data directory's state with a backup's.

    In order: hold the data directory's lock alone (refused while ``cortex serve`` runs against it); verify
    the backup (a bad one is refused, nothing changed); refuse a schema newer than this appliance's
    migrations; ask ``confirm``; swap the files (the current state goes to ``backups/pre-restore-<stamp>``);
    run ``open_database`` (migrations, each audited) so an older backup is brought up to date; record
    ``store:backup:restored`` in the restored database, so its chain goes on from the backup's head.

    Raises:
        DataDirBusyError: the appliance is running against the data directory.
        BackupError: the backup does not verify, or is newer than this appliance.
        ValidationError: ``confirm`` said no (nothing was changed).
    """
    data_dir = settings.data_dir
    with DataDirLock.hold_exclusive(data_dir, purpose="restore a backup"):
        report = verify_backup(path)
        known = len(available_migrations())
        if report.manifest.schema_version > known:
            raise BackupError(
                f"backup {report.path} has schema version {report.manifest.schema_version}, newer than this "
                f"appliance ({__version__}) understands ({known}): it was made by appliance "
                f"{report.manifest.appliance_version}; restore it with that version. Nothing was changed")
        if confirm is not None and not confirm(report):
            raise ValidationError("restore cancelled; nothing was changed")
        files = restore_files(report.path, report.manifest, data_dir)
        result = RestoreResult(report, data_dir, pre_restore=files.pre_restore)
        _seal_pre_restore(result)
        db = open_database(settings)
        try:
            result.schema_version = schema_version(db)
            details: dict[str, Any] = {
                "backup": str(report.path), "created_at": report.manifest.created_at,
                "backup_appliance_version": report.manifest.appliance_version,
                "backup_schema_version": report.manifest.schema_version, "schema_version": result.schema_version,
                "source_data_dir": report.manifest.source_data_dir, "files": len(report.manifest.files),
                "pre_restore": str(result.pre_restore) if result.pre_restore else None,
                "pre_restore_verified": result.pre_restore_verified}
            with db.write() as tx:
                record_event(tx, AuditTag.STORE_BACKUP_RESTORED, actor, target=f"backup:{report.path.name}",
                             details=details)
        finally:
            db.close()
    return result
