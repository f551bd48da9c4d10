"""The only package that imports apsw: connections, pragmas, the single writer, migrations, backup."""

from appliance.store.database import Database, IntegrityError, Transaction
from appliance.store.migrations import Migration, applied_migrations, available_migrations, migrate

__all__ = [
    "Database",
    "IntegrityError",
    "Migration",
    "Transaction",
    "applied_migrations",
    "available_migrations",
    "migrate",
]
