"""The audit log for auditors (permission audit.read): search, event detail, export and verification, as
JSON under /api/v1/audit-logs and as dashboard pages under /audit. Read-only: no route changes an event."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

from litestar import Request, get, post
from litestar.background_tasks import BackgroundTask
from litestar.params import FromPath
from litestar.response import File, Template

from appliance.audit.checkpoints import Checkpoint, load_key
from appliance.audit.log import EventFilter, get_event, search_events
from appliance.audit.service import export_log, verify_log
from appliance.errors import ValidationError
from appliance.rbac import Permission
from appliance.web.controllers.common import blocking, page_context, principal_of, services_of
from appliance.web.security import requires

__all__ = ["audit_event", "audit_event_page", "audit_export_get", "audit_export_post", "audit_key",
           "audit_list", "audit_page", "audit_verify", "audit_verify_page", "audit_verify_post"]

_READ = [requires(Permission.AUDIT_READ)]
_MEDIA = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


def _filter(params: dict[str, Any]) -> EventFilter:
    def text(name: str) -> str:
        value = params.get(name)
        return str(value).strip()[:200] if value is not None else ""

    return EventFilter(text=text("q"), actor=text("actor"), action=text("action"), outcome=text("outcome"),
                       target=text("target"), since=text("since"), until=text("until"))


def _int(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError as exc:
        raise ValidationError(f"{name} must be a whole number, got {value!r}") from exc


@get("/api/v1/audit-logs", guards=_READ, tags=["audit"], summary="Search the audit log, newest first")
async def audit_list(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Filters (all optional): ``q`` (text in actor, action, target, address or details), ``actor`` (username
    or id), ``action`` (a tag, or a prefix such as ``auth`` or ``auth:session``), ``outcome``, ``target``,
    ``since`` and ``until`` (ISO date or time). Pages by seq: ``before`` (older page) or ``after`` (newer),
    ``limit`` up to 500."""
    params = dict(request.query_params)
    page = await blocking(search_events, services_of(request).db, _filter(params), before=_int(params, "before"),
                          after=_int(params, "after"), limit=_int(params, "limit") or 50)
    return page


@get("/api/v1/audit-logs/{seq:int}", guards=_READ, tags=["audit"],
     summary="One audit event with its hash and the nearest checkpoints")
async def audit_event(request: Request[Any, Any, Any], seq: FromPath[int]) -> dict[str, Any]:
    return await blocking(get_event, services_of(request).db, seq)


@get("/api/v1/audit-logs/key", guards=_READ, tags=["audit"], summary="The appliance's audit public key")
async def audit_key(request: Request[Any, Any, Any]) -> dict[str, Any]:
    services = services_of(request)
    key = await blocking(load_key, services.db, services.settings.data_dir)
    return {"appliance_id": key.appliance_id, "key_id": key.key_id, "public_key": key.public.pem()}


async def _export(request: Request[Any, Any, Any], params: dict[str, Any]) -> File:
    services = services_of(request)
    principal = principal_of(request)
    fmt = str(params.get("format") or "jsonl")
    if fmt not in _MEDIA:
        raise ValidationError(f"format must be jsonl or csv, got {fmt!r}")
    exports = services.settings.data_dir / "audit" / "tmp"
    exports.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=exports, prefix="export-", suffix=f".{fmt}", delete=False)  # noqa: SIM115
    path = Path(handle.name)

    def write() -> Any:
        with handle:
            return export_log(services.db, services.settings.data_dir, handle, actor=principal.actor, fmt=fmt,
                              first=_int(params, "from_seq"), last=_int(params, "to_seq"),
                              since=str(params.get("since") or ""), until=str(params.get("until") or ""), via="api")

    try:
        info = await blocking(write)
    except BaseException:
        path.unlink(missing_ok=True)
        raise

    def remove() -> None:
        with contextlib.suppress(OSError):
            path.unlink()

    return File(path=path, filename=f"audit-{info.first_seq}-{info.last_seq}.{fmt}", media_type=_MEDIA[fmt],
                background=BackgroundTask(remove), headers={"x-audit-export-sha256": info.sha256})


@get("/api/v1/audit-logs/export", guards=_READ, tags=["audit"], summary="Export a range (JSON Lines or CSV)")
async def audit_export_get(request: Request[Any, Any, Any]) -> File:
    """A range of the log that verifies on its own: ``format`` (jsonl or csv), ``from_seq``/``to_seq`` or
    ``since``/``until``. Every export is recorded as ``audit:log:exported``."""
    return await _export(request, dict(request.query_params))


@post("/api/v1/audit-logs/export", guards=_READ, tags=["audit"], summary="Export a range (JSON body)",
      status_code=200)
async def audit_export_post(request: Request[Any, Any, Any]) -> File:
    """The same as the GET, with the parameters in a JSON object."""
    try:
        body = await request.json()
    except ValueError as exc:
        raise ValidationError("the body must be a JSON object") from exc
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object")
    return await _export(request, body)


async def _verify(request: Request[Any, Any, Any], texts: list[str]) -> dict[str, Any]:
    services = services_of(request)
    checkpoints = [Checkpoint.parse(t, origin=f"checkpoint {n + 1}") for n, t in enumerate(texts)]
    report = await blocking(verify_log, services.db, services.settings.data_dir, actor=principal_of(request).actor,
                            checkpoints=checkpoints, via="api")
    return {**report.to_dict(), "summary": report.summary()}


@get(["/api/v1/audit-logs/verify", "/api/v1/audit/verify"], guards=_READ, tags=["audit"],
     summary="Verify the chain and its checkpoints")
async def audit_verify(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """OK with the count and head, or the first bad seq and what is wrong. Recorded as ``audit:log:verified``."""
    return await _verify(request, [])


@post(["/api/v1/audit-logs/verify", "/api/v1/audit/verify"], guards=_READ, tags=["audit"], status_code=200,
      summary="Verify against checkpoints the auditor kept")
async def audit_verify_post(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Body: ``{"checkpoints": ["<checkpoint text>", …]}``, the files an auditor kept off the box."""
    body = await request.json()
    texts = body.get("checkpoints", []) if isinstance(body, dict) else None
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ValidationError('the body must be {"checkpoints": ["<checkpoint text>", …]}')
    return await _verify(request, texts)


# --- dashboard -------------------------------------------------------------------------------------------


@get("/audit", guards=_READ, include_in_schema=False)
async def audit_page(request: Request[Any, Any, Any]) -> Template:
    params = dict(request.query_params)
    flt = _filter(params)
    services = services_of(request)
    error = None
    try:
        page = await blocking(search_events, services.db, flt, before=_int(params, "before"),
                              after=_int(params, "after"), limit=50)
    except ValidationError as exc:
        error, page = exc.message, {"events": [], "head": 0, "next_before": None, "prev_after": None}
    return Template(template_name="audit/list.html", context=page_context(
        request, page=page, flt=flt, error=error,
        query={k: v for k, v in vars(flt).items() if v}))


@get("/audit/verify", guards=_READ, include_in_schema=False)
async def audit_verify_page(request: Request[Any, Any, Any]) -> Template:
    report = await _verify(request, [])
    return Template(template_name="audit/verify.html", context=page_context(request, report=report))


@get("/audit/{seq:int}", guards=_READ, include_in_schema=False)
async def audit_event_page(request: Request[Any, Any, Any], seq: FromPath[int]) -> Template:
    event = await blocking(get_event, services_of(request).db, seq)
    return Template(template_name="audit/detail.html", context=page_context(request, event=event))
