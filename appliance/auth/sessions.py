"""Sign-in, server-side sessions and sign-in throttling.

Sessions live in SQLite: the cookie carries 32 random bytes, the database only their sha256, so a
database copy cannot be replayed as cookies. Each session has a CSRF token (synchronizer pattern), an idle
timeout and an absolute end. Failed sign-ins are counted per account and per peer address (the socket's
address: a client-supplied ``X-Forwarded-For`` is never believed) over a sliding window.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
from dataclasses import dataclass
from datetime import timedelta

from appliance import clock
from appliance.audit import Actor, AuditTag, RepeatGate, record_event
from appliance.auth.models import Principal, User
from appliance.auth.passwords import verify_password
from appliance.config import Settings
from appliance.errors import AuthenticationError, ThrottledError
from appliance.store import Database, Transaction

__all__ = ["NewSession", "end_session", "principal_for_session", "sign_in"]

# Striped locks: attempts on one account serialize, different accounts mostly do not.
_ACCOUNT_LOCKS = tuple(threading.Lock() for _ in range(64))
# Refresh last_seen_at at most this often, so reading pages does not turn every request into a write.
_TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class NewSession:
    token: str  # goes into the cookie; never stored
    principal: Principal
    expires_at: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _throttled_for(tx: Transaction, settings: Settings, account: str, peer: str) -> int | None:
    """Seconds until another attempt is allowed, or None when not throttled."""
    now = clock.now()
    window = timedelta(minutes=settings.login_window_minutes)
    since = clock.iso(now - window)
    waits = []
    for column, value, limit in (("account", account, settings.login_max_failures),
                                 ("peer", peer, settings.login_max_failures_per_address)):
        rows = tx.rows(f"SELECT at FROM login_failures WHERE {column} = ? AND at > ? ORDER BY at DESC LIMIT ?",  # noqa: S608
                       (value, since, limit))
        if len(rows) >= limit:
            # Allowed again when the oldest of the last `limit` failures leaves the window.
            waits.append((clock.from_iso(rows[-1][0]) + window - now).total_seconds())
    return max(1, math.ceil(max(waits))) if waits else None


def sign_in(db: Database, settings: Settings, username: str, password: str, *, peer: str,
            user_agent: str = "", gate: RepeatGate | None = None) -> NewSession:
    """Check credentials and open a session.

    Raises:
        ThrottledError: too many recent failures for this account or this peer address (audited).
        AuthenticationError: wrong username or password, or a deactivated account (audited).
    """
    username = username.strip()[:128]
    actor = Actor(kind="anonymous", name=username or "anonymous", address=peer)
    # Attempts on one account run one at a time, so parallel guesses cannot slip past the limit while the
    # (deliberately slow) hash is checked, and each failure is counted and audited in one transaction.
    with _ACCOUNT_LOCKS[hash(username.lower()) % len(_ACCOUNT_LOCKS)]:
        with db.read() as tx:
            wait = _throttled_for(tx, settings, username, peer)
            row = tx.one("SELECT * FROM users WHERE username = ?", (username,)) if wait is None else None
        if wait is not None:
            held = gate.admit(f"throttled:{peer}") if gate else 0
            if held is not None:
                with db.write() as tx:
                    record_event(tx, AuditTag.AUTH_SESSION_THROTTLED, actor, target=f"user:{username}",
                                 outcome="denied", details={"retry_after_seconds": wait, "held_back_before": held})
            raise ThrottledError(f"too many failed sign-ins; try again in {wait} seconds", retry_after=wait)
        ok = verify_password(password, row["password_hash"] if row else None)
        if not ok or row is None or not row["is_active"]:
            reason = "wrong password" if row and row["is_active"] else "deactivated" if row else "unknown user"
            with db.write() as tx:
                tx.insert("login_failures", {"account": username, "peer": peer, "at": clock.now_iso()})
                record_event(tx, AuditTag.AUTH_SESSION_FAILED, actor, target=f"user:{username}",
                             outcome="failure", details={"reason": reason})
            raise AuthenticationError("wrong username or password")
    user = User.from_row(row)
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = clock.now()
    expires = clock.iso(now + timedelta(hours=settings.session_max_hours))
    with db.write() as tx:
        tx.execute("DELETE FROM login_failures WHERE account = ?", (username,))
        session_id = tx.insert("sessions", {
            "token_hash": _digest(token), "user_id": user.id, "csrf_token": csrf, "created_at": clock.iso(now),
            "last_seen_at": clock.iso(now), "expires_at": expires, "peer": peer, "user_agent": user_agent[:256]})
        actor = Actor.user(user.id, user.username, peer, display_name=user.display_name)
        record_event(tx, AuditTag.AUTH_SESSION_CREATED, actor, target=f"user:{user.username}",
                     details={"session_id": session_id})
    return NewSession(token, Principal(user, "session", peer, session_id=session_id, csrf_token=csrf), expires)


def principal_for_session(db: Database, settings: Settings, token: str, *, peer: str) -> Principal | None:
    """The principal of a live session, or None. An expired session is ended (and audited) on sight."""
    if not token or len(token) > 128:
        return None
    with db.read() as tx:
        row = tx.one(
            "SELECT s.id AS session_id, s.csrf_token, s.last_seen_at, s.expires_at, s.ended_at, u.* "
            "FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?", (_digest(token),))
    if row is None or row["ended_at"] is not None:
        return None
    now = clock.now()
    idle_end = clock.from_iso(row["last_seen_at"]) + timedelta(minutes=settings.session_idle_minutes)
    reason = None
    if clock.from_iso(row["expires_at"]) <= now:
        reason = "expired"
    elif idle_end <= now:
        reason = "idle timeout"
    elif not row["is_active"]:
        reason = "account deactivated"
    if reason:
        with db.write() as tx:
            if tx.execute("UPDATE sessions SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL",
                          (clock.iso(now), reason, row["session_id"])):
                record_event(tx, AuditTag.AUTH_SESSION_ENDED, Actor.system(), target=f"user:{row['username']}",
                             details={"session_id": row["session_id"], "reason": reason})
        return None
    if now - clock.from_iso(row["last_seen_at"]) >= _TOUCH_EVERY:
        with db.write() as tx:
            tx.execute("UPDATE sessions SET last_seen_at = ? WHERE id = ?", (clock.iso(now), row["session_id"]))
    return Principal(User.from_row(row), "session", peer, session_id=row["session_id"], csrf_token=row["csrf_token"])


def end_session(db: Database, principal: Principal, *, reason: str = "signed out") -> None:
    if principal.session_id is None:
        return
    with db.write() as tx:
        if tx.execute("UPDATE sessions SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL",
                      (clock.now_iso(), reason, principal.session_id)):
            record_event(tx, AuditTag.AUTH_SESSION_ENDED, principal.actor, target=f"user:{principal.user.username}",
                         details={"session_id": principal.session_id, "reason": reason})
