"""``cortex models``: list, add and verify local models."""

from __future__ import annotations

from pathlib import Path

import click

from appliance.audit import Actor
from appliance.cli.base import Context, pass_context
from appliance.errors import ModelError
from appliance.inference import add_model, find_model, list_models, verify_model_file
from appliance.tasks.services import open_database

__all__ = ["register"]


@click.group("models")
def models_group() -> None:
    """Local models (GGUF files, pinned by sha256)."""


@models_group.command("list")
@pass_context
def models_list(ctx: Context) -> None:
    """List registered models; the active one is marked with *."""
    settings = ctx.settings
    for entry in list_models(open_database(settings), settings):
        mark = "*" if entry.id == settings.model else " "
        present = "present" if entry.file.is_file() else "MISSING"
        note = " (plumbing model)" if entry.plumbing else ""
        click.echo(f"{mark} {entry.id:<32} {entry.origin:<8} {present:<8} {entry.license:<12} "
                   f"sha256 {entry.sha256[:16]}…  {entry.file}{note}")


@models_group.command("add")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--id", "model_id", required=True, help="Id to register the model under (lower-case).")
@click.option("--license", "license_name", help="License (SPDX id or agreement); default: from the GGUF header.")
@click.option("--name", help="Display name; default: from the GGUF header.")
@pass_context
def models_add(ctx: Context, file: str, model_id: str, license_name: str | None, name: str | None) -> None:
    """Copy FILE into the data directory and register it (sha256 computed, license noted).

    Make it the active model with the setting `model = "<id>"` and a restart.
    """
    settings = ctx.settings
    entry = add_model(open_database(settings), settings, Path(file), model_id=model_id, actor=Actor.cli(),
                      license_name=license_name, name=name)
    click.echo(f"registered {entry.id}: {entry.name}, license {entry.license}, {entry.size} bytes, "
               f"sha256 {entry.sha256}")
    click.echo(f"activate it with model = \"{entry.id}\" in the configuration (or CORTEX_MODEL={entry.id}) "
               "and restart")


@models_group.command("verify")
@click.argument("model_id", required=False)
@pass_context
def models_verify(ctx: Context, model_id: str | None) -> None:
    """Check size and sha256 of one model (default: every registered model)."""
    settings = ctx.settings
    db = open_database(settings)
    entries = [find_model(db, settings, model_id)] if model_id else list_models(db, settings)
    failed = 0
    for entry in entries:
        try:
            verify_model_file(entry)
            click.echo(f"ok      {entry.id}  sha256 {entry.sha256}")
        except ModelError as exc:
            failed += 1
            click.echo(f"FAILED  {exc.message}")
    if failed:
        raise click.ClickException(f"{failed} model(s) failed verification")


def register(group: click.Group) -> None:
    group.add_command(models_group)
