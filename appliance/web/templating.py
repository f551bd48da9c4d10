"""Jinja filters the dashboard templates use."""

from __future__ import annotations

import hashlib
from typing import Any

from jinja2 import Environment

from appliance import clock

__all__ = ["register_filters"]


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


def register_filters(env: Environment) -> None:
    env.filters["when"] = _when
    env.filters["anchor"] = _anchor
    env.globals["duration"] = _duration
