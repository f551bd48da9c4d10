"""Liveness and readiness for the site's monitoring."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response, get

from appliance import __version__
from appliance.web.controllers.common import blocking, services_of

__all__ = ["healthz", "readyz"]


@get("/healthz", media_type=MediaType.JSON, tags=["health"])
async def healthz() -> dict[str, str]:
    """Alive: the process answers. Says nothing about its dependencies (see /readyz)."""
    return {"status": "ok", "version": __version__}


@get("/readyz", media_type=MediaType.JSON, tags=["health"])
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Ready: the database is writable, the queue consumer is alive, and the model has loaded or
    failed to with its reason (then reviews run rules-only and the status is "degraded")."""
    report = await blocking(services_of(request).readiness)
    report["version"] = __version__
    return Response(report, status_code=200 if report["ready"] else 503)
