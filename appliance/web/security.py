"""Who is calling, what they may do, and the browser-side protections.

- The principal middleware resolves a session cookie or a ``Bearer`` API token into a principal on
  ``request.state.principal`` (None when anonymous). The peer address is the socket's: uvicorn runs with
  proxy headers off, and ``X-Forwarded-For`` is never read.
- ``requires(permission)`` guards a handler; anonymous callers get 401 (pages redirect to sign-in).
- The CSRF guard runs on every unsafe request authenticated by a cookie: the session's token must come
  back in the ``X-CSRF-Token`` header or the ``_csrf`` form field. Anonymous forms (sign-in, setup) use a
  double-submit cookie. Requests with an API token carry no ambient credential and need no CSRF token.
- Every response gets a strict Content-Security-Policy (no inline script, nothing from other origins).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from litestar.connection import ASGIConnection, Request
from litestar.datastructures import MutableScopeHeaders
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from appliance.audit import Actor, AuditTag, record_event
from appliance.auth import Principal, principal_for_session, principal_for_token
from appliance.config import Settings
from appliance.errors import AuthenticationError, PermissionDeniedError
from appliance.rbac import Permission
from appliance.tasks.services import Services

__all__ = ["PRE_CSRF_COOKIE", "cookie_name", "csrf_guard", "ensure_pre_csrf", "pre_csrf_cookie_name",
           "principal_middleware", "requires", "security_headers_middleware"]

PRE_CSRF_COOKIE = "cortex_form"


def pre_csrf_cookie_name(settings: Settings) -> str:
    """The anonymous forms' double-submit cookie; __Host- over TLS, so no sibling host can plant it."""
    return f"__Host-{PRE_CSRF_COOKIE}" if settings.tls_enabled else PRE_CSRF_COOKIE
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def cookie_name(settings: Settings) -> str:
    # RFC 6265bis §4.1.3.2: a __Host- cookie is Secure, host-only and Path=/, so no sibling host can plant it.
    return "__Host-cortex_session" if settings.tls_enabled else "cortex_session"


def peer_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def principal_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        services: Services = scope["litestar_app"].state.services
        settings = services.settings
        headers = dict((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope.get("headers", []))
        peer = peer_address(scope)
        principal: Principal | None = None
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
            principal = await anyio.to_thread.run_sync(
                lambda: principal_for_token(services.db, token, peer=peer, gate=services.refusal_gate))
            state["auth_attempted"] = "token"
        else:
            cookies = Request(scope).cookies
            value = cookies.get(cookie_name(settings))
            if value:
                principal = await anyio.to_thread.run_sync(
                    lambda: principal_for_session(services.db, settings, value, peer=peer))
                state["auth_attempted"] = "session"
        state["principal"] = principal
        state["peer"] = peer
        await app(scope, receive, send)

    return middleware


def security_headers_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                headers.setdefault("content-security-policy", _CSP)
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("x-frame-options", "DENY")
                headers.setdefault("referrer-policy", "no-referrer")
                headers.setdefault("cross-origin-opener-policy", "same-origin")
                if not scope["path"].startswith("/static/"):
                    headers.setdefault("cache-control", "no-store")
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware


def current_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    principal: Principal | None = connection.scope.get("state", {}).get("principal")
    return principal


def requires(permission: Permission) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler],
                                                 Awaitable[None]]:
    """A guard admitting principals holding ``permission``; a refusal of a signed-in caller is audited."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = current_principal(connection)
        if principal is None:
            attempted = connection.scope.get("state", {}).get("auth_attempted")
            raise AuthenticationError(
                "the API token is not valid (unknown, revoked or expired)" if attempted == "token"
                else "your session has ended; sign in again" if attempted == "session"
                else "sign in first (or send an API token as 'Authorization: Bearer …')")
        if not principal.can(permission):
            services: Services = connection.scope["litestar_app"].state.services

            def audit() -> None:
                with services.db.write() as tx:
                    record_event(tx, AuditTag.AUTH_PERMISSION_DENIED, principal.actor,
                                 target=str(connection.scope.get("path", "")), outcome="denied",
                                 details={"permission": str(permission), "role": principal.user.role,
                                          "method": connection.scope.get("method")})

            await anyio.to_thread.run_sync(audit)
            raise PermissionDeniedError(f"your role ({principal.user.role}) does not grant {permission}")

    return guard


def ensure_pre_csrf(request: Request[Any, Any, Any], settings: Settings) -> str:
    """The anonymous-form CSRF value: the existing cookie's, or a new one the caller must set."""
    return request.cookies.get(pre_csrf_cookie_name(settings)) or secrets.token_urlsafe(24)


async def csrf_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Runs before the permission guards. Only requests that carry an ambient credential (a session
    cookie) and anonymous forms (``opt={"anonymous_form": True}``) are checked: without a session there is
    nothing to forge, and the permission guard answers 401."""
    scope = connection.scope
    if scope.get("method") not in _UNSAFE:
        return
    principal = current_principal(connection)
    anonymous_form = bool(handler.opt.get("anonymous_form"))
    if principal is not None and principal.via == "token":
        return
    if principal is None and not anonymous_form:
        return
    request = connection if isinstance(connection, Request) else Request(scope, connection.receive)
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").split(";")[0].strip() in (
            "application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        value = form.get("_csrf")
        sent = value if isinstance(value, str) else None
    if anonymous_form:
        # Sign-in and setup use the double-submit cookie even when a session cookie is also present.
        settings: Settings = scope["litestar_app"].state.services.settings
        expected = request.cookies.get(pre_csrf_cookie_name(settings), "")
    else:
        expected = (principal.csrf_token or "") if principal is not None else ""
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        services: Services = scope["litestar_app"].state.services
        actor = principal.actor if principal else Actor.anonymous(peer_address(scope))

        def audit() -> None:
            with services.db.write() as tx:
                record_event(tx, AuditTag.AUTH_CSRF_REFUSED, actor, target=str(scope.get("path", "")),
                             outcome="denied", details={"method": scope.get("method")})

        if services.refusal_gate.admit(f"csrf:{peer_address(scope)}") is not None:
            await anyio.to_thread.run_sync(audit)
        raise PermissionDeniedError("the form's security token is missing or stale; reload the page and try again")
