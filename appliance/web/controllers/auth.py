"""Sign-in, sign-out and the first admin's setup page."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import FromQuery, URLEncodedBody
from litestar.response import Redirect, Template

from appliance.auth import end_session, has_admin, sign_in, use_bootstrap_token
from appliance.errors import ApplianceError, ThrottledError
from appliance.web.controllers.common import blocking, page_context, safe_next, services_of
from appliance.web.security import cookie_name, ensure_pre_csrf, peer_address, pre_csrf_cookie_name

__all__ = ["login_form", "login_submit", "logout", "setup_form", "setup_submit"]

Form = URLEncodedBody[dict[str, str]]


def _session_cookie(request: Request[Any, Any, Any], token: str) -> Cookie:
    settings = services_of(request).settings
    return Cookie(key=cookie_name(settings), value=token, path="/", httponly=True, samesite="lax",
                  secure=settings.tls_enabled, max_age=settings.session_max_hours * 3600)


def _pre_csrf_cookie(request: Request[Any, Any, Any], value: str) -> Cookie:
    settings = services_of(request).settings
    return Cookie(key=pre_csrf_cookie_name(settings), value=value, path="/", httponly=True, samesite="strict",
                  secure=settings.tls_enabled, max_age=3600)


def _anonymous_form(request: Request[Any, Any, Any], template: str, status: int = 200, **context: Any) -> Template:
    token = ensure_pre_csrf(request, services_of(request).settings)
    return Template(template_name=template, status_code=status, cookies=[_pre_csrf_cookie(request, token)],
                    context=page_context(request, csrf=token, **context))


@get("/login", include_in_schema=False)
async def login_form(request: Request[Any, Any, Any], next: FromQuery[str | None] = None) -> Response[Any]:
    if not await blocking(has_admin, services_of(request).db):
        return Redirect(path="/setup", status_code=303)
    if request.scope.get("state", {}).get("principal") is not None:
        return Redirect(path=safe_next(next), status_code=303)
    return _anonymous_form(request, "auth/login.html", next=safe_next(next))


@post("/login", include_in_schema=False, opt={"anonymous_form": True})
async def login_submit(request: Request[Any, Any, Any], data: Form) -> Response[Any]:
    services = services_of(request)
    target = safe_next(data.get("next"))
    try:
        session = await blocking(sign_in, services.db, services.settings, data.get("username", ""),
                                 data.get("password", ""), peer=peer_address(request.scope),
                                 user_agent=request.headers.get("user-agent", ""), gate=services.refusal_gate)
    except ThrottledError as exc:
        response = _anonymous_form(request, "auth/login.html", status=429, error=exc.message, next=target,
                                   username=data.get("username", ""))
        response.headers["retry-after"] = str(exc.retry_after)
        return response
    except ApplianceError as exc:
        return _anonymous_form(request, "auth/login.html", status=exc.status_code, error=exc.message, next=target,
                               username=data.get("username", ""))
    return Redirect(path=target, status_code=303, cookies=[_session_cookie(request, session.token)])


@post("/logout", include_in_schema=False)
async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
    services = services_of(request)
    principal = request.scope.get("state", {}).get("principal")
    if principal is not None:
        await blocking(end_session, services.db, principal)
    response = Redirect(path="/login", status_code=303)
    response.delete_cookie(cookie_name(services.settings), path="/")
    return response


@get("/setup", include_in_schema=False)
async def setup_form(request: Request[Any, Any, Any]) -> Response[Any]:
    if await blocking(has_admin, services_of(request).db):
        return Redirect(path="/login", status_code=303)
    return _anonymous_form(request, "auth/setup.html", username="admin")


@post("/setup", include_in_schema=False, opt={"anonymous_form": True})
async def setup_submit(request: Request[Any, Any, Any], data: Form) -> Response[Any]:
    services = services_of(request)
    username = data.get("username", "").strip()
    password = data.get("password", "")
    context = {"username": username, "display_name": data.get("display_name", "")}
    if password != data.get("confirm", ""):
        return _anonymous_form(request, "auth/setup.html", status=422, error="the two passwords differ", **context)
    peer = peer_address(request.scope)
    try:
        await blocking(use_bootstrap_token, services.db, data.get("token", "").strip(), username=username,
                       password=password, display_name=data.get("display_name", "").strip(), address=peer,
                       gate=services.refusal_gate)
        session = await blocking(sign_in, services.db, services.settings, username, password, peer=peer,
                                 user_agent=request.headers.get("user-agent", ""))
    except ApplianceError as exc:
        return _anonymous_form(request, "auth/setup.html", status=exc.status_code, error=exc.message, **context)
    return Redirect(path="/reviews", status_code=303, cookies=[_session_cookie(request, session.token)])
