"""``create_app(settings)``: the Litestar application of the appliance."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from appliance import __version__
from appliance.config import Settings
from appliance.tasks.services import Services
from appliance.web.controllers import api, audit, auth, dashboard, docs, health, packs, reports
from appliance.web.errors import EXCEPTION_HANDLERS
from appliance.web.security import csrf_guard, principal_middleware, security_headers_middleware
from appliance.web.templating import make_environment

__all__ = ["create_app"]

HERE = Path(__file__).resolve().parent
log = logging.getLogger(__name__)


def _templates() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(make_environment()))


def create_app(settings: Settings, services: Services | None = None, *, start_workers: bool = True) -> Litestar:
    """Build the appliance's web application.

    Args:
        settings: the effective settings.
        services: shared process services; built from ``settings`` when omitted (and then owned and
            closed by the app).
        start_workers: run the queue consumer inside this process (``settings.workers`` threads).
    """
    owned = services is None
    svc = services or Services(settings)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(lambda: svc.start(workers=settings.workers if start_workers else 0))
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(svc.stop)
            if owned:
                svc.close()

    return Litestar(
        route_handlers=[
            health.healthz, health.readyz,
            auth.login_form, auth.login_submit, auth.logout, auth.setup_form, auth.setup_submit,
            dashboard.home, dashboard.reviews_page, dashboard.new_review_form, dashboard.new_review_submit,
            dashboard.review_page, dashboard.tokens_page, dashboard.token_create, dashboard.token_revoke,
            api.create_review, api.list_review_summaries, api.get_review, api.get_review_sarif,
            api.get_review_markdown, api.list_model_entries, api.list_active_packs,
            audit.audit_list, audit.audit_key, audit.audit_event, audit.audit_export_get, audit.audit_export_post,
            audit.audit_verify, audit.audit_verify_post, audit.audit_page, audit.audit_verify_page,
            audit.audit_event_page,
            docs.docs_index, docs.docs_page, docs.api_explorer, docs.swagger_asset,
            packs.api_import_pack, packs.api_selections, packs.api_set_selection, packs.admin_packs_page,
            packs.admin_packs_upload, packs.admin_packs_select,
            reports.api_compliance_report, reports.reports_page, reports.api_finding_status,
            reports.finding_status_form,
            create_static_files_router(path="/static", directories=[HERE / "static"], include_in_schema=False,
                                       send_as_attachment=False),
        ],
        middleware=[security_headers_middleware, principal_middleware],
        guards=[csrf_guard],
        exception_handlers=EXCEPTION_HANDLERS,
        template_config=_templates(),
        openapi_config=OpenAPIConfig(
            title="Cortex Code Appliance API", version=__version__, path="/api/schema",
            render_plugins=[JsonRenderPlugin()],
            components=Components(security_schemes={"apiToken": SecurityScheme(
                type="http", scheme="bearer", description="An API token (cca_…) from the dashboard or "
                "`cortex tokens create`.")}),
            security=[{"apiToken": []}],
            description="Offline code review: submit diffs, read findings as JSON, SARIF 2.1.0 or Markdown. "
                        "Authenticate with 'Authorization: Bearer <API token>' or a dashboard session."),
        state=State({"services": svc, "settings": settings}),
        lifespan=[lifespan],
        # JSON-wrapped diffs grow with escaping; the diff itself is held to max_diff_bytes by intake.
        request_max_body_size=settings.max_diff_bytes * 2 + 65536,
        debug=False,
    )
