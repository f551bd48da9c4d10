"""The one way an audit event is written: inside the caller's write transaction.

The event commits with the change it describes, or neither does. Details are serialized canonically
(sorted keys, no insignificant whitespace, UTF-8), so user-controlled text can never break a record's
framing. Secrets are never recorded: a detail key that names one is a programming error.
"""

from __future__ import annotations

import json
from typing import Any

from appliance import clock
from appliance.audit.models import Actor
from appliance.audit.tags import AuditTag
from appliance.store import Transaction

__all__ = ["canonical_json", "record_event"]

_OUTCOMES = frozenset({"success", "failure", "denied"})
_SECRET_KEYS = frozenset({"password", "token", "secret", "private_key", "api_key", "cookie", "session_token",
                          "csrf_token"})


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


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
        ValueError: an unknown outcome, a read-only transaction, or a detail key that names a secret.
    """
    if not tx.writable:
        raise ValueError("audit events are written inside a write transaction")
    if outcome not in _OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    details = details or {}
    leaked = _SECRET_KEYS.intersection(k.lower() for k in details)
    if leaked:
        raise ValueError(f"audit details must not carry secrets: {sorted(leaked)}")
    return tx.insert("audit_events", {
        "at": clock.now_iso(),
        "actor_id": actor.id,
        "actor_name": actor.name,
        "actor_kind": actor.kind,
        "source_addr": actor.address,
        "action": str(AuditTag(tag)),
        "target": target,
        "outcome": outcome,
        "details": canonical_json(details),
    })
