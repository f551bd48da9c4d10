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
from appliance.tasks.services import Services

__all__ = ["blocking", "page_context", "principal_of", "safe_next", "services_of"]

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
