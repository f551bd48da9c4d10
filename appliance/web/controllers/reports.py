"""Compliance reports (API, dashboard page, exports) and finding triage."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import MediaType, Request, Response, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from appliance.errors import ApplianceError, ValidationError
from appliance.rbac import Permission
from appliance.review.reports import compliance_report, parse_period, record_export, report_csv, report_json
from appliance.review.triage import STATUSES, set_finding_status
from appliance.tasks.services import Services
from appliance.web.controllers.common import blocking, page_context, principal_of, safe_next, services_of
from appliance.web.security import requires
from appliance.web.templating import render

__all__ = ["api_compliance_report", "api_finding_status", "finding_status_form", "reports_page"]

_FORMATS = ("json", "csv", "html")


def _report(services: Services, repository: str | None, start: str | None, end: str | None) -> dict[str, Any]:
    first, last = parse_period(start, end)
    return compliance_report(services.db, repository=repository or None, start=first, end=last)


def _export(request: Request[Any, Any, Any], report: dict[str, Any], fmt: str) -> Response[Any]:
    scope = "".join(c if c.isalnum() or c in "-_." else "_" for c in report["repository"]).strip("_") or "all"
    name = f"compliance-{scope}-{report['period']['from']}-{report['period']['to']}"
    if fmt == "json":
        return Response(report_json(report), media_type=MediaType.JSON,
                        headers={"content-disposition": f'attachment; filename="{name}.json"'})
    if fmt == "csv":
        return Response(report_csv(report), media_type="text/csv",
                        headers={"content-disposition": f'attachment; filename="{name}.csv"'})
    html = render("reports/print.html", report=report, statuses=STATUSES)
    # A self-contained printable page (its stylesheet inline), to file with an assessment.
    return Response(html, media_type=MediaType.HTML, headers={
        "content-disposition": f'attachment; filename="{name}.html"',
        "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'"})


@get("/api/v1/admin/compliance-report", guards=[requires(Permission.REPORTS_READ)], tags=["reports"],
     summary="Compliance report: findings by framework control, status counts and trend")
async def api_compliance_report(
    request: Request[Any, Any, Any],
    repository: Annotated[str | None, QueryParameter(description="one repository (default: all)")] = None,
    start: Annotated[str | None, QueryParameter(name="from", description="YYYY-MM-DD (default: 90 days ago)")] = None,
    end: Annotated[str | None, QueryParameter(name="to", description="YYYY-MM-DD (default: today)")] = None,
    fmt: Annotated[str, QueryParameter(name="format", description="json, csv or html")] = "json",
) -> Response[Any]:
    """The report as JSON, CSV or a printable HTML page; every export is audited."""
    if fmt not in _FORMATS:
        raise ValidationError(f"format must be one of {', '.join(_FORMATS)}, got {fmt!r}")
    services = services_of(request)
    report = await blocking(_report, services, repository, start, end)
    await blocking(record_export, services.db, report, fmt=fmt, actor=principal_of(request).actor)
    return _export(request, report, fmt)


@get("/reports/compliance", guards=[requires(Permission.REPORTS_READ)], include_in_schema=False)
async def reports_page(
    request: Request[Any, Any, Any],
    repository: Annotated[str | None, QueryParameter()] = None,
    start: Annotated[str | None, QueryParameter(name="from")] = None,
    end: Annotated[str | None, QueryParameter(name="to")] = None,
) -> Template:
    services = services_of(request)
    error = None
    report = None
    try:
        report = await blocking(_report, services, repository, start, end)
    except ApplianceError as exc:
        error = exc.message
    return Template(template_name="reports/compliance.html", status_code=422 if error else 200,
                    context=page_context(request, report=report, error=error, statuses=STATUSES,
                                         repository=repository or "", start=start or "", end=end or ""))


@post("/api/v1/findings/{finding_id:int}/status", guards=[requires(Permission.FINDINGS_TRIAGE)],
      tags=["reviews"], status_code=200, summary="Decide about a finding (fixed, accepted risk, false positive)")
async def api_finding_status(request: Request[Any, Any, Any], finding_id: FromPath[int]) -> dict[str, Any]:
    """JSON ``{"status": "accepted_risk", "reason": "..."}``; statuses: open, fixed, accepted_risk,
    false_positive (the last two need a reason). The decision applies to this finding in its repository,
    in this and later reviews."""
    body = await request.json()
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        raise ValidationError('send {"status": "...", "reason": "..."}')
    principal = principal_of(request)
    return await blocking(set_finding_status, services_of(request).db, finding_id, body["status"],
                          actor=principal.actor, reason=str(body.get("reason") or ""),
                          may_accept=principal.can(Permission.FINDINGS_ACCEPT))


@post("/findings/{finding_id:int}/status", guards=[requires(Permission.FINDINGS_TRIAGE)], include_in_schema=False)
async def finding_status_form(request: Request[Any, Any, Any], finding_id: FromPath[int]) -> Response[Any]:
    form = await request.form()
    back = safe_next(str(form.get("next") or ""), default="/reviews")
    try:
        principal = principal_of(request)
        await blocking(set_finding_status, services_of(request).db, finding_id, str(form.get("status") or ""),
                       actor=principal.actor, reason=str(form.get("reason") or ""),
                       may_accept=principal.can(Permission.FINDINGS_ACCEPT))
    except ApplianceError as exc:
        return Template(template_name="error.html", status_code=exc.status_code, context=page_context(
            request, title="Decision not recorded", message=exc.message, status=exc.status_code))
    return Redirect(path=back, status_code=303)
