"""The one exception-handler map: ApplianceError as JSON under /api, as a page elsewhere; anything else
becomes an incident id for the user and a traceback in the log."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from appliance import __version__
from appliance.errors import ApplianceError, AuthenticationError, ThrottledError

__all__ = ["EXCEPTION_HANDLERS", "wants_json"]

log = logging.getLogger("appliance.web")


def wants_json(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith(("/api/", "/scim/")) or request.url.path in ("/healthz", "/readyz")


def _page(request: Request[Any, Any, Any], status: int, title: str, message: str,
          extra: dict[str, Any] | None = None) -> Response[Any]:
    principal = request.scope.get("state", {}).get("principal")
    return Template(template_name="error.html", status_code=status,
                    context={"title": title, "message": message, "status": status, "principal": principal,
                             "csrf": principal.csrf_token if principal else "", "path": request.url.path,
                             "version": __version__, **(extra or {})})


def appliance_error_handler(request: Request[Any, Any, Any], exc: ApplianceError) -> Response[Any]:
    headers = {}
    if isinstance(exc, ThrottledError):
        headers["retry-after"] = str(exc.retry_after)
    if wants_json(request):
        return Response(exc.to_dict(), status_code=exc.status_code, media_type=MediaType.JSON, headers=headers)
    if isinstance(exc, AuthenticationError) and request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(path="/login", query_params={"next": target}, status_code=303)
    response = _page(request, exc.status_code, exc.code.replace("_", " ").capitalize(), exc.message)
    response.headers.update(headers)
    return response


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if isinstance(exc, NotFoundException):
        message = f"nothing at {request.url.path}"
    elif isinstance(exc, ValidationException):
        message = f"the request was not understood: {exc.detail}"
        if exc.extra:
            message += " (" + "; ".join(
                f"{e.get('key', '')}: {e.get('message', '')}" for e in exc.extra if isinstance(e, dict)) + ")"
    else:
        message = str(exc.detail)
    code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(status, "error")
    if status == 413:
        message = "the request body is larger than this appliance accepts (setting max_diff_bytes)"
    if wants_json(request):
        return Response({"error": code, "message": message}, status_code=status, media_type=MediaType.JSON,
                        headers=exc.headers or {})
    return _page(request, status, code.replace("_", " ").capitalize(), message)


def unexpected_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    incident = uuid.uuid4().hex[:12]
    log.error("incident %s: %s %s failed", incident, request.method, request.url.path, exc_info=exc)
    message = f"an unexpected error occurred; quote incident {incident} to your administrator"
    if wants_json(request):
        return Response({"error": "internal_error", "message": message, "incident": incident},
                        status_code=HTTP_500_INTERNAL_SERVER_ERROR, media_type=MediaType.JSON)
    return _page(request, 500, "Unexpected error", message, {"incident": incident})


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApplianceError: appliance_error_handler,
    HTTPException: http_exception_handler,
    Exception: unexpected_error_handler,
}
