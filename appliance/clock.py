"""Wall-clock time in one place, always timezone-aware UTC, and its one text form in the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["from_iso", "iso", "now", "now_iso"]


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a ``Z``: sorts as text the same as in time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_iso(offset: timedelta | None = None) -> str:
    return iso(now() + offset if offset else now())


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
