"""``cortex verify``: the air-gap verification checklist, as a table, JSON or a printable HTML report."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from appliance.cli.base import Context, pass_context
from appliance.config import DEFAULT_CONFIG_FILE
from appliance.errors import ReleaseError
from appliance.verify.install import read_install_record
from appliance.verify.render import report_html, report_json, report_text
from appliance.verify.runner import locate_release, run_checks

__all__ = ["register"]


def _config_file() -> Path | None:
    """The configuration file in use: ``--config`` (which sets ``CORTEX_CONFIG``), ``$CORTEX_CONFIG``, or the
    default; None when ``CORTEX_CONFIG`` is empty (no file at all)."""
    if "CORTEX_CONFIG" in os.environ:
        return Path(os.environ["CORTEX_CONFIG"]).resolve() if os.environ["CORTEX_CONFIG"] else None
    return DEFAULT_CONFIG_FILE


@click.command("verify")
@click.option("--release", "release", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The installed release directory (default: install.json's release_dir, else the directory of "
                   "the running cortex binary).")
@click.option("--release-key", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Check MANIFEST.sig with this Ed25519 public key (PEM) instead of the release's own "
                   "release-key.pem.")
@click.option("--service-user", help="The user the service runs as (default: install.json's service_user, else "
                                     "the owner of the data directory).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Also write a printable, self-contained HTML report to this file.")
@pass_context
def verify_command(ctx: Context, release: Path | None, release_key: Path | None, service_user: str | None,
                   as_json: bool, html_file: Path | None) -> None:
    """Run the air-gap verification checklist; exit 1 if any check FAILs (WARNs exit 0).

    It only reads state: no packet is sent (not even a DNS query) and nothing is written.
    """
    config_file = _config_file()
    install = read_install_record(config_file.parent) if config_file is not None else None
    if install is not None and install.data_dir is not None and ctx.loaded.sources["data_dir"] == "default":
        ctx.override(data_dir=str(install.data_dir))
    settings = ctx.settings
    frozen = Path(sys.executable) if getattr(sys, "frozen", False) else None
    release_dir, source = locate_release(release, install, frozen)
    try:
        key_pem = release_key.read_bytes() if release_key is not None else None
    except OSError as exc:
        raise ReleaseError(f"cannot read the release key {release_key}: {exc.strerror}") from exc
    report = run_checks(settings, release_dir=release_dir, release_source=source, release_key_pem=key_pem,
                        service_user=service_user, install=install)
    report.context["config_file"] = str(config_file) if config_file is not None and config_file.is_file() else None
    if html_file is not None:
        html_file.write_text(report_html(report), encoding="utf-8")
        click.echo(f"wrote the HTML report to {html_file}", err=True)
    click.echo(report_json(report) if as_json else report_text(report), nl=False)
    if not report.ok:
        raise SystemExit(1)


def register(group: click.Group) -> None:
    group.add_command(verify_command)
