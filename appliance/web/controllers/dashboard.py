"""The dashboard: reviews list, submission form, review page with the diff and findings inline, tokens."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.response import Redirect, Template

from appliance.auth import create_token, list_tokens, revoke_token
from appliance.errors import ApplianceError, ValidationError
from appliance.rbac import Permission
from appliance.review import service as reviews
from appliance.review.diffparse import parse_diff
from appliance.review.models import Severity
from appliance.web.controllers.common import blocking, note_review_access, page_context, principal_of, services_of
from appliance.web.security import requires

__all__ = ["home", "new_review_form", "new_review_submit", "review_page", "reviews_page", "token_create",
           "token_revoke", "tokens_page"]

_MAX_RENDERED_LINES = 5000
_SEVERITIES = [s.value for s in Severity]
Form = URLEncodedBody[dict[str, str]]


@get("/", include_in_schema=False)
async def home() -> Redirect:
    return Redirect(path="/reviews", status_code=303)


@get("/reviews", guards=[requires(Permission.REVIEWS_READ)], include_in_schema=False)
async def reviews_page(request: Request[Any, Any, Any], before: FromQuery[int | None] = None,
                       status: FromQuery[str | None] = None, repository: FromQuery[str | None] = None) -> Template:
    services = services_of(request)
    if status not in (None, "", "queued", "running", "done", "failed"):
        status = None
    rows = await blocking(reviews.list_reviews, services.db, limit=50, before=before, status=status or None,
                          repository=repository or None)
    return Template(template_name="reviews/list.html", context=page_context(
        request, reviews=rows, status=status or "", repository=repository or "",
        next_before=rows[-1]["id"] if len(rows) == 50 else None, severities=_SEVERITIES,
        can_create=principal_of(request).can(Permission.REVIEWS_CREATE),
        refresh=any(r["status"] in ("queued", "running") for r in rows)))


@get("/reviews/new", guards=[requires(Permission.REVIEWS_CREATE)], include_in_schema=False)
async def new_review_form(request: Request[Any, Any, Any]) -> Template:
    settings = services_of(request).settings
    return Template(template_name="reviews/new.html", context=page_context(
        request, max_mb=round(settings.max_diff_bytes / (1 << 20), 1), form={}))


@post("/reviews/new", guards=[requires(Permission.REVIEWS_CREATE)], include_in_schema=False)
async def new_review_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    services = services_of(request)
    principal = principal_of(request)
    form = await request.form()
    upload = form.get("file")
    pasted = form.get("diff") or ""
    if isinstance(upload, UploadFile) and upload.filename:
        data = await upload.read()
    else:
        data = str(pasted).encode("utf-8")
    fields = {k: str(form.get(k) or "") for k in ("title", "repository")}
    use_model = form.get("model") == "on"

    def accept() -> reviews.Accepted:
        accepted = reviews.submit_review(services.db, services.settings, data, actor=principal.actor,
                                         source="dashboard", title=fields["title"],
                                         repository=fields["repository"], use_model=use_model)
        services.queue.enqueue(accepted.job_id)
        return accepted

    try:
        accepted = await blocking(accept)
    except ApplianceError as exc:
        settings = services.settings
        return Template(template_name="reviews/new.html", status_code=exc.status_code, context=page_context(
            request, max_mb=round(settings.max_diff_bytes / (1 << 20), 1), error=exc.message,
            error_line=exc.details.get("line"), form={**fields, "diff": str(pasted)[:200_000], "model": use_model}))
    return Redirect(path=f"/reviews/{accepted.review_id}", status_code=303)


def _diff_view(text: str, findings: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    at: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for finding in findings:
        at[(finding["path"], finding["line"])].append(finding)
    files = []
    rendered = 0
    truncated = False
    for index, change in enumerate(parse_diff(text).files):
        entry: dict[str, Any] = {"index": index, "path": change.path, "old_path": change.old_path,
                                 "change": change.change, "language": change.language, "skipped": change.skipped,
                                 "hunks": [], "findings": sum(1 for (p, _), v in at.items() if p == change.path
                                                              for _ in v)}
        for hunk in change.hunks:
            if rendered >= _MAX_RENDERED_LINES:
                truncated = True
                break
            lines = []
            for kind, old, new, content in hunk.lines:
                lines.append({"kind": kind, "old": old, "new": new, "text": content,
                              "findings": at.get((change.path, new), []) if kind == "+" and new else []})
            rendered += len(lines)
            entry["hunks"].append({"header": f"{hunk.range_text} {hunk.header}".strip(), "lines": lines})
        files.append(entry)
    return files, truncated


@get("/reviews/{review_id:int}", guards=[requires(Permission.REVIEWS_READ)], include_in_schema=False)
async def review_page(request: Request[Any, Any, Any], review_id: FromPath[int],
                      severity: FromQuery[str | None] = None, source: FromQuery[str | None] = None) -> Template:
    services = services_of(request)
    review = await blocking(reviews.get_review, services.db, review_id)
    await note_review_access(request, review_id, via="dashboard")
    minimum = Severity(severity).weight if severity in _SEVERITIES else 0
    chosen_source = source if source in ("rule", "model") else ""
    shown = [f for f in review["findings"]
             if Severity(f["severity"]).weight >= minimum and (not chosen_source or f["source"] == chosen_source)]
    # The page refreshes every 3 s while the review is queued or running; the diff is drawn once it is done.
    files: list[dict[str, Any]] = []
    truncated = False
    if review["status"] == "done":
        text = await blocking(reviews.review_diff_text, services.db, review_id)
        files, truncated = await blocking(_diff_view, text, shown)
    return Template(template_name="reviews/detail.html", context=page_context(
        request, review=review, findings=shown, files=files, truncated=truncated, severities=_SEVERITIES,
        severity=severity if severity in _SEVERITIES else "", source=chosen_source,
        refresh=review["status"] in ("queued", "running")))


@get("/settings/tokens", guards=[requires(Permission.TOKENS_OWN)], include_in_schema=False)
async def tokens_page(request: Request[Any, Any, Any]) -> Template:
    principal = principal_of(request)
    tokens = await blocking(list_tokens, services_of(request).db, principal.user)
    return Template(template_name="settings/tokens.html", context=page_context(request, tokens=tokens))


@post("/settings/tokens", guards=[requires(Permission.TOKENS_OWN)], include_in_schema=False)
async def token_create(request: Request[Any, Any, Any], data: Form) -> Template:
    services = services_of(request)
    principal = principal_of(request)
    days_text = (data.get("expires_days") or "").strip()
    status: int = 201
    extra: dict[str, Any] = {}
    try:
        if days_text and not days_text.isdigit():
            raise ValidationError("expiry must be a whole number of days")
        extra["created"] = await blocking(create_token, services.db, principal.user, name=data.get("name", ""),
                                          actor=principal.actor, expires_days=int(days_text) if days_text else None)
    except ApplianceError as exc:
        status, extra = exc.status_code, {"error": exc.message}
    tokens = await blocking(list_tokens, services.db, principal.user)
    return Template(template_name="settings/tokens.html", status_code=status,
                    context=page_context(request, tokens=tokens, **extra))


@post("/settings/tokens/{token_id:int}/revoke", guards=[requires(Permission.TOKENS_OWN)], include_in_schema=False)
async def token_revoke(request: Request[Any, Any, Any], token_id: FromPath[int]) -> Redirect:
    services = services_of(request)
    principal = principal_of(request)
    await blocking(revoke_token, services.db, token_id, actor=principal.actor, owner=principal.user)
    return Redirect(path="/settings/tokens", status_code=303)
