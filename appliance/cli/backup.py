"""``cortex backup``: create, verify and restore verified backups of the data directory.

``create`` prints the new backup's path, and ``restore`` the path of the copy of the data it replaced, as
the only line on standard output, so scripts (the installer) can capture it; every other message goes to
standard error. A backup that does not verify, a restore refused or cancelled: ``Error: …``, exit status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from appliance.audit import Actor
from appliance.backup import BackupReport, create_backup, live_database, restore_backup, verify_backup
from appliance.cli.base import Context, pass_context
from appliance.tasks.services import open_database

__all__ = ["register"]


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    scaled = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        scaled /= 1024
        if scaled < 1024 or unit == "GiB":
            break
    return f"{scaled:.1f} {unit}"


@click.group("backup")
def backup_group() -> None:
    """Verified backups of the data directory: create, verify, restore."""


@backup_group.command("create")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the backup into (default: <data_dir>/backups).")
@pass_context
def backup_create(ctx: Context, out: Path | None) -> None:
    """Back up the data directory, also while the server runs; verify the copy; print its path."""
    settings = ctx.settings
    db = live_database(settings)  # never created, never migrated
    try:
        report = create_backup(db, settings, actor=Actor.cli(), out=out)
    finally:
        db.close()
    manifest = report.manifest
    click.echo(f"backup of {settings.data_dir}: {len(manifest.files)} files, {_size(manifest.total_bytes)}, schema "
               f"version {manifest.schema_version}; verified (audit log: {report.audit.events} events, head "
               f"{report.audit.head[:16]}…)", err=True)
    click.echo(str(report.path))


@backup_group.command("verify")
@click.argument("path", type=click.Path(path_type=Path))
def backup_verify(path: Path) -> None:
    """Check a backup: its manifest, every file's sha256, SQLite's integrity check and the audit chain."""
    report = verify_backup(path)
    click.echo(report.summary())
    for note in report.audit.notes:
        click.echo(f"note: {note}", err=True)


@backup_group.command("restore")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--yes", is_flag=True, help="Restore without asking (needed when standard input is not a terminal).")
@pass_context
def backup_restore(ctx: Context, path: Path, yes: bool) -> None:
    """Replace the data directory's state with a verified backup (the service must be stopped)."""
    settings = ctx.settings
    if not yes and not sys.stdin.isatty():
        raise click.ClickException(f"restoring replaces the data in {settings.data_dir}, and there is no terminal to "
                                   "confirm on: pass --yes. Nothing was changed")

    def confirm(report: BackupReport) -> bool:
        if yes:
            return True
        answer: bool = click.confirm(
            f"Replace the data in {settings.data_dir} with the backup {report.path}, made "
            f"{report.manifest.created_at}? The current data is moved to {settings.data_dir / 'backups'}/pre-restore-…",
            default=False, err=True)
        return answer

    result = restore_backup(settings, path, actor=Actor.cli(), open_database=open_database, confirm=confirm)
    manifest = result.backup.manifest
    migrated = (f", migrated to {result.schema_version}" if result.schema_version != manifest.schema_version else "")
    click.echo(f"restored {settings.data_dir} from {result.backup.path} (made {manifest.created_at}, schema version "
               f"{manifest.schema_version}{migrated})", err=True)
    if result.pre_restore is not None and result.pre_restore_verified:
        click.echo(f"the data it replaced is in {result.pre_restore}; to undo: cortex backup restore "
                   f"{result.pre_restore}", err=True)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if result.pre_restore is not None:
        click.echo(str(result.pre_restore))


def register(group: click.Group) -> None:
    group.add_command(backup_group)
