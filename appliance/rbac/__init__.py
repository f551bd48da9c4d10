"""Roles and permissions."""

from appliance.rbac.roles import ROLES, Permission, has_permission, role_names

__all__ = ["ROLES", "Permission", "has_permission", "role_names"]
