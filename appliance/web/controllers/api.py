"""The JSON API under /api/v1: reviews, their SARIF and Markdown renderings, models and packs."""

from __future__ import annotations

import json
from typing import Annotated, Any

from litestar import MediaType, Request, Response, get, post
from litestar.params import FromPath, QueryParameter

from appliance.errors import ValidationError
from appliance.inference import list_models
from appliance.rbac import Permission
from appliance.review import service as reviews
from appliance.review.formats import review_document, review_markdown, review_sarif
from appliance.review.formats.jsondoc import review_summary
from appliance.web.controllers.common import blocking, note_review_access, principal_of, services_of
from appliance.web.security import requires

__all__ = ["create_review", "get_review", "get_review_markdown", "get_review_sarif", "list_active_packs",
           "list_model_entries", "list_review_summaries"]

_RAW_TYPES = frozenset({"text/x-diff", "text/x-patch", "text/plain", "application/octet-stream", "text/x-diff-patch"})


def _flag(value: Any, default: bool = True) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValidationError(f"'model' must be true or false, got {value!r}")


@post("/api/v1/reviews", guards=[requires(Permission.REVIEWS_CREATE)], status_code=202, tags=["reviews"],
      summary="Submit a diff for review")
async def create_review(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Accept a unified diff (``git diff`` / ``git format-patch``) for review.

    Send either the raw diff with ``Content-Type: text/x-diff`` (metadata in the query string: ``title``,
    ``repository``, ``base_ref``, ``head_ref``, ``model=false`` for rules only), or JSON
    ``{"diff": "...", "title": ..., "repository": ..., "base_ref": ..., "head_ref": ..., "model": true}``.
    Answers 202 with the review id; poll ``GET /api/v1/reviews/{id}`` until ``status`` is done or failed.
    """
    services = services_of(request)
    principal = principal_of(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    meta: dict[str, Any] = dict(request.query_params)
    if content_type == "application/json":
        try:
            payload = json.loads(body or b"null")
        except ValueError as exc:
            raise ValidationError(f"the JSON body does not parse: {exc}") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("diff"), str):
            raise ValidationError('the JSON body must be an object with a "diff" string')
        # A lone surrogate (\ud800) is valid JSON but not Unicode text: keep it as bytes that are not
        # UTF-8, so intake decodes them with replacement and flags the review, as for any other bad byte.
        data = payload["diff"].encode("utf-8", errors="surrogatepass")
        meta.update({k: v for k, v in payload.items() if k != "diff"})
    elif content_type in _RAW_TYPES or not content_type:
        data = body
    else:
        raise ValidationError(f"unsupported content type {content_type!r}: send text/x-diff or application/json")
    for key in ("title", "repository", "base_ref", "head_ref"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise ValidationError(f"{key!r} must be text")
    use_model = _flag(meta.get("model"))

    def accept() -> reviews.Accepted:
        accepted = reviews.submit_review(
            services.db, services.settings, data, actor=principal.actor, source="api",
            title=meta.get("title") or "", repository=meta.get("repository") or "",
            base_ref=meta.get("base_ref"), head_ref=meta.get("head_ref"), use_model=use_model)
        services.queue.enqueue(accepted.job_id)
        return accepted

    accepted = await blocking(accept)
    base = services.settings.base_url
    location = f"/api/v1/reviews/{accepted.review_id}"
    return Response({"id": accepted.review_id, "status": "queued", "links": {
        "self": f"{base}{location}", "sarif": f"{base}{location}/sarif", "markdown": f"{base}{location}/markdown",
        "dashboard": f"{base}/reviews/{accepted.review_id}"}}, status_code=202, headers={"location": location})


@get("/api/v1/reviews", guards=[requires(Permission.REVIEWS_READ)], tags=["reviews"],
     summary="List reviews, newest first")
async def list_review_summaries(
    request: Request[Any, Any, Any],
    limit: Annotated[int, QueryParameter(ge=1, le=200, description="page size")] = 50,
    before: Annotated[int | None, QueryParameter(description="only reviews with a smaller id (pagination)")] = None,
    status: Annotated[str | None, QueryParameter(description="queued, running, done or failed")] = None,
    repository: Annotated[str | None, QueryParameter(description="only this repository")] = None,
) -> dict[str, Any]:
    services = services_of(request)
    if status is not None and status not in ("queued", "running", "done", "failed"):
        raise ValidationError(f"status must be queued, running, done or failed, got {status!r}")
    rows = await blocking(reviews.list_reviews, services.db, limit=limit, before=before, status=status,
                          repository=repository)
    items = [review_summary(r, base_url=services.settings.base_url) for r in rows]
    return {"reviews": items, "next_before": rows[-1]["id"] if len(rows) == limit else None}


@get("/api/v1/reviews/{review_id:int}", guards=[requires(Permission.REVIEWS_READ)],
     tags=["reviews"], summary="A review with its files, findings and provenance")
async def get_review(request: Request[Any, Any, Any], review_id: FromPath[int]) -> dict[str, Any]:
    services = services_of(request)
    review = await blocking(reviews.get_review, services.db, review_id)
    await note_review_access(request, review_id, via="api")
    return review_document(review, base_url=services.settings.base_url)


@get("/api/v1/reviews/{review_id:int}/sarif", guards=[requires(Permission.REVIEWS_READ)],
     tags=["reviews"], summary="The review as SARIF 2.1.0", media_type="application/sarif+json")
async def get_review_sarif(request: Request[Any, Any, Any], review_id: FromPath[int]) -> Response[dict[str, Any]]:
    services = services_of(request)
    review = await blocking(reviews.get_review, services.db, review_id)
    doc = review_sarif(review, base_url=services.settings.base_url)
    await note_review_access(request, review_id, via="api", exported_as="sarif")
    return Response(doc, media_type="application/sarif+json",
                    headers={"content-disposition": f'attachment; filename="review-{review_id}.sarif"'})


@get("/api/v1/reviews/{review_id:int}/markdown", guards=[requires(Permission.REVIEWS_READ)],
     tags=["reviews"], summary="The review as a Markdown merge-request comment", media_type=MediaType.TEXT)
async def get_review_markdown(request: Request[Any, Any, Any], review_id: FromPath[int]) -> Response[str]:
    services = services_of(request)
    review = await blocking(reviews.get_review, services.db, review_id)
    text = review_markdown(review, base_url=services.settings.base_url)
    await note_review_access(request, review_id, via="api", exported_as="markdown")
    return Response(text, media_type="text/markdown")


@get("/api/v1/models", guards=[requires(Permission.MODELS_READ)], tags=["models"],
     summary="Registered models and the active one")
async def list_model_entries(request: Request[Any, Any, Any]) -> dict[str, Any]:
    services = services_of(request)
    entries = await blocking(list_models, services.db, services.settings)
    return {"active": services.runtime.describe(),
            "models": [{**e.to_dict(), "active": e.id == services.settings.model} for e in entries]}


@get("/api/v1/packs", guards=[requires(Permission.REVIEWS_READ)], tags=["packs"],
     summary="Active rule packs and refused ones")
async def list_active_packs(request: Request[Any, Any, Any]) -> dict[str, Any]:
    ruleset = await blocking(lambda: services_of(request).catalog.ruleset)
    return {"packs": [{**p.provenance(), "name": p.name, "description": p.description} for p in ruleset.packs],
            "refused": [e.to_dict() for e in ruleset.refused]}
