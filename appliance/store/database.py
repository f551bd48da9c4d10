"""SQLite through apsw: connections, pragmas, the single writer and read snapshots.

Every write runs in ``BEGIN IMMEDIATE`` under a process-wide lock, so writers in this process queue on
the lock instead of spinning on SQLITE_BUSY, and writers in other processes (the CLI beside a running
server) wait on ``busy_timeout``. Reads use one connection per thread inside a deferred transaction, so
each read sees one consistent snapshot. ``synchronous=FULL`` in WAL mode: a committed write survives a
power cut.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import apsw

from appliance.errors import StoreError

__all__ = ["Database", "IntegrityError", "Transaction"]

Params = Sequence[Any] | dict[str, Any]


class IntegrityError(StoreError):
    """A constraint refused the write (unique key, foreign key, check, or an append-only trigger)."""

    status_code = 409
    code = "conflict"


def _translate(exc: apsw.Error) -> StoreError:
    if isinstance(exc, apsw.ConstraintError):
        return IntegrityError(f"the database refused the change: {exc}")
    if isinstance(exc, apsw.FullError):
        return StoreError("the disk holding the database is full; nothing was written. Free space and retry.")
    if isinstance(exc, apsw.BusyError):
        return StoreError("the database stayed locked by another writer for too long; nothing was written. Retry.")
    if isinstance(exc, apsw.ReadOnlyError):
        return StoreError("the database is read-only for this process; check the data directory's owner and mode")
    if isinstance(exc, apsw.CantOpenError):
        return StoreError(f"cannot open the database file: {exc}")
    if isinstance(exc, apsw.IOError):
        return StoreError(f"disk I/O error while writing the database; nothing was committed ({exc})")
    return StoreError(f"database error: {exc}")


class Transaction:
    """The handle domain code writes and reads through. Rows come back as dicts."""

    __slots__ = ("_conn", "writable")

    def __init__(self, conn: apsw.Connection, *, writable: bool) -> None:
        self._conn = conn
        self.writable = writable

    @property
    def connection_token(self) -> object:
        """An object standing for the underlying connection (weak-referenceable), for per-connection caches."""
        return self._conn

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        self._conn.execute(sql, params)
        return self._conn.changes()

    def executemany(self, sql: str, seq: Sequence[Params]) -> None:
        self._conn.executemany(sql, seq)

    def script(self, sql: str) -> None:
        """Run several statements (migrations)."""
        self._conn.execute(sql)

    def query(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        names: list[str] = []

        def as_dict(cursor: apsw.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
            # The description is only readable while the statement runs, so take it with the first row.
            if not names:
                names.extend(d[0] for d in cursor.get_description())
            return dict(zip(names, row, strict=True))

        cursor = self._conn.cursor()
        cursor.row_trace = as_dict
        rows: list[dict[str, Any]] = cursor.execute(sql, params).fetchall()  # type: ignore[assignment]
        return rows

    def rows(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Params = ()) -> dict[str, Any] | None:
        found = self.query(sql, params)
        return found[0] if found else None

    def scalar(self, sql: str, params: Params = ()) -> Any:
        row = self._conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def insert(self, table: str, values: dict[str, Any]) -> int:
        """Insert one row and return its rowid. ``table`` and the keys are code, never user input."""
        columns = ", ".join(f'"{c}"' for c in values)
        marks = ", ".join(f":{c}" for c in values)
        self._conn.execute(f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', values)  # noqa: S608
        return self._conn.last_insert_rowid()


class Database:
    """One SQLite database file and the connections this process holds on it.

    With ``read_only``, the file is one that nothing writes to (a backup's copy, perhaps on read-only
    media): it is opened read-only and immutable, so no lock is taken and no ``-wal`` or ``-shm`` file is
    created beside it, and :meth:`write` refuses.
    """

    def __init__(self, path: Path, *, busy_timeout_ms: int = 15000, read_only: bool = False) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.read_only = read_only
        self._write_lock = threading.RLock()
        self._writer: apsw.Connection | None = None
        self._write_depth = 0
        self._write_owner: int | None = None
        self._local = threading.local()
        self._all_readers: list[apsw.Connection] = []
        self._readers_lock = threading.Lock()
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def _connect(self) -> apsw.Connection:
        if self.read_only:
            return self._connect_read_only()
        try:
            conn = apsw.Connection(str(self.path))
            conn.set_busy_timeout(self.busy_timeout_ms)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            mode = mode[0] if mode else None
            if mode != "wal":
                raise StoreError(f"could not put {self.path} in WAL mode (it reports {mode!r})")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA temp_store=MEMORY")
        except apsw.Error as exc:
            raise _translate(exc) from exc
        return conn

    def _connect_read_only(self) -> apsw.Connection:
        if not self.path.is_file():
            raise StoreError(f"cannot open the database file {self.path}: it does not exist")
        # RFC 8089 file URI; immutable=1: SQLite takes no lock and never looks for a -wal or hot journal.
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro&immutable=1"
        try:
            conn = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
            conn.execute("PRAGMA query_only=ON")
        except apsw.Error as exc:
            raise _translate(exc) from exc
        return conn

    def _writer_conn(self) -> apsw.Connection:
        if self._writer is None:
            self._writer = self._connect()
        return self._writer

    def _reader_conn(self) -> apsw.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._all_readers.append(conn)
        return conn

    @contextmanager
    def write(self) -> Iterator[Transaction]:
        """A write transaction (``BEGIN IMMEDIATE``); nested calls become savepoints.

        Commits when the block ends, rolls back when it raises. apsw errors surface as
        :class:`StoreError` (or :class:`IntegrityError`) with a message a user can act on.
        """
        if self.read_only:
            raise StoreError(f"the database {self.path} is open read-only; nothing was written")
        with self._write_lock:
            conn = self._writer_conn()
            depth = self._write_depth
            savepoint = f"sp{depth}"
            try:
                conn.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {savepoint}")
            except apsw.Error as exc:
                raise _translate(exc) from exc
            self._write_depth += 1
            self._write_owner = threading.get_ident()
            try:
                yield Transaction(conn, writable=True)
            except BaseException as exc:
                self._write_depth -= 1
                if depth == 0:
                    self._write_owner = None
                with contextlib.suppress(apsw.Error):
                    if depth == 0:
                        conn.execute("ROLLBACK")
                    else:
                        conn.execute(f"ROLLBACK TO {savepoint}; RELEASE {savepoint}")
                if isinstance(exc, apsw.Error):
                    raise _translate(exc) from exc
                raise
            else:
                self._write_depth -= 1
                if depth == 0:
                    self._write_owner = None
                try:
                    conn.execute("COMMIT" if depth == 0 else f"RELEASE {savepoint}")
                except apsw.Error as exc:
                    if depth == 0:
                        with contextlib.suppress(apsw.Error):
                            conn.execute("ROLLBACK")
                    raise _translate(exc) from exc

    @contextmanager
    def read(self) -> Iterator[Transaction]:
        """A read snapshot on this thread's own connection."""
        if self._write_owner == threading.get_ident():
            # Reading inside our own write transaction must see its uncommitted rows.
            yield Transaction(self._writer_conn(), writable=False)
            return
        conn = self._reader_conn()
        try:
            conn.execute("BEGIN")
        except apsw.Error as exc:
            raise _translate(exc) from exc
        try:
            yield Transaction(conn, writable=False)
        except apsw.Error as exc:
            raise _translate(exc) from exc
        finally:
            with contextlib.suppress(apsw.Error):
                conn.execute("COMMIT")

    def pragma(self, name: str) -> Any:
        conn = self._reader_conn()
        row = conn.execute(f"PRAGMA {name}").fetchone()
        return row[0] if row else None

    def integrity_problems(self, limit: int = 20) -> list[str]:
        """What ``PRAGMA integrity_check`` finds (an empty list: the file is sound)."""
        try:
            rows = self._reader_conn().execute(f"PRAGMA integrity_check({int(limit)})").fetchall()
        except apsw.Error as exc:
            return [str(_translate(exc))]
        except StoreError as exc:  # it does not even open as a database
            return [exc.message]
        found = [str(r[0]) for r in rows]
        return [] if found == ["ok"] else found

    def backup_to(self, target: Path, *, while_paused: Callable[[], None] | None = None) -> None:
        """Copy a consistent snapshot of the live database to ``target`` (SQLite online backup).

        The snapshot is pinned in a read transaction of its own connection and copied in one step: writers,
        in this process and others, go on meanwhile (WAL) and never make the copy start over. The copy is one
        self-contained file in rollback-journal mode, with no ``-wal`` beside it.

        Args:
            target: the new file (must not exist).
            while_paused: run while no writer can commit (this process holds the write lock, ``BEGIN
                IMMEDIATE``); the snapshot is taken before writers resume. Files that writers create before
                they commit (audit checkpoints and archives, pack folders) are copied there in step with it.
        """
        source = self._connect()
        try:
            with self.write():
                if while_paused is not None:
                    while_paused()
                source.execute("BEGIN")
                source.execute("SELECT COUNT(*) FROM sqlite_schema").fetchall()  # pins the snapshot
            dest = apsw.Connection(str(target))
            try:
                with dest.backup("main", source, "main") as backup:
                    backup.step(-1)
                dest.execute("PRAGMA journal_mode=DELETE")
            finally:
                dest.close()
            source.execute("COMMIT")
        except apsw.Error as exc:
            raise _translate(exc) from exc
        finally:
            source.close()

    def close(self) -> None:
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        with self._readers_lock:
            for conn in self._all_readers:
                with contextlib.suppress(apsw.Error):
                    conn.close()
            self._all_readers.clear()
        self._local = threading.local()
