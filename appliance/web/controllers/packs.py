"""Rule packs on the web: import an uploaded signed pack, choose packs per repository (API and the admin
page), and see the trust root."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from litestar import Request, Response, get, post, put
from litestar.datastructures import UploadFile
from litestar.response import Redirect, Template

from appliance import clock
from appliance.auth import Principal
from appliance.errors import ApplianceError, PackError, ValidationError
from appliance.packs import TEMPLATES, current_root, import_pack, list_selections, set_selection
from appliance.packs import repo as packs_repo
from appliance.rbac import Permission
from appliance.tasks.services import Services
from appliance.web.controllers.common import blocking, page_context, principal_of, services_of
from appliance.web.security import requires

__all__ = ["admin_packs_page", "admin_packs_select", "admin_packs_upload", "api_import_pack", "api_selections",
           "api_set_selection"]

# A pack is at most 32 MB of files (manifest limits) plus tar headers.
_UPLOAD_LIMIT = 40 << 20


def _import_upload(services: Services, principal: Principal, data: bytes, filename: str, *,
                   allow_downgrade: bool, reason: str | None) -> dict[str, Any]:
    if not data:
        raise ValidationError("choose a signed pack (.tar) to upload")
    uploads = services.settings.data_dir / "packs" / ".uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    safe = "".join(c for c in Path(filename or "pack.tar").name if c.isalnum() or c in "._-")[:80] or "pack.tar"
    path = uploads / f"{secrets.token_hex(6)}-{safe}"
    try:
        path.write_bytes(data)
        result = import_pack(services.db, services.settings, path, actor=principal.actor,
                             allow_downgrade=allow_downgrade, reason=reason)
    finally:
        path.unlink(missing_ok=True)
    return {"pack": result.pack_id, "version": result.version, "display_version": result.display_version,
            "outcome": result.outcome, "signers": list(result.signers)}


@post("/api/v1/packs", guards=[requires(Permission.PACKS_MANAGE)], tags=["packs"], status_code=200,
      summary="Import a signed pack (.tar body)", request_max_body_size=_UPLOAD_LIMIT)
async def api_import_pack(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Verify and activate a signed pack sent as the raw ``.tar`` body (``Content-Type: application/x-tar``).

    ``?allow_downgrade=true&reason=...`` accepts a lower version than the active one. A refused pack answers
    422 with the reason; the active packs are unchanged.
    """
    services = services_of(request)
    body = await request.body()
    params = request.query_params
    return await blocking(_import_upload, services, principal_of(request), body, "upload.tar",
                          allow_downgrade=params.get("allow_downgrade", "").lower() in ("1", "true", "yes"),
                          reason=params.get("reason"))


@get("/api/v1/packs/selections", guards=[requires(Permission.REVIEWS_READ)], tags=["packs"],
     summary="Pack selections per repository, and the templates")
async def api_selections(request: Request[Any, Any, Any]) -> dict[str, Any]:
    rows = await blocking(list_selections, services_of(request).db)
    return {"selections": rows, "templates": TEMPLATES}


@put("/api/v1/packs/selections", guards=[requires(Permission.PACKS_MANAGE)], tags=["packs"],
     summary="Choose the packs for a repository (or the default)")
async def api_set_selection(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """JSON ``{"repository": "group/project" or null, "template": "financial"}`` or
    ``{"repository": ..., "packs": ["pci-dss", ...], "strict": false}``."""
    body = await request.json()
    if not isinstance(body, dict):
        raise ValidationError('send a JSON object such as {"repository": null, "template": "financial"}')
    packs = body.get("packs")
    if packs is not None and (not isinstance(packs, list) or not all(isinstance(p, str) for p in packs)):
        raise ValidationError('"packs" must be a list of pack ids')
    if body.get("strict") is not None and not isinstance(body["strict"], bool):
        raise ValidationError('"strict" must be true or false')
    for key in ("repository", "template"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise ValidationError(f'"{key}" must be text')
    return await blocking(set_selection, services_of(request).db, repository=body.get("repository") or None,
                          actor=principal_of(request).actor, template=body.get("template"), packs=packs,
                          strict=body.get("strict"))


def _page_data(services: Services) -> dict[str, Any]:
    with services.db.read() as tx:
        packs = packs_repo.active_packs(tx)
    try:
        root = current_root(services.db, services.settings)
        trust = {"version": root.version, "environment": root.environment, "expires": clock.iso(root.expires),
                 "roles": {name: {"threshold": role.threshold, "keys": sorted(k[:16] for k in role.keyids)}
                           for name, role in root.roles.items()}}
    except PackError as exc:
        trust = {"error": exc.message}
    return {"packs": packs, "trust": trust, "selections": list_selections(services.db), "templates": TEMPLATES,
            "refused": [e.message for e in services.catalog.ruleset.refused]}


@get("/admin/packs", guards=[requires(Permission.PACKS_MANAGE)], include_in_schema=False)
async def admin_packs_page(request: Request[Any, Any, Any]) -> Template:
    data = await blocking(_page_data, services_of(request))
    return Template(template_name="admin/packs.html", context=page_context(request, **data))


@post("/admin/packs/import", guards=[requires(Permission.PACKS_MANAGE)], include_in_schema=False,
      request_max_body_size=_UPLOAD_LIMIT)
async def admin_packs_upload(request: Request[Any, Any, Any]) -> Response[Any]:
    services = services_of(request)
    form = await request.form()
    upload = form.get("file")
    data = await upload.read() if isinstance(upload, UploadFile) else b""
    name = upload.filename if isinstance(upload, UploadFile) else ""
    try:
        result = await blocking(_import_upload, services, principal_of(request), data, name,
                                allow_downgrade=form.get("allow_downgrade") == "on",
                                reason=str(form.get("reason") or ""))
        message, status = (f"{result['pack']} {result['display_version']}: {result['outcome']}", 200)
        error = None
    except ApplianceError as exc:
        message, status, error = None, exc.status_code, exc.message
    page = await blocking(_page_data, services)
    return Template(template_name="admin/packs.html", status_code=status,
                    context=page_context(request, message=message, error=error, **page))


@post("/admin/packs/select", guards=[requires(Permission.PACKS_MANAGE)], include_in_schema=False)
async def admin_packs_select(request: Request[Any, Any, Any]) -> Response[Any]:
    services = services_of(request)
    form = await request.form()
    template = str(form.get("template") or "") or None
    packs = [str(p) for p in form.getall("packs")] if not template else None
    try:
        await blocking(set_selection, services.db, repository=str(form.get("repository") or "").strip() or None,
                       actor=principal_of(request).actor, template=template, packs=packs,
                       # An unticked box keeps a template's own setting; ticked always means strict.
                       strict=True if form.get("strict") == "on" else (None if template else False))
    except ApplianceError as exc:
        page = await blocking(_page_data, services)
        return Template(template_name="admin/packs.html", status_code=exc.status_code,
                        context=page_context(request, error=exc.message, **page))
    return Redirect(path="/admin/packs", status_code=303)
