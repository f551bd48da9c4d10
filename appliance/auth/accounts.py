"""Local accounts and the first admin's one-time bootstrap token."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from appliance import clock
from appliance.audit import Actor, AuditTag, RepeatGate, record_event
from appliance.auth.models import User
from appliance.auth.passwords import check_password_policy, hash_password
from appliance.config import Settings
from appliance.errors import AuthenticationError, ConflictError, NotFoundError, ValidationError
from appliance.rbac import ROLES
from appliance.store import Database, IntegrityError, Transaction

__all__ = ["create_user", "deactivate_user", "find_user", "has_admin", "issue_bootstrap_token", "list_users",
           "set_password", "use_bootstrap_token"]

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_username(username: str) -> None:
    if not _USERNAME.match(username):
        raise ValidationError("a username is 2 to 64 letters, digits, '.', '_', '@' or '-', starting with a "
                              f"letter or digit (got {username!r})")


def _insert_user(tx: Transaction, username: str, display_name: str, role: str, password: str | None) -> int:
    now = clock.now_iso()
    try:
        return tx.insert("users", {
            "username": username, "display_name": display_name or username, "role": role,
            "password_hash": hash_password(password) if password else None, "is_active": 1,
            "created_at": now, "updated_at": now, "password_changed_at": now if password else None})
    except IntegrityError as exc:
        raise ConflictError(f"a user named {username!r} already exists") from exc


def create_user(db: Database, *, username: str, role: str, actor: Actor, password: str | None = None,
                display_name: str = "") -> User:
    """Create a local account.

    Raises:
        ValidationError: bad username, unknown role, or a password that breaks the policy.
        ConflictError: the username is taken.
    """
    _check_username(username)
    if role not in ROLES:
        raise ValidationError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if password is not None:
        check_password_policy(password, username=username)
    with db.write() as tx:
        user_id = _insert_user(tx, username, display_name, role, password)
        record_event(tx, AuditTag.AUTH_USER_CREATED, actor, target=f"user:{username}",
                     details={"user_id": user_id, "role": role, "password_set": password is not None})
    return User(user_id, username, display_name or username, role, True)


def find_user(db: Database, username: str) -> User:
    with db.read() as tx:
        row = tx.one("SELECT * FROM users WHERE username = ?", (username,))
    if row is None:
        raise NotFoundError(f"no user named {username!r}")
    return User.from_row(row)


def list_users(db: Database) -> list[User]:
    with db.read() as tx:
        return [User.from_row(r) for r in tx.query("SELECT * FROM users ORDER BY username")]


def set_password(db: Database, username: str, password: str, *, actor: Actor) -> None:
    """Set a new password; every open session of the account ends."""
    check_password_policy(password, username=username)
    user = find_user(db, username)
    now = clock.now_iso()
    with db.write() as tx:
        tx.execute("UPDATE users SET password_hash = ?, password_changed_at = ?, updated_at = ? WHERE id = ?",
                   (hash_password(password), now, now, user.id))
        ended = tx.execute("UPDATE sessions SET ended_at = ?, end_reason = 'password changed' "
                           "WHERE user_id = ? AND ended_at IS NULL", (now, user.id))
        record_event(tx, AuditTag.AUTH_USER_PASSWORD_CHANGED, actor, target=f"user:{username}",
                     details={"sessions_ended": ended})


def deactivate_user(db: Database, username: str, *, actor: Actor) -> None:
    """Block an account: it cannot sign in, its sessions end and its API tokens stop working.

    Raises:
        NotFoundError: no such user.
        ConflictError: it is the last active admin (the appliance would have nobody to administer it).
    """
    user = find_user(db, username)
    now = clock.now_iso()
    with db.write() as tx:
        admins = tx.scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND is_active = 1")
        if user.role == "admin" and user.is_active and admins <= 1:
            raise ConflictError(f"{username} is the last active administrator; create another admin first")
        tx.execute("UPDATE users SET is_active = 0, updated_at = ? WHERE id = ?", (now, user.id))
        ended = tx.execute("UPDATE sessions SET ended_at = ?, end_reason = 'account deactivated' "
                           "WHERE user_id = ? AND ended_at IS NULL", (now, user.id))
        record_event(tx, AuditTag.AUTH_USER_DEACTIVATED, actor, target=f"user:{username}",
                     details={"user_id": user.id, "sessions_ended": ended})


def has_admin(db: Database) -> bool:
    with db.read() as tx:
        return bool(tx.scalar("SELECT 1 FROM users WHERE role = 'admin' AND is_active = 1 LIMIT 1"))


def issue_bootstrap_token(db: Database, settings: Settings) -> str | None:
    """A fresh one-time token for creating the first admin, or None when an admin exists.

    Earlier unused tokens are superseded. Only the token's hash is stored; the caller shows the token once.
    """
    token = secrets.token_urlsafe(24)
    now = clock.now()
    with db.write() as tx:
        if tx.scalar("SELECT 1 FROM users WHERE role = 'admin' AND is_active = 1 LIMIT 1"):
            return None
        superseded = tx.execute("UPDATE bootstrap_tokens SET superseded_at = ? WHERE used_at IS NULL "
                                "AND superseded_at IS NULL", (clock.iso(now),))
        token_id = tx.insert("bootstrap_tokens", {
            "token_hash": _digest(token), "created_at": clock.iso(now),
            "expires_at": clock.iso(now + timedelta(hours=settings.bootstrap_token_hours))})
        record_event(tx, AuditTag.AUTH_BOOTSTRAP_ISSUED, Actor.system(), target="bootstrap",
                     details={"token_id": token_id, "superseded": superseded,
                              "valid_hours": settings.bootstrap_token_hours})
    return token


def use_bootstrap_token(db: Database, token: str, *, username: str, password: str, display_name: str = "",
                        address: str | None = None, gate: RepeatGate | None = None) -> User:
    """Create the first admin with a valid, unused bootstrap token.

    Raises:
        AuthenticationError: the token is unknown, used, superseded or expired (audited).
        ValidationError / ConflictError: as for :func:`create_user`.
    """
    _check_username(username)
    check_password_policy(password, username=username)
    now = clock.now()
    with db.write() as tx:
        rows = tx.query("SELECT * FROM bootstrap_tokens WHERE used_at IS NULL AND superseded_at IS NULL")
        match = next((r for r in rows if hmac.compare_digest(r["token_hash"], _digest(token))), None)
        reason = None
        if match is None:
            reason = "unknown, used or superseded token"
        elif clock.from_iso(match["expires_at"]) <= now:
            reason = "expired token"
        elif tx.scalar("SELECT 1 FROM users WHERE role = 'admin' AND is_active = 1 LIMIT 1"):
            reason = "an admin already exists"
        if reason is None and match is not None:
            user_id = _insert_user(tx, username, display_name, "admin", password)
            tx.execute("UPDATE bootstrap_tokens SET used_at = ? WHERE id = ?", (clock.iso(now), match["id"]))
            record_event(tx, AuditTag.AUTH_BOOTSTRAP_USED, Actor.anonymous(address), target=f"user:{username}",
                         details={"token_id": match["id"], "user_id": user_id})
            record_event(tx, AuditTag.AUTH_USER_CREATED, Actor.anonymous(address), target=f"user:{username}",
                         details={"user_id": user_id, "role": "admin", "password_set": True, "via": "bootstrap"})
            return User(user_id, username, display_name or username, "admin", True)
    held = gate.admit(f"bootstrap:{address}") if gate else 0
    if held is not None:
        with db.write() as tx:
            record_event(tx, AuditTag.AUTH_BOOTSTRAP_REFUSED, Actor.anonymous(address), target="bootstrap",
                         outcome="denied", details={"reason": reason, "held_back_before": held})
    raise AuthenticationError(f"the setup token was not accepted ({reason}); run `cortex admin bootstrap` "
                              "on the appliance host for a new one")
