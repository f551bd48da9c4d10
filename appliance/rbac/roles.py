"""Roles and the permissions each grants. Custom roles and repository scopes arrive with the RBAC issue;
these built-in roles follow the product's vocabulary (admin, developer, reviewer, viewer, auditor)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ROLES", "Permission", "has_permission", "role_names"]


class Permission(StrEnum):
    REVIEWS_READ = "reviews.read"
    REVIEWS_CREATE = "reviews.create"
    MODELS_READ = "models.read"
    MODELS_MANAGE = "models.manage"
    TOKENS_OWN = "tokens.own"
    USERS_MANAGE = "users.manage"
    AUDIT_READ = "audit.read"
    PACKS_MANAGE = "packs.manage"
    FINDINGS_TRIAGE = "findings.triage"
    FINDINGS_ACCEPT = "findings.accept"
    REPORTS_READ = "reports.read"


ROLES: dict[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    # Separation of duties: a developer may mark findings fixed (or reopen them); accepting a risk or
    # calling a finding a false positive is a reviewer's (or admin's) decision.
    "reviewer": frozenset({Permission.REVIEWS_READ, Permission.REVIEWS_CREATE, Permission.MODELS_READ,
                           Permission.TOKENS_OWN, Permission.FINDINGS_TRIAGE, Permission.FINDINGS_ACCEPT,
                           Permission.REPORTS_READ}),
    "developer": frozenset({Permission.REVIEWS_READ, Permission.REVIEWS_CREATE, Permission.MODELS_READ,
                            Permission.TOKENS_OWN, Permission.FINDINGS_TRIAGE}),
    "viewer": frozenset({Permission.REVIEWS_READ, Permission.MODELS_READ}),
    "auditor": frozenset({Permission.REVIEWS_READ, Permission.MODELS_READ, Permission.AUDIT_READ,
                          Permission.REPORTS_READ}),
}


def role_names() -> list[str]:
    return list(ROLES)


def has_permission(role: str, permission: Permission) -> bool:
    return permission in ROLES.get(role, frozenset())
