"""Errors whose messages are safe to show users, each with the HTTP status it maps to.

Domain code raises these; the web layer's one exception-handler map renders them as a page or as JSON
under ``/api``, and the CLI prints ``Error: <message>`` and exits 1. Anything else is a bug: users see an
incident id, the traceback goes to the log only.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ApplianceError",
    "AuthenticationError",
    "ConfigError",
    "ConflictError",
    "InvalidDiffError",
    "ModelError",
    "NotFoundError",
    "PackError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ReleaseError",
    "StoreError",
    "ThrottledError",
    "ValidationError",
]


class ApplianceError(Exception):
    """Base of every error a user may see. The message says what was wrong, where, and how to fix it."""

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class ConfigError(ApplianceError):
    """A setting is unknown, mistyped or inconsistent."""

    status_code = 500
    code = "config_error"


class StoreError(ApplianceError):
    """The database cannot be opened, migrated or written."""

    status_code = 503
    code = "store_error"


class ValidationError(ApplianceError):
    """Input is well-formed HTTP but its content is not acceptable."""

    status_code = 422
    code = "invalid_input"


class InvalidDiffError(ValidationError):
    """A submitted diff cannot be parsed; names the first bad line."""

    code = "invalid_diff"

    def __init__(self, message: str, *, line: int | None = None, text: str | None = None) -> None:
        details: dict[str, Any] = {}
        if line is not None:
            details["line"] = line
        if text is not None:
            details["text"] = text[:200]
        super().__init__(message, details=details)
        self.line = line


class PayloadTooLargeError(ApplianceError):
    status_code = 413
    code = "too_large"


class NotFoundError(ApplianceError):
    status_code = 404
    code = "not_found"


class ConflictError(ApplianceError):
    status_code = 409
    code = "conflict"


class AuthenticationError(ApplianceError):
    """No valid session or token, or wrong credentials."""

    status_code = 401
    code = "unauthenticated"


class PermissionDeniedError(ApplianceError):
    status_code = 403
    code = "forbidden"


class ThrottledError(ApplianceError):
    status_code = 429
    code = "throttled"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, details={"retry_after_seconds": retry_after})
        self.retry_after = retry_after


class PackError(ApplianceError):
    """A rule pack is malformed or one of its rules does not compile; names the pack and rule."""

    status_code = 422
    code = "pack_refused"

    def __init__(self, message: str, *, pack_id: str | None = None, rule_id: str | None = None) -> None:
        details = {k: v for k, v in (("pack", pack_id), ("rule", rule_id)) if v}
        super().__init__(message, details=details)
        self.pack_id = pack_id
        self.rule_id = rule_id


class ModelError(ApplianceError):
    """A model file is missing, corrupt, unregistered or cannot be loaded."""

    status_code = 422
    code = "model_error"


class ReleaseError(ApplianceError):
    """A release directory's MANIFEST (or the record of an installation) is malformed: names the file and line."""

    status_code = 422
    code = "release_error"
