"""Signed checkpoints: every N events or T minutes the appliance signs (size, head hash, time, appliance id).

A checkpoint is a small text file (``<data_dir>/audit/checkpoints/checkpoint-<size>.txt``, and a row of
``audit_checkpoints``)::

    cortex-audit-checkpoint/v1
    appliance: 5b0c…-…
    size: 1000
    head: 3f9a…(64 hex)
    time: 2026-11-24T12:00:00.000000Z
    key: 0d1e2f3a4b5c6d7e
    signature: <base64 Ed25519 signature of the six lines above, each ending in "\\n">

``size`` is the seq of the newest event covered, ``head`` that event's hash. Auditors copy the files off
the box: a chain rewritten later, or a log cut below a checkpoint, no longer matches them. Verify one with
OpenSSL alone (see offline-docs/audit-log.md) or with ``cortex audit verify --checkpoint FILE``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from appliance import clock
from appliance.audit.keys import AuditKey, PublicKey
from appliance.errors import ValidationError
from appliance.store import Database, Transaction

__all__ = ["Checkpoint", "checkpoint_dir", "checkpoint_due", "checkpoint_in", "latest_checkpoint", "load_key",
           "make_checkpoint",
           "read_checkpoint_file", "stored_checkpoints", "write_checkpoint_file"]

MAGIC = "cortex-audit-checkpoint/v1"
_FIELDS = ("appliance", "size", "head", "time", "key")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def checkpoint_dir(data_dir: Path) -> Path:
    return data_dir / "audit" / "checkpoints"


@dataclass(frozen=True)
class Checkpoint:
    appliance_id: str
    size: int
    head: str
    at: str
    key_id: str
    signature: str
    origin: str = "database"  # where it was read from: database, a file path, an export

    def message(self) -> bytes:
        """The signed bytes: the first six lines of the text."""
        return (f"{MAGIC}\nappliance: {self.appliance_id}\nsize: {self.size}\nhead: {self.head}\n"
                f"time: {self.at}\nkey: {self.key_id}\n").encode()

    def text(self) -> str:
        return self.message().decode("utf-8") + f"signature: {self.signature}\n"

    def verifies_with(self, public: PublicKey) -> bool:
        return self.key_id == public.key_id and public.verify(self.signature, self.message())

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "head": self.head, "time": self.at, "appliance": self.appliance_id,
                "key": self.key_id, "signature": self.signature, "text": self.text()}

    @classmethod
    def sign(cls, key: AuditKey, size: int, head: str, at: str | None = None) -> Checkpoint:
        unsigned = cls(key.appliance_id, size, head, at or clock.now_iso(), key.key_id, "")
        return cls(key.appliance_id, size, head, unsigned.at, key.key_id, key.sign(unsigned.message()))

    @classmethod
    def parse(cls, text: str, origin: str = "file") -> Checkpoint:
        """Read a checkpoint's text.

        Raises:
            ValidationError: the text is not a well-formed checkpoint (which line, and why).
        """
        lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
        if len(lines) != 7 or lines[0] != MAGIC:
            raise ValidationError(f"{origin} is not a checkpoint: expected 7 lines starting with {MAGIC!r}")
        values: dict[str, str] = {}
        for number, (line, name) in enumerate(zip(lines[1:], (*_FIELDS, "signature"), strict=True), start=2):
            prefix = f"{name}: "
            if not line.startswith(prefix):
                raise ValidationError(f"{origin} line {number}: expected '{prefix}…', got {line[:60]!r}")
            values[name] = line[len(prefix):]
        if not values["size"].isdigit() or not _HEX64.match(values["head"]):
            raise ValidationError(f"{origin}: size must be a number and head 64 lowercase hex characters")
        return cls(values["appliance"], int(values["size"]), values["head"], values["time"], values["key"],
                   values["signature"], origin)


def read_checkpoint_file(path: Path) -> Checkpoint:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"cannot read the checkpoint {path}: {exc}") from exc
    return Checkpoint.parse(text, origin=str(path))


def write_checkpoint_file(data_dir: Path, checkpoint: Checkpoint) -> Path:
    """Write the checkpoint's file durably (aside, fsync, rename); returns its path."""
    folder = checkpoint_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"checkpoint-{checkpoint.size:012d}.txt"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(checkpoint.text())
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return path


def _from_row(row: dict[str, Any]) -> Checkpoint:
    return Checkpoint(row["appliance_id"], row["size"], row["head"], row["at"], row["key_id"], row["signature"])


def stored_checkpoints(tx: Transaction, *, up_to: int | None = None, since: int | None = None) -> list[Checkpoint]:
    rows = tx.query("SELECT * FROM audit_checkpoints WHERE size >= ? AND size <= ? ORDER BY size",
                    (since or 0, up_to if up_to is not None else 1 << 62))
    return [_from_row(r) for r in rows]


def latest_checkpoint(tx: Transaction) -> Checkpoint | None:
    row = tx.one("SELECT * FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
    return _from_row(row) if row else None


def checkpoint_in(tx: Transaction, key: AuditKey, data_dir: Path) -> Checkpoint | None:
    """Sign the current head inside the write transaction ``tx`` unless a checkpoint covers it already."""
    head = tx.one("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
    if head is None or head["hash"] is None:
        return None
    if tx.scalar("SELECT 1 FROM audit_checkpoints WHERE size = ?", (head["seq"],)):
        return None
    checkpoint = Checkpoint.sign(key, head["seq"], head["hash"])
    tx.insert("audit_checkpoints", {"size": checkpoint.size, "head": checkpoint.head, "at": checkpoint.at,
                                    "appliance_id": checkpoint.appliance_id, "key_id": checkpoint.key_id,
                                    "signature": checkpoint.signature, "text": checkpoint.text()})
    write_checkpoint_file(data_dir, checkpoint)
    return checkpoint


def make_checkpoint(db: Database, data_dir: Path, key: AuditKey | None = None) -> Checkpoint | None:
    """Sign the current head (None when the newest event is covered already)."""
    key = key or load_key(db, data_dir)
    with db.write() as tx:
        return checkpoint_in(tx, key, data_dir)


def checkpoint_due(db: Database, *, every_events: int, every_minutes: int) -> bool:
    """True when ``every_events`` events arrived since the last checkpoint, or ``every_minutes`` passed
    since it and at least one event arrived."""
    with db.read() as tx:
        head = tx.scalar("SELECT MAX(seq) FROM audit_events") or 0
        last = tx.one("SELECT size, at FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
    if last is None:
        return head > 0
    pending = head - int(last["size"])
    if pending <= 0:
        return False
    if pending >= every_events:
        return True
    return clock.now() - clock.from_iso(last["at"]) >= timedelta(minutes=every_minutes)


def load_key(db: Database, data_dir: Path) -> AuditKey:
    """The data directory's audit key; its creation (first use) is audited."""
    from appliance.audit.models import Actor
    from appliance.audit.recorder import record_event
    from appliance.audit.tags import AuditTag

    key = AuditKey.load(data_dir)
    if key.created:
        with db.write() as tx:
            record_event(tx, AuditTag.AUDIT_KEY_CREATED, Actor.system(), target=f"key:{key.key_id}",
                         details={"key_id": key.key_id, "appliance_id": key.appliance_id,
                                  "public_key": key.public.pem()})
    return key
