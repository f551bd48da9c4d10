"""The offline manual at /docs (rendered from offline-docs/*.md) and the API explorer at /api/docs
(Swagger UI from the swagger-ui-bundle wheel: nothing is loaded from another origin)."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import File, Template
from markdown_it import MarkdownIt
from markupsafe import Markup

from appliance.resources import resource_root
from appliance.web.controllers.common import blocking, page_context

__all__ = ["api_explorer", "docs_index", "docs_page", "swagger_asset"]

_PAGE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_LINK = re.compile(r'href="([a-z0-9][a-z0-9-]*)\.md(#[^"]*)?"')
_SWAGGER_FILES = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript"}


def docs_dir() -> Path:
    return resource_root() / "offline-docs"


@functools.cache
def _markdown() -> MarkdownIt:
    # No raw HTML: a page can hold nothing a Markdown source did not spell out.
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


@functools.cache
def render_page(name: str) -> tuple[str, Markup]:
    path = docs_dir() / f"{name}.md"
    text = path.read_text(encoding="utf-8")
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), name)
    html = _LINK.sub(lambda m: f'href="/docs/{m.group(1)}{m.group(2) or ""}"', _markdown().render(text))
    return title, Markup(html)  # noqa: S704 - rendered by markdown-it with raw HTML disabled


def pages() -> list[tuple[str, str]]:
    found = []
    for path in sorted(docs_dir().glob("*.md")):
        if _PAGE.match(path.stem):
            found.append((path.stem, render_page(path.stem)[0]))
    return found


@get("/docs", include_in_schema=False)
async def docs_index(request: Request[Any, Any, Any]) -> Template:
    return await blocking(_page, request, "index")


def _page(request: Request[Any, Any, Any], name: str) -> Template:
    if not _PAGE.match(name) or not (docs_dir() / f"{name}.md").is_file():
        raise NotFoundException(f"no manual page {name!r}")
    title, html = render_page(name)
    return Template(template_name="docs/page.html", context=page_context(
        request, title=title, body=html, pages=pages(), current=name))


@get("/docs/{name:str}", include_in_schema=False)
async def docs_page(request: Request[Any, Any, Any], name: FromPath[str]) -> Template:
    return await blocking(_page, request, name)


@get("/api/docs", include_in_schema=False)
async def api_explorer(request: Request[Any, Any, Any]) -> Template:
    return Template(template_name="docs/api.html", context=page_context(request))


@get("/static/vendor/swagger-ui/{name:str}", include_in_schema=False)
async def swagger_asset(name: FromPath[str]) -> Response[Any]:
    if name not in _SWAGGER_FILES:
        raise NotFoundException(f"no asset {name!r}")
    return File(path=Path(swagger_ui_bundle.swagger_ui_path) / name, media_type=_SWAGGER_FILES[name],
                headers={"cache-control": "public, max-age=86400"})
