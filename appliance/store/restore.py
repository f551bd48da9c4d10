"""Putting a verified backup back into a data directory, and sealing the state it replaced as a backup.

The swap is made of renames on one filesystem, so each entry moves whole; the state that was there goes to
``backups/pre-restore-<stamp>`` first, and is then sealed (its database settled, ``BACKUP.json`` written)
so that ``cortex backup restore`` can take it back: a restore can itself be undone. The caller holds the
data directory's lock alone (see :mod:`appliance.store.lock`) and verified the backup; the audit side is
:mod:`appliance.backup`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import apsw

from appliance import clock
from appliance.store.backup import (
    DATABASE,
    KEPT,
    MANIFEST,
    PRE_RESTORE,
    QUEUE,
    SIDECARS,
    STAGED,
    STAGING,
    TRANSIENT,
    BackupError,
    BackupFile,
    Manifest,
    chown_like,
    clear_leftovers,
    copy_file,
    fsync_dir,
    fsync_tree,
    hash_file,
    make_parents,
    schema_version,
    unique_name,
    write_private,
)
from appliance.store.database import Database

__all__ = ["RestoredFiles", "restore_files", "seal_directory", "settle_database"]


def settle_database(path: Path) -> None:
    """Fold a resting database's ``-wal`` into the file and switch it to rollback-journal mode, so that the
    file alone holds every committed transaction (as a backup's copy does)."""
    try:
        conn = apsw.Connection(str(path))
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            conn.execute("PRAGMA journal_mode=DELETE").fetchall()
        finally:
            conn.close()
    except apsw.Error as exc:
        raise BackupError(f"cannot settle the database {path}: {exc}") from exc


def seal_directory(folder: Path, *, source_data_dir: Path, appliance_version: str) -> Manifest:
    """Turn a data directory's state that was moved aside into a backup: settle its database, drop work in
    progress and SQLite's side files, write ``BACKUP.json`` over every file left (modes 0700 and 0600).

    Raises:
        BackupError: it holds no database, or the database cannot be settled.
    """
    folder = Path(folder)
    if not (folder / DATABASE).is_file():
        raise BackupError(f"{folder} holds no {DATABASE}")
    settle_database(folder / DATABASE)
    for transient in TRANSIENT:
        shutil.rmtree(folder / transient, ignore_errors=True)
    for name in (DATABASE + s for s in SIDECARS):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    files: list[BackupFile] = []
    for sub, dirs, names in os.walk(folder):
        here = Path(sub)
        here.chmod(0o700)
        for name in names + [d for d in dirs if (here / d).is_symlink()]:
            path = here / name
            if path.is_symlink() or not path.is_file():
                path.unlink()
                continue
            path.chmod(0o600)
            rel = path.relative_to(folder).as_posix()
            if rel != MANIFEST:
                made = hash_file(path)
                files.append(BackupFile(rel, made.length, made.sha256))
    copy = Database(folder / DATABASE, read_only=True)
    try:
        version = schema_version(copy)
    finally:
        copy.close()
    manifest = Manifest(appliance_version, version, clock.now_iso(), str(source_data_dir),
                        tuple(sorted(files, key=lambda f: f.path)))
    write_private(folder / MANIFEST, manifest.to_json())
    chown_like(folder / MANIFEST, folder.stat())
    fsync_tree(folder)
    return manifest


@dataclass(frozen=True)
class RestoredFiles:
    pre_restore: Path | None  # where the state it replaced went (None: the data directory held none)
    moved_aside: tuple[str, ...]
    placed: tuple[str, ...]


def restore_files(backup: Path, manifest: Manifest, data_dir: Path) -> RestoredFiles:
    """Replace ``data_dir``'s state with a verified backup's files.

    The backup is first copied into a staging folder inside the data directory (each file checked against
    its sha256 once more). Then, by renames on one filesystem: the current state (the database with its
    ``-wal`` and ``-shm``, and every other state entry) goes into ``backups/pre-restore-<stamp>``, the
    queue's files are removed, and the staged entries move in. If a step fails, what was moved is moved
    back. ``models/``, ``backups/`` and the lock file stay where they are.

    Raises:
        BackupError: a file changed since the backup was verified, or ``backups/`` is on another filesystem.
    """
    backup, data_dir = Path(backup), Path(data_dir).resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = data_dir.stat()
    clear_leftovers(data_dir, STAGED)
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    staging = data_dir / f"{STAGING}{stamp}-{os.getpid()}"
    staging.mkdir(mode=0o700)
    try:
        for entry in manifest.files:
            made = copy_file(backup / entry.path, make_parents(staging, entry.path))
            if made is None or (made.length, made.sha256) != (entry.length, entry.sha256):
                raise BackupError(f"{backup / entry.path} changed while it was being restored (after the backup "
                                  "was verified); nothing was changed: check what writes to the backup, then retry")
        chown_like(staging, owner)
        fsync_tree(staging)
        backups = data_dir / "backups"
        if not backups.is_dir():
            backups.mkdir(mode=0o700)
            chown_like(backups, owner)
        if backups.stat().st_dev != owner.st_dev:
            raise BackupError(f"{backups} is on another filesystem than {data_dir}, so the current state cannot be "
                              "moved aside in one step; nothing was changed: make it a folder of the data "
                              "directory's filesystem (or unmount what is mounted there), then retry")
        current = sorted(e.name for e in data_dir.iterdir()
                         if e.name not in KEPT and e.name not in QUEUE and not e.name.startswith(STAGING))
        pre = unique_name(backups, PRE_RESTORE + stamp) if current else None
        moved: list[str] = []
        placed: list[str] = []
        try:
            if pre is not None:
                pre.mkdir(mode=0o700)
                chown_like(pre, owner)
                for name in current:
                    (data_dir / name).rename(pre / name)
                    moved.append(name)
            for name in QUEUE:
                with contextlib.suppress(FileNotFoundError):
                    (data_dir / name).unlink()
            for staged in sorted(staging.iterdir()):
                staged.rename(data_dir / staged.name)
                placed.append(staged.name)
        except BaseException:
            for name in placed:
                with contextlib.suppress(OSError):
                    (data_dir / name).rename(staging / name)
            if pre is not None:
                for name in moved:
                    with contextlib.suppress(OSError):
                        (pre / name).rename(data_dir / name)
            raise
        fsync_dir(data_dir)
        if pre is not None:
            fsync_dir(pre)
            fsync_dir(backups)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RestoredFiles(pre, tuple(moved), tuple(placed))
