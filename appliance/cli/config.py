"""``cortex config``: the effective settings."""

from __future__ import annotations

import click

from appliance.cli.base import Context, pass_context
from appliance.config import setting_fields

__all__ = ["register"]


@click.group("config")
def config_group() -> None:
    """Configuration."""


@config_group.command("show")
@pass_context
def config_show(ctx: Context) -> None:
    """Print every setting's effective value (defaults, then the TOML file, then CORTEX_* variables)."""
    loaded = ctx.loaded
    for field in setting_fields():
        value = getattr(loaded.settings, field.name)
        shown = ", ".join(value) if isinstance(value, tuple) else ("" if value is None else value)
        click.echo(f"{field.name} = {shown}    # from {loaded.sources[field.name]}")
        click.echo(f"    {field.metadata['help']}")


def register(group: click.Group) -> None:
    group.add_command(config_group)
