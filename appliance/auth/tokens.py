"""API tokens for CI and scripts: ``Authorization: Bearer cca_…``.

A token is shown once when created; the database keeps its sha256 (the token is 240 random bits, so a
fast hash is enough) and a short prefix to recognise it in lists.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from appliance import clock
from appliance.audit import Actor, AuditTag, RepeatGate, record_event
from appliance.auth.models import Principal, User
from appliance.errors import NotFoundError, ValidationError
from appliance.store import Database

__all__ = ["TOKEN_PREFIX", "CreatedToken", "create_token", "list_tokens", "principal_for_token", "revoke_token"]

TOKEN_PREFIX = "cca_"  # noqa: S105 - a public prefix, not a secret
_TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class CreatedToken:
    id: int
    token: str
    name: str
    expires_at: str | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db: Database, user: User, *, name: str, actor: Actor, expires_days: int | None = None) -> CreatedToken:
    name = name.strip()
    if not 1 <= len(name) <= 80:
        raise ValidationError("a token needs a name of 1 to 80 characters, saying what it is for (e.g. 'ci-main')")
    if expires_days is not None and not 1 <= expires_days <= 3650:
        raise ValidationError("a token expires after 1 to 3650 days (or never)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(30)
    now = clock.now()
    expires = clock.iso(now + timedelta(days=expires_days)) if expires_days else None
    with db.write() as tx:
        token_id = tx.insert("api_tokens", {
            "user_id": user.id, "name": name, "prefix": token[:12], "token_hash": _digest(token),
            "created_at": clock.iso(now), "expires_at": expires})
        record_event(tx, AuditTag.AUTH_TOKEN_CREATED, actor, target=f"user:{user.username}",
                     details={"token_id": token_id, "name": name, "prefix": token[:12], "expires_at": expires})
    return CreatedToken(token_id, token, name, expires)


def list_tokens(db: Database, user: User | None = None) -> list[dict[str, Any]]:
    sql = ("SELECT t.id, t.name, t.prefix, t.created_at, t.expires_at, t.last_used_at, t.revoked_at, u.username "
           "FROM api_tokens t JOIN users u ON u.id = t.user_id")
    with db.read() as tx:
        if user is None:
            return tx.query(sql + " ORDER BY t.id")
        return tx.query(sql + " WHERE t.user_id = ? ORDER BY t.id", (user.id,))


def revoke_token(db: Database, token_id: int, *, actor: Actor, owner: User | None = None) -> None:
    """Revoke a token (only the owner's own when ``owner`` is given)."""
    with db.write() as tx:
        row = tx.one("SELECT t.*, u.username FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?",
                     (token_id,))
        if row is None or (owner is not None and row["user_id"] != owner.id):
            raise NotFoundError(f"no API token with id {token_id}")
        if row["revoked_at"] is None:
            tx.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", (clock.now_iso(), token_id))
            record_event(tx, AuditTag.AUTH_TOKEN_REVOKED, actor, target=f"user:{row['username']}",
                         details={"token_id": token_id, "name": row["name"], "prefix": row["prefix"]})


def principal_for_token(db: Database, token: str, *, peer: str, gate: RepeatGate | None = None) -> Principal | None:
    """The principal of a valid token, or None (unknown, revoked, expired token or inactive user; audited,
    through ``gate`` when given, so an anonymous client cannot flood the audit trail)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    with db.read() as tx:
        row = tx.one("SELECT t.id AS token_id, t.revoked_at, t.expires_at, t.last_used_at, t.prefix, u.* "
                     "FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?", (_digest(token),))
    now = clock.now()
    reason = None
    if row is None:
        reason = "unknown token"
    elif row["revoked_at"]:
        reason = "revoked token"
    elif row["expires_at"] and clock.from_iso(row["expires_at"]) <= now:
        reason = "expired token"
    elif not row["is_active"]:
        reason = "account deactivated"
    if reason:
        held = gate.admit(f"token:{peer}") if gate else 0
        if held is not None:
            with db.write() as tx:
                record_event(tx, AuditTag.AUTH_TOKEN_REFUSED, Actor.anonymous(peer),
                             target=f"user:{row['username']}" if row else "token", outcome="denied",
                             details={"reason": reason, "prefix": token[:12], "held_back_before": held})
        return None
    if row is None:  # unreachable: reason is set above
        return None
    if row["last_used_at"] is None or now - clock.from_iso(row["last_used_at"]) >= _TOUCH_EVERY:
        with db.write() as tx:
            tx.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (clock.iso(now), row["token_id"]))
    return Principal(User.from_row(row), "token", peer, token_id=row["token_id"])
