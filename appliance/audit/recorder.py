"""The one way an audit event is written: inside the caller's write transaction, chained to the last one.

The event commits with the change it describes, or neither does. Its details are stored as RFC 8785
canonical JSON, and the event is chained: ``hash = SHA-256(prev_hash ‖ canonical(event))`` (see
:mod:`appliance.audit.chain`). The write transaction is ``BEGIN IMMEDIATE`` under the single writer, so
reading the head and appending the next event cannot interleave with another writer (another thread, a
task or a ``cortex`` command in another process): the chain never forks and no ``seq`` repeats. Secrets
are never recorded: a detail key that names one is a programming error.
"""

from __future__ import annotations

import json
import weakref
from typing import Any

from appliance import clock
from appliance.audit.chain import GENESIS, canonical_details, clean_text, event_hash
from appliance.audit.models import Actor
from appliance.audit.tags import AuditTag
from appliance.store import Transaction

__all__ = ["canonical_json", "record_event", "seal_unchained"]

_OUTCOMES = frozenset({"success", "failure", "denied"})
_SECRET_KEYS = frozenset({"password", "token", "secret", "private_key", "api_key", "cookie", "session_token",
                          "csrf_token"})
_CHAINED = "SELECT 1 FROM pragma_table_info('audit_events') WHERE name = 'hash'"
_HEAD = "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"
_INSERT = ("INSERT INTO audit_events (seq, at, actor_id, actor_name, actor_display, actor_kind, source_addr, "
           "action, target, outcome, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


# Connections known to have the chain columns (they never lose them: migrations are append-only). Until a
# connection has seen them, each append asks the schema, which only happens while migrations run.
_CHAINED_CONNECTIONS: weakref.WeakSet[Any] = weakref.WeakSet()


def _chained(tx: Transaction) -> bool:
    connection = tx.connection_token
    if connection in _CHAINED_CONNECTIONS:
        return True
    if tx.scalar(_CHAINED) is None:
        return False
    _CHAINED_CONNECTIONS.add(connection)
    return True


def canonical_json(value: Any) -> str:
    """RFC 8785 canonical JSON text of ``value``."""
    return canonical_details(value) if isinstance(value, dict) else json.dumps(value, ensure_ascii=False)


def seal_unchained(tx: Transaction) -> int:
    """Give hashes to events written before the chain existed (migration 0003), oldest first; returns how
    many. Their details are rewritten to canonical form, the only change the update trigger allows."""
    rows = tx.rows("SELECT seq, at, actor_id, actor_name, actor_display, actor_kind, source_addr, action, target, "
                   "outcome, details FROM audit_events WHERE hash IS NULL ORDER BY seq")
    if not rows:
        return 0
    before = tx.scalar("SELECT hash FROM audit_events WHERE seq < ? AND hash IS NOT NULL ORDER BY seq DESC LIMIT 1",
                       (rows[0][0],))
    prev = before or GENESIS
    for seq, at, actor_id, name, display, kind, addr, action, target, outcome, details in rows:
        text = canonical_details(json.loads(details or "{}"))
        digest = event_hash(prev, (action, display, actor_id, kind, name, at, text, outcome, seq, addr, target))
        tx.execute("UPDATE audit_events SET details = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                   (text, prev, digest, seq))
        prev = digest
    return len(rows)


def record_event(
    tx: Transaction,
    tag: AuditTag,
    actor: Actor,
    *,
    target: str = "",
    outcome: str = "success",
    details: dict[str, Any] | None = None,
) -> int:
    """Append one event in ``tx`` and return its sequence number.

    Raises:
        ValueError: an unknown outcome, a read-only transaction, a detail key that names a secret, or a
            detail value that has no exact JSON form.
    """
    if not tx.writable:
        raise ValueError("audit events are written inside a write transaction")
    if outcome not in _OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    details = details or {}
    leaked = _SECRET_KEYS.intersection(k.lower() for k in details)
    if leaked:
        raise ValueError(f"audit details must not carry secrets: {sorted(leaked)}")
    text = canonical_details(details)
    action = str(AuditTag(tag))
    at = clock.now_iso()
    name, display, target = clean_text(actor.name), clean_text(actor.display), clean_text(target)
    addr = None if actor.address is None else clean_text(actor.address)
    if not _chained(tx):
        # Only while migrations 0001-0002 record their own events, before 0003 adds the chain columns.
        return tx.insert("audit_events", {
            "at": at, "actor_id": actor.id, "actor_name": name, "actor_kind": actor.kind, "source_addr": addr,
            "action": action, "target": target, "outcome": outcome, "details": text})
    head = tx.rows(_HEAD)
    if head and head[0][1] is None:
        seal_unchained(tx)
        head = tx.rows(_HEAD)
    seq, prev = (head[0][0] + 1, head[0][1]) if head else (1, GENESIS)
    digest = event_hash(prev, (action, display, actor.id, actor.kind, name, at, text, outcome, seq, addr, target))
    tx.execute(_INSERT, (seq, at, actor.id, name, display, actor.kind, addr, action, target, outcome, text, prev,
                         digest))
    return seq
