"""Every audit action the appliance records, as ``area:subject:action``.

One enum, so the set of things the appliance can record is reviewable in one place and documented in
offline-docs/audit-events.md (a test checks each tag appears there).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["AuditTag"]


class AuditTag(StrEnum):
    # Authentication and accounts
    AUTH_SESSION_CREATED = "auth:session:created"
    AUTH_SESSION_FAILED = "auth:session:failed"
    AUTH_SESSION_THROTTLED = "auth:session:throttled"
    AUTH_SESSION_ENDED = "auth:session:ended"
    AUTH_BOOTSTRAP_ISSUED = "auth:bootstrap:issued"
    AUTH_BOOTSTRAP_USED = "auth:bootstrap:used"
    AUTH_BOOTSTRAP_REFUSED = "auth:bootstrap:refused"
    AUTH_USER_CREATED = "auth:user:created"
    AUTH_USER_PASSWORD_CHANGED = "auth:user:password_changed"
    AUTH_USER_DEACTIVATED = "auth:user:deactivated"
    AUTH_TOKEN_CREATED = "auth:token:created"
    AUTH_TOKEN_REVOKED = "auth:token:revoked"
    AUTH_TOKEN_REFUSED = "auth:token:refused"
    AUTH_CSRF_REFUSED = "auth:csrf:refused"
    AUTH_PERMISSION_DENIED = "auth:permission:denied"
    # Reviews
    REVIEW_REVIEW_CREATED = "review:review:created"
    REVIEW_REVIEW_STARTED = "review:review:started"
    REVIEW_REVIEW_COMPLETED = "review:review:completed"
    REVIEW_REVIEW_FAILED = "review:review:failed"
    REVIEW_REVIEW_REFUSED = "review:review:refused"
    REVIEW_REVIEW_VIEWED = "review:review:viewed"
    REVIEW_REVIEW_EXPORTED = "review:review:exported"
    # The jobs ledger
    JOBS_JOB_REQUEUED = "jobs:job:requeued"
    # Models
    MODELS_MODEL_ADDED = "models:model:added"
    MODELS_MODEL_LOADED = "models:model:loaded"
    MODELS_MODEL_UNAVAILABLE = "models:model:unavailable"
    # Rule packs
    PACKS_PACK_LOADED = "packs:pack:loaded"
    PACKS_PACK_REFUSED = "packs:pack:refused"
    PACKS_PACK_IMPORTED = "packs:pack:imported"
    PACKS_PACK_ACTIVATED = "packs:pack:activated"
    PACKS_PACK_DOWNGRADED = "packs:pack:downgraded"
    PACKS_PACK_UNCHANGED = "packs:pack:unchanged"
    PACKS_PACK_RENEWED = "packs:pack:renewed"
    PACKS_ROOT_INSTALLED = "packs:root:installed"
    PACKS_ROOT_UPDATED = "packs:root:updated"
    PACKS_ROOT_REFUSED = "packs:root:refused"
    PACKS_SELECTION_CHANGED = "packs:selection:changed"
    # Findings and compliance reports
    REVIEW_FINDING_TRIAGED = "review:finding:triaged"
    REPORTS_COMPLIANCE_EXPORTED = "reports:compliance:exported"
    # The audit log itself
    AUDIT_KEY_CREATED = "audit:key:created"
    AUDIT_LOG_EXPORTED = "audit:log:exported"
    AUDIT_LOG_VERIFIED = "audit:log:verified"
    AUDIT_RETENTION_CHANGED = "audit:retention:changed"
    AUDIT_RETENTION_PURGED = "audit:retention:purged"
    AUDIT_RETENTION_REFUSED = "audit:retention:refused"
    AUDIT_HOLD_PLACED = "audit:hold:placed"
    AUDIT_HOLD_RELEASED = "audit:hold:released"
    AUDIT_FORWARDER_ADDED = "audit:forwarder:added"
    AUDIT_FORWARDER_REMOVED = "audit:forwarder:removed"
    AUDIT_FORWARDER_FAILING = "audit:forwarder:failing"
    AUDIT_FORWARDER_RECOVERED = "audit:forwarder:recovered"
    # Backups of the data directory
    STORE_BACKUP_CREATED = "store:backup:created"
    STORE_BACKUP_RESTORED = "store:backup:restored"
    # The appliance itself
    SYSTEM_DATABASE_MIGRATED = "system:database:migrated"
    SYSTEM_SERVICE_STARTED = "system:service:started"
    SYSTEM_SERVICE_STOPPED = "system:service:stopped"
    SYSTEM_RELEASE_INSTALLED = "system:release:installed"
    SYSTEM_RELEASE_REMOVED = "system:release:removed"
