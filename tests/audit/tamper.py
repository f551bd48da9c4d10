"""What an attacker with write access to appliance.db does: plain SQL on the file, triggers dropped.

The attacker uses apsw, the SQLite library the appliance itself runs on: two different SQLite libraries
in one process would break each other's POSIX locks (SQLite's "multiple copies" problem)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw

from appliance.audit.chain import COLUMNS, GENESIS, event_hash


class Attacker:
    def __init__(self, path: Path) -> None:
        self.con = apsw.Connection(str(path))
        self.con.set_busy_timeout(10_000)
        for trigger in ("audit_events_append_only_update", "audit_events_append_only_delete",
                        "audit_checkpoints_append_only_update", "audit_gaps_append_only_update",
                        "audit_gaps_append_only_delete"):
            self.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        self.execute("DROP INDEX IF EXISTS audit_events_prev_hash")

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return list(self.con.execute(sql, params))

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        return self.execute(sql, params)[0]

    def rehash_from(self, seq: int) -> None:
        """Recompute every hash from ``seq`` to the end: a chain rewritten with fresh hashes."""
        prev = self.execute("SELECT hash FROM audit_events WHERE seq < ? ORDER BY seq DESC LIMIT 1", (seq,))
        prev_hash = prev[0][0] if prev else GENESIS
        rows = self.execute(f"SELECT {', '.join(COLUMNS)} FROM audit_events WHERE seq >= ? ORDER BY seq", (seq,))  # noqa: S608
        for row in rows:
            digest = event_hash(prev_hash, row)
            self.execute("UPDATE audit_events SET prev_hash = ?, hash = ? WHERE seq = ?", (prev_hash, digest, row[8]))
            prev_hash = digest

    def close(self) -> None:
        self.con.close()


def attacker(path: Path) -> Attacker:
    return Attacker(path)
