"""Run the checklist against one installation and collect the report."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from appliance import __version__, clock
from appliance.config import Settings
from appliance.errors import StoreError
from appliance.store import Database
from appliance.verify.context import VerifyContext, resolve_service_user
from appliance.verify.host import check_data_dir, check_disk, check_fips, check_service_user, check_tls
from appliance.verify.install import InstallRecord
from appliance.verify.integrity import check_audit_chain, check_clock, check_model, check_packs, check_release
from appliance.verify.models import ChecklistItem, Report
from appliance.verify.network import check_default_route, check_dns, check_listening, check_outbound, site_networks
from appliance.verify.system import SystemFiles

__all__ = ["CHECKLIST", "locate_release", "run_checks"]

# The order of the printed checklist (and of offline-docs/verify.md).
CHECKLIST: tuple[ChecklistItem, ...] = (
    check_release, check_model, check_packs, check_audit_chain, check_default_route, check_dns, check_outbound,
    check_listening, check_tls, check_service_user, check_data_dir, check_clock, check_fips, check_disk,
)


def locate_release(option: Path | None, install: InstallRecord | None,
                   frozen_executable: Path | None) -> tuple[Path | None, str]:
    """The release directory to check, and where it came from: ``--release``, else the installer's record,
    else the directory of the running frozen binary; None in a source checkout."""
    if option is not None:
        return option.resolve(), "--release"
    if install is not None and install.release_dir is not None:
        return install.release_dir.resolve(), str(install.path)
    if frozen_executable is not None:
        return frozen_executable.resolve().parent, "the running binary"
    return None, ""


def _open_database(settings: Settings) -> tuple[Database | None, str | None]:
    """The database without migrations (a read must not change the schema); None when there is none."""
    if not settings.db_path.is_file():
        return None, None
    db = Database(settings.db_path)
    try:
        with db.read() as tx:
            tx.scalar("SELECT COUNT(*) FROM sqlite_master")
    except StoreError as exc:
        db.close()
        return None, f"the database {settings.db_path} cannot be read: {exc.message}"
    return db, None


def run_checks(settings: Settings, *, release_dir: Path | None = None, release_source: str = "--release",
               release_key_pem: bytes | None = None, service_user: str | None = None,
               install: InstallRecord | None = None, now: datetime | None = None, files: SystemFiles | None = None,
               checks: Sequence[ChecklistItem] = CHECKLIST) -> Report:
    """Run every check of the checklist and return the report. Reads state only: sends no packet, writes
    nothing (the database is opened without migrations, no key is created).

    Args:
        settings: the appliance's effective settings (data directory, listen address, TLS, site ranges).
        release_dir: the installed release directory (see :func:`locate_release`); None: a source checkout.
        release_source: where ``release_dir`` came from, for the evidence.
        release_key_pem: the release public key to check MANIFEST.sig with (default: the release's own).
        service_user: the user the service runs as (default: the installer's record, else the owner of the
            data directory).
        install: the installer's record (``install.json``), when there is one.
        now: the time to check against (default: the clock).
        files: where to read the host's state (default: ``/proc``, ``/etc/resolv.conf``, ``/etc/hosts``).
        checks: the items to run (default: all, in order).
    """
    moment = now or clock.now()
    if service_user:
        name, source = service_user, "--service-user"
    elif install is not None and install.service_user:
        name, source = install.service_user, str(install.path)
    else:
        name, source = None, ""
    db, db_error = _open_database(settings)
    ctx = VerifyContext(settings=settings, now=moment,
                        service_user=resolve_service_user(name, source, settings.data_dir),
                        release_dir=release_dir, release_source=release_source, release_key_pem=release_key_pem,
                        install=install, db=db, db_error=db_error, files=files or SystemFiles())
    try:
        results = [item(ctx) for item in checks]
    finally:
        if db is not None:
            db.close()
    networks, ranges_source = site_networks(ctx)
    context = {
        "release_dir": str(release_dir) if release_dir else None,
        "release_source": release_source if release_dir else None,
        "data_dir": str(settings.data_dir),
        "service_user": ctx.service_user.describe(),
        "install_record": str(install.path) if install else None,
        "site_ranges": [str(n) for n in networks],
        "site_ranges_source": ranges_source,
    }
    return Report(host=socket.gethostname(), version=__version__,
                  time=moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), checks=results, context=context)
