"""The root ``cortex`` group and the context its subcommands share."""

from __future__ import annotations

import difflib
import logging
import os
import sys
from typing import Any

import click

from appliance import __version__
from appliance.config import ENV_PREFIX, LoadedSettings, Settings, load_settings_with_sources, setting_fields
from appliance.errors import ApplianceError

__all__ = ["Context", "cli", "pass_context"]


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApplianceError as exc:
            raise click.ClickException(exc.message) from exc


class Context:
    """Lazily loaded settings shared by the subcommands."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        self._overrides = overrides
        self._loaded: LoadedSettings | None = None
        self._settings: Settings | None = None

    @property
    def loaded(self) -> LoadedSettings:
        if self._loaded is None:
            self._loaded = load_settings_with_sources(**self._overrides)
            names = [ENV_PREFIX + f.name.upper() for f in setting_fields()]
            for key in self._loaded.unknown_environment:
                guess = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {guess[0]}?)" if guess else ""
                click.echo(f"warning: ignoring {key}: it is not a setting{hint}", err=True)
        return self._loaded

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = self.loaded.settings
            # One-shot commands only report problems; `cortex serve` raises this to log_level.
            level = logging.DEBUG if self._settings.log_level == "debug" else logging.WARNING
            logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                                stream=sys.stderr)
            if self._settings.log_level != "debug":
                # Huey logs every task at INFO; the appliance logs job outcomes itself.
                logging.getLogger("huey").setLevel(logging.WARNING)
        return self._settings

    def override(self, **values: Any) -> None:
        self._overrides.update({k: v for k, v in values.items() if v is not None})
        self._settings = None
        self._loaded = None


pass_context = click.make_pass_decorator(Context)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cortex")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data directory (setting data_dir).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help="TOML configuration file (default: $CORTEX_CONFIG or /etc/cortex/appliance.toml).")
@click.pass_context
def cli(ctx: click.Context, data_dir: str | None, config_file: str | None) -> None:
    """Cortex Code Appliance: offline code review with signed rule packs and a local model."""
    if config_file:
        os.environ["CORTEX_CONFIG"] = config_file
    ctx.obj = Context({"data_dir": data_dir})
