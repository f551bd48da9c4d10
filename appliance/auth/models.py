"""Accounts, sessions and the principal a request acts as."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.audit import Actor
from appliance.rbac import Permission, has_permission

__all__ = ["Principal", "User"]


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    role: str
    is_active: bool

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> User:
        return cls(id=row["id"], username=row["username"], display_name=row["display_name"], role=row["role"],
                   is_active=bool(row["is_active"]))


@dataclass(frozen=True)
class Principal:
    """Who a request acts as, and how they proved it (a session cookie or an API token)."""

    user: User
    via: str  # session or token
    address: str | None
    session_id: int | None = None
    csrf_token: str | None = None
    token_id: int | None = None

    def can(self, permission: Permission) -> bool:
        return self.user.is_active and has_permission(self.user.role, permission)

    @property
    def actor(self) -> Actor:
        return Actor.user(self.user.id, self.user.username, self.address, via_token=self.via == "token",
                          display_name=self.user.display_name)
