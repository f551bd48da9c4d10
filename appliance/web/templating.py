"""Jinja filters the dashboard templates use."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from appliance import clock
from appliance.rbac import Permission

__all__ = ["register_filters", "render"]


def _when(value: str | None) -> str:
    if not value:
        return ""
    return clock.from_iso(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def _anchor(path: str, line: Any = None) -> str:
    digest = hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()[:10]
    return f"f{digest}" + (f"-{line}" if line is not None else "")


def _duration(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    seconds = (clock.from_iso(end) - clock.from_iso(start)).total_seconds()
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


_ENV: Environment | None = None


def render(template: str, **context: Any) -> str:
    """Render a template outside a request (exports, the CLI)."""
    global _ENV
    if _ENV is None:
        _ENV = make_environment()
    return _ENV.get_template(template).render(**context)


def make_environment() -> Environment:
    env = Environment(loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    register_filters(env)
    return env


def _can(principal: Any, permission: str) -> bool:
    return principal is not None and principal.can(Permission(permission))


def register_filters(env: Environment) -> None:
    env.globals["can"] = _can
    env.filters["when"] = _when
    env.filters["anchor"] = _anchor
    env.globals["duration"] = _duration
