"""Verified backups of the data directory: create, verify, restore (see service.py for why this is a package)."""

from appliance.backup.service import (
    BackupReport,
    RestoreResult,
    create_backup,
    live_database,
    restore_backup,
    verify_backup,
)
from appliance.store.backup import BackupError

__all__ = ["BackupError", "BackupReport", "RestoreResult", "create_backup", "live_database", "restore_backup",
           "verify_backup"]
