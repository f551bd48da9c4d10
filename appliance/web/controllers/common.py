"""What every controller needs: the process's services, the caller, and page context."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from litestar import Request

from appliance import __version__
from appliance.auth import Principal
from appliance.errors import AuthenticationError
from appliance.review.service import record_review_access
from appliance.tasks.services import Services

__all__ = ["blocking", "note_review_access", "page_context", "principal_of", "safe_next", "services_of"]

T = TypeVar("T")


async def blocking(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a blocking domain call (database, files) in the worker thread pool, off the event loop."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def services_of(request: Request[Any, Any, Any]) -> Services:
    services: Services = request.app.state.services
    return services


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    if principal is None:  # guards make this unreachable; keep the type honest
        raise AuthenticationError("sign in first")
    return principal


def page_context(request: Request[Any, Any, Any], **extra: Any) -> dict[str, Any]:
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    return {"principal": principal, "csrf": principal.csrf_token if principal else "", "version": __version__,
            "path": request.url.path, **extra}


def safe_next(target: str | None, default: str = "/reviews") -> str:
    """Only same-site absolute paths: never '//host' or a scheme (open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


async def note_review_access(request: Request[Any, Any, Any], review_id: int, *, via: str,
                             exported_as: str | None = None) -> None:
    """Audit a read of a review, at most once per user, review and kind of read per audit_view_minutes: a
    page that refreshes every three seconds, or a CI job polling, must not become a stream of writes."""
    services = services_of(request)
    principal = principal_of(request)
    repeats = services.view_gate.admit(f"{principal.user.id}:{review_id}:{via}:{exported_as or 'view'}")
    if repeats is None:
        return
    await blocking(record_review_access, services.db, review_id, actor=principal.actor, via=via,
                   exported_as=exported_as)
