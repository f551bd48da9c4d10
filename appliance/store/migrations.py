"""Numbered schema migrations, each applied in its own write transaction and recorded in the database.

Files are ``migrations/NNNN_name.sql``. A migration's checksum is recorded with it: an applied migration
whose file later changed is an error, not a silent drift. A database migrated by a newer appliance is
refused rather than half-understood.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance import clock
from appliance.errors import StoreError
from appliance.store.database import Database, Transaction

__all__ = ["Migration", "applied_migrations", "available_migrations", "migrate"]

_DIR = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    found = []
    for path in sorted(_DIR.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise StoreError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise StoreError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return found


def applied_migrations(db: Database) -> list[dict[str, object]]:
    with db.write() as tx:
        tx.script(_LEDGER)
    with db.read() as tx:
        return tx.query("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")


def migrate(db: Database, *, on_applied: Callable[[Transaction, Migration], None] | None = None) -> list[Migration]:
    """Apply every migration not yet recorded; return those applied now.

    Args:
        db: the database.
        on_applied: called inside each migration's transaction, after its SQL ran (the caller records
            its audit event there, so the schema change and its record commit together).
    """
    migrations = available_migrations()
    known = {m.version: m for m in migrations}
    done: list[Migration] = []
    with db.write() as tx:
        tx.script(_LEDGER)
    for migration in migrations:
        with db.write() as tx:
            rows = tx.query("SELECT version, checksum FROM schema_migrations ORDER BY version")
            recorded = {int(r["version"]): r["checksum"] for r in rows}
            newest = max(recorded, default=0)
            if newest > len(migrations):
                raise StoreError(
                    f"the database at {db.path} has schema version {newest}, newer than this appliance "
                    f"understands ({len(migrations)}); run the matching appliance version or restore a backup")
            for version, checksum in recorded.items():
                if version in known and known[version].checksum != checksum:
                    raise StoreError(
                        f"migration {version:04d}_{known[version].name} changed after it was applied to "
                        f"{db.path}; migrations are append-only, add a new one instead")
            if migration.version in recorded:
                continue
            tx.script(migration.sql)
            tx.insert("schema_migrations", {
                "version": migration.version, "name": migration.name,
                "checksum": migration.checksum, "applied_at": clock.now_iso(),
            })
            if on_applied is not None:
                on_applied(tx, migration)
            done.append(migration)
    return done
