"""Local accounts, sessions, API tokens and the first-admin bootstrap (SAML and OIDC arrive later)."""

from appliance.auth.accounts import (
    create_user,
    deactivate_user,
    find_user,
    has_admin,
    issue_bootstrap_token,
    list_users,
    set_password,
    use_bootstrap_token,
)
from appliance.auth.models import Principal, User
from appliance.auth.sessions import NewSession, end_session, principal_for_session, sign_in
from appliance.auth.tokens import CreatedToken, create_token, list_tokens, principal_for_token, revoke_token

__all__ = [
    "CreatedToken",
    "NewSession",
    "Principal",
    "User",
    "create_token",
    "create_user",
    "deactivate_user",
    "end_session",
    "find_user",
    "has_admin",
    "issue_bootstrap_token",
    "list_tokens",
    "list_users",
    "principal_for_session",
    "principal_for_token",
    "revoke_token",
    "set_password",
    "sign_in",
    "use_bootstrap_token",
]
