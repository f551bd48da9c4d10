"""Backups of a data directory, file by file: what is state, the copy and its manifest, the checks, the swap.

A backup is a directory ``cortex-backup-<UTC YYYYmmddTHHMMSSZ>`` holding:

- ``appliance.db``: SQLite's online backup of the live database, made while the appliance runs;
- every other file of the data directory that is state (``keys/``, ``audit/checkpoints/``,
  ``audit/archives/``, ``packs/``, and anything else found there), under the same relative paths;
- ``BACKUP.json``: the format, the versions, and every file's length and sha256.

Not state, so never in a backup: ``queue.db`` (the jobs ledger in ``appliance.db`` re-enqueues unfinished
work at start-up), SQLite's ``-wal``/``-shm``/``-journal`` files, ``models/`` (GGUF files come from the
media, sha256-checked at load), ``backups/`` itself, the lock file, and work in progress that start-up
clears (``audit/tmp/``, ``packs/.staging/``, ``packs/.uploads/``).

Consistency while the server writes: the side files are copied once, then again for what changed while
this process holds the write lock, and the database snapshot is pinned before the lock is let go (see
:meth:`Database.backup_to`). The appliance writes those files *before* the transaction that records them
commits, so the copy never holds a checkpoint ahead of its database, nor a database row whose pack folder
is missing.

Putting a backup back is :mod:`appliance.store.restore`. Both modules know files and SQLite only:
recording ``store:backup:*`` audit events and checking the copy's hash chain is :mod:`appliance.backup`'s
job, one layer up, because the store may not import the audit package, which is built on it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from appliance import clock
from appliance.errors import ValidationError
from appliance.store.database import Database
from appliance.store.lock import LOCK_FILE

__all__ = [
    "DATABASE",
    "FORMAT",
    "MANIFEST",
    "BackupError",
    "BackupFile",
    "Manifest",
    "check_backup",
    "chown_like",
    "finish_backup",
    "remove_tree",
    "schema_version",
    "state_files",
    "write_backup",
]

FORMAT = "cortex-backup/1"
MANIFEST = "BACKUP.json"
DATABASE = "appliance.db"
PREFIX = "cortex-backup-"
PRE_RESTORE = "pre-restore-"
STAGING = ".restore-"  # a restore's staging folder inside the data directory
SIDECARS = ("-wal", "-shm", "-journal")
# Top-level entries of a data directory that are never state: kept in place by a restore, or (the queue's
# files) removed by it.
KEPT = frozenset({"backups", "models", LOCK_FILE})
QUEUE = ("queue.db", *(f"queue.db{s}" for s in SIDECARS))
# Work in progress that start-up clears; never state.
TRANSIENT = (PurePosixPath("audit/tmp"), PurePosixPath("packs/.staging"), PurePosixPath("packs/.uploads"))
_NOT_STATE = KEPT | frozenset(QUEUE) | {DATABASE + s for s in SIDECARS}
_CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BackupError(ValidationError):
    """A backup is incomplete, altered or unusable here; the message names the file and what to do."""

    code = "backup_invalid"


@dataclass(frozen=True)
class BackupFile:
    path: str  # relative, POSIX separators
    length: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "length": self.length, "sha256": self.sha256}


@dataclass(frozen=True)
class Manifest:
    """``BACKUP.json``."""

    appliance_version: str
    schema_version: int
    created_at: str
    source_data_dir: str
    files: tuple[BackupFile, ...]
    format: str = FORMAT

    @property
    def total_bytes(self) -> int:
        return sum(f.length for f in self.files)

    def to_json(self) -> bytes:
        body = {"format": self.format, "appliance_version": self.appliance_version,
                "schema_version": self.schema_version, "created_at": self.created_at,
                "source_data_dir": self.source_data_dir, "files": [f.to_dict() for f in self.files]}
        return (json.dumps(body, indent=2) + "\n").encode("utf-8")

    @classmethod
    def parse(cls, data: bytes, origin: Path) -> Manifest:
        """Read ``BACKUP.json``.

        Raises:
            BackupError: it is not JSON, not this format, or a field is missing or of the wrong type.
        """
        damaged = "the manifest was damaged or edited: use another backup"
        try:
            body = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise BackupError(f"{origin} is not UTF-8 text; {damaged}") from exc
        except json.JSONDecodeError as exc:
            raise BackupError(f"{origin} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); "
                              f"{damaged}") from exc
        if not isinstance(body, dict):
            raise BackupError(f"{origin} must hold a JSON object; {damaged}")
        fmt = body.get("format")
        if fmt != FORMAT:
            made_by = body.get("appliance_version")
            raise BackupError(f"{origin} has format {fmt!r}, and this appliance reads {FORMAT!r} only: verify and "
                              "restore it with the appliance version that made it"
                              + (f" ({made_by})" if isinstance(made_by, str) else ""))
        for name, kind in (("appliance_version", str), ("schema_version", int), ("created_at", str),
                           ("source_data_dir", str), ("files", list)):
            value = body.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise BackupError(f"{origin}: field {name!r} is missing or not {kind.__name__}; {damaged}")
        files: list[BackupFile] = []
        seen: set[str] = set()
        for number, entry in enumerate(body["files"], start=1):
            if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                    and isinstance(entry.get("length"), int) and not isinstance(entry.get("length"), bool)
                    and entry["length"] >= 0 and isinstance(entry.get("sha256"), str)
                    and _HEX64.match(entry["sha256"])):
                raise BackupError(f"{origin}: files entry {number} must be {{\"path\", \"length\", \"sha256\"}} with "
                                  f"a length of 0 or more and 64 lowercase hex characters; {damaged}")
            problem = _unsafe(entry["path"])
            if problem:
                raise BackupError(f"{origin}: files entry {number} ({entry['path']!r}) {problem}; {damaged}")
            if entry["path"] in seen:
                raise BackupError(f"{origin}: {entry['path']!r} is listed twice; {damaged}")
            seen.add(entry["path"])
            files.append(BackupFile(entry["path"], entry["length"], entry["sha256"]))
        if DATABASE not in seen:
            raise BackupError(f"{origin} does not list {DATABASE}; {damaged}")
        return cls(body["appliance_version"], body["schema_version"], body["created_at"], body["source_data_dir"],
                   tuple(files))


def _unsafe(path: str) -> str | None:
    """Why a manifest path cannot be a backup's file (None: it can)."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or "\\" in path or str(pure) != path or ".." in pure.parts:
        return "is not a plain relative path"
    if path == MANIFEST or pure.parts[0] in _NOT_STATE or pure.parts[0].startswith(STAGING):
        return "names a file that is never part of a backup"
    return None


# --- what is state -------------------------------------------------------------------------------


def _is_transient(rel: PurePosixPath) -> bool:
    return any(rel == t or t in rel.parents for t in TRANSIENT)


def state_files(data_dir: Path, *, exclude: Iterable[Path] = ()) -> list[str]:
    """The data directory's state files other than ``appliance.db``, as sorted relative POSIX paths.

    Regular files only: symbolic links are not followed (nothing outside the directory is copied).
    """
    root = Path(data_dir)
    skipped = {Path(p).resolve() for p in exclude}
    found: list[str] = []
    if not root.is_dir():
        return found
    for top in sorted(root.iterdir()):
        if top.name in _NOT_STATE or top.name == DATABASE or top.name.startswith(STAGING) or top.resolve() in skipped:
            continue
        if top.is_symlink():
            continue
        if top.is_file():
            found.append(top.name)
            continue
        for folder, dirs, files in os.walk(top):
            here = Path(folder)
            dirs[:] = sorted(d for d in dirs if (here / d).resolve() not in skipped
                             and not _is_transient(PurePosixPath((here / d).relative_to(root).as_posix())))
            for name in sorted(files):
                path = here / name
                if name.endswith(tuple(f".db{s}" for s in SIDECARS)) or not stat.S_ISREG(path.lstat().st_mode):
                    continue
                found.append(path.relative_to(root).as_posix())
    return sorted(found)


# --- copying ------------------------------------------------------------------------------------


def make_parents(root: Path, rel: str) -> Path:
    """``root/rel``'s parent folders, created with mode 0700; returns ``root/rel``."""
    target = root
    for part in PurePosixPath(rel).parts[:-1]:
        target = target / part
        if not target.is_dir():
            target.mkdir(mode=0o700)
            target.chmod(0o700)
    return root / rel


def copy_file(source: Path, target: Path) -> BackupFile | None:
    """Copy one regular file (mode 0600, fsynced), hashing it on the way; None when it vanished."""
    try:
        fd_in = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # it became a symbolic link: not state
            return None
        raise
    digest, length = hashlib.sha256(), 0
    with os.fdopen(fd_in, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            return None
        fd_out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd_out, "wb") as dst:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                dst.write(chunk)
                length += len(chunk)
            dst.flush()
            os.fsync(dst.fileno())
    return BackupFile("", length, digest.hexdigest())


def hash_file(path: Path) -> BackupFile:
    digest, length = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            length += len(chunk)
    return BackupFile("", length, digest.hexdigest())


def _signature(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@dataclass
class _Copier:
    """Copies a data directory's state files into a backup, and again for whatever changed since."""

    data_dir: Path
    target: Path
    exclude: tuple[Path, ...]
    copied: dict[str, tuple[tuple[int, int, int, int] | None, BackupFile]] = field(default_factory=dict)

    def sync(self) -> None:
        wanted = state_files(self.data_dir, exclude=self.exclude)
        for rel in set(self.copied) - set(wanted):
            (self.target / rel).unlink()
            del self.copied[rel]
        for rel in wanted:
            source = self.data_dir / rel
            before = _signature(source)
            known = self.copied.get(rel)
            if known is not None and before is not None and known[0] == before:
                continue
            target = make_parents(self.target, rel)
            if known is not None:
                target.unlink()
                del self.copied[rel]
            made = copy_file(source, target)
            if made is None:
                with contextlib.suppress(FileNotFoundError):
                    target.unlink()
                continue
            self.copied[rel] = (before, BackupFile(rel, made.length, made.sha256))

    def files(self) -> list[BackupFile]:
        return [entry for _, entry in self.copied.values()]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    for folder, _, _ in os.walk(root):
        fsync_dir(Path(folder))


def schema_version(db: Database) -> int:
    """The newest migration recorded in ``db`` (0 when none is)."""
    with db.read() as tx:
        if tx.scalar("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'") is None:
            return 0
        return int(tx.scalar("SELECT MAX(version) FROM schema_migrations") or 0)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clear_leftovers(folder: Path, pattern: re.Pattern[str]) -> None:
    """Remove ``folder``'s work directories whose process is gone (a create or restore cut short)."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        match = pattern.match(entry.name)
        if match and entry.is_dir() and not entry.is_symlink() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def chown_like(path: Path, owner: os.stat_result) -> None:
    """Give ``path`` (and everything under it) ``owner``'s user and group when running as root (the installer
    does): files a root command leaves in the data directory must stay usable by the service account.
    SQLite itself gives a database's -wal and -shm files the database file's owner."""
    if os.geteuid() != 0:
        return
    os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)
    if path.is_dir() and not path.is_symlink():
        for folder, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                os.chown(Path(folder) / name, owner.st_uid, owner.st_gid, follow_symlinks=False)


_PARTIAL = re.compile(r"^\.cortex-backup-\d{8}T\d{6}Z\.partial-(\d+)$")
STAGED = re.compile(r"^\.restore-\d{8}T\d{6}Z-(\d+)$")


def write_backup(db: Database, data_dir: Path, out_dir: Path, *, appliance_version: str) -> tuple[Path, Manifest]:
    """Write a backup of ``data_dir`` into a hidden work directory in ``out_dir``.

    Returns the work directory and its manifest; :func:`finish_backup` gives it its final name once the
    caller has verified it.
    """
    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir).resolve()
    backups = data_dir / "backups"
    if out_dir == data_dir or (data_dir in out_dir.parents and out_dir != backups and backups not in out_dir.parents):
        raise ValidationError(f"--out {out_dir} is inside the data directory {data_dir}, where the next backup would "
                              f"copy it: use {backups} (the default) or a directory outside {data_dir}")
    inside = out_dir == backups or backups in out_dir.parents
    if not out_dir.is_dir():
        out_dir.mkdir(mode=0o700, parents=True)
        if inside:
            chown_like(out_dir, data_dir.stat())
    clear_leftovers(out_dir, _PARTIAL)
    created = clock.now()
    work = out_dir / f".{PREFIX}{created.strftime('%Y%m%dT%H%M%SZ')}.partial-{os.getpid()}"
    work.mkdir(mode=0o700)
    work.chmod(0o700)
    try:
        copier = _Copier(data_dir, work, (out_dir, backups))
        copier.sync()  # the bulk, while writers go on
        db.backup_to(work / DATABASE, while_paused=copier.sync)  # what changed since, in step with the snapshot
        (work / DATABASE).chmod(0o600)
        copy = Database(work / DATABASE, read_only=True)
        try:
            version = schema_version(copy)
        finally:
            copy.close()
        whole = hash_file(work / DATABASE)
        files = sorted([BackupFile(DATABASE, whole.length, whole.sha256), *copier.files()], key=lambda f: f.path)
        manifest = Manifest(appliance_version, version, clock.iso(created), str(data_dir), tuple(files))
        write_private(work / MANIFEST, manifest.to_json())
        if inside:
            chown_like(work, data_dir.stat())
        fsync_tree(work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return work, manifest


def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    path.chmod(0o600)


def unique_name(folder: Path, name: str) -> Path:
    candidate, n = folder / name, 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = folder / f"{name}-{n}"
    return candidate


def finish_backup(work: Path, manifest: Manifest) -> Path:
    """Rename a verified work directory to ``cortex-backup-<stamp>`` (with ``-2``, ``-3``… if taken)."""
    stamp = clock.from_iso(manifest.created_at).strftime("%Y%m%dT%H%M%SZ")
    reason = ""
    for _ in range(100):
        final = unique_name(work.parent, PREFIX + stamp)
        try:
            work.rename(final)
        except OSError as exc:  # a concurrent create took the name first: take the next
            reason = exc.strerror or str(exc)
            continue
        fsync_dir(work.parent)
        return final
    raise BackupError(f"could not give {work} a final name in {work.parent} ({reason}); remove old backups there "
                      "and retry")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --- checks -------------------------------------------------------------------------------------


def _listed_problems(root: Path, manifest: Manifest) -> Iterator[str]:
    fix = "use another backup"
    listed = {f.path for f in manifest.files}
    for entry in manifest.files:
        path = root / entry.path
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            yield (f"{path} is listed in {MANIFEST} but missing: the backup is incomplete (a copy cut short?); "
                   f"copy the whole directory again, or {fix}")
            continue
        if not stat.S_ISREG(mode):
            yield f"{path} is not a regular file (a link or a folder); {fix}"
            continue
        try:
            actual = hash_file(path)
        except OSError as exc:
            yield (f"cannot read {path}: {exc.strerror}; run the command as the account that made the backup "
                   "(or root), or check the media")
            continue
        if actual.length != entry.length:
            yield (f"{path} is {actual.length} bytes but {MANIFEST} lists {entry.length}: the copy is incomplete "
                   f"or damaged; copy the whole directory again, or {fix}")
        elif actual.sha256 != entry.sha256:
            yield (f"{path} changed after the backup was made (sha256 {actual.sha256[:16]}…, {MANIFEST} lists "
                   f"{entry.sha256[:16]}…): the copy is damaged or was altered; {fix}")
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs.sort()
        for name in sorted(files) + sorted(d for d in dirs if (here / d).is_symlink()):
            rel = (here / name).relative_to(root).as_posix()
            if rel != MANIFEST and rel not in listed:
                yield (f"extra file {here / name} is not listed in {MANIFEST}: it was added after the backup was "
                       f"made; remove it if you know what put it there, or {fix}")


def _raise(root: Path, problems: list[str]) -> None:
    if len(problems) == 1:
        raise BackupError(f"backup {root} does not verify: {problems[0]}", details={"problems": problems})
    raise BackupError(f"backup {root} does not verify ({len(problems)} problems):\n  - " + "\n  - ".join(problems),
                      details={"problems": problems})


def check_backup(path: Path) -> Manifest:
    """The file-level and SQLite checks of a backup: its manifest, every listed file's length and sha256, no
    extra file, ``PRAGMA integrity_check`` on the database copy (opened read-only) and its schema version.

    Raises:
        BackupError: the first check that fails, or every file that fails, each named.
    """
    root = Path(path)
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a directory"
        raise BackupError(f"no backup at {root}: it {what}; give the directory that `cortex backup create` printed "
                          f"(it holds {MANIFEST})")
    manifest_path = root / MANIFEST
    try:
        data = manifest_path.read_bytes()
    except FileNotFoundError as exc:
        raise BackupError(f"{manifest_path} is missing: {root} is not a finished Cortex backup (an interrupted "
                          f"`cortex backup create` leaves only a hidden .{PREFIX}….partial-<pid> directory); "
                          "use another backup") from exc
    except OSError as exc:
        raise BackupError(f"cannot read {manifest_path}: {exc.strerror}; check the media and its "
                          "permissions") from exc
    manifest = Manifest.parse(data, manifest_path)
    problems = list(_listed_problems(root, manifest))
    if problems:
        _raise(root, problems)
    copy = Database(root / DATABASE, read_only=True)
    try:
        damage = copy.integrity_problems()
        if damage:
            _raise(root, [f"{root / DATABASE} fails SQLite's integrity check ({'; '.join(damage[:3])}): the file "
                          "was damaged before its checksum was taken; use another backup"])
        actual = schema_version(copy)
    finally:
        copy.close()
    if actual != manifest.schema_version:
        _raise(root, [f"{root / DATABASE} has schema version {actual} but {MANIFEST} says "
                      f"{manifest.schema_version}: the manifest does not describe this database; use another backup"])
    return manifest
