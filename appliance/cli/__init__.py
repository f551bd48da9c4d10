"""The ``cortex`` command: a click group, one module per command family.

Library errors (:class:`ApplianceError`) become ``Error: <message>`` on stderr and exit status 1;
``cortex review`` and ``cortex scan`` exit 3 when findings reach ``--fail-on``; ``cortex verify`` exits 1
when a check fails.
"""

from __future__ import annotations

from appliance.cli import admin, audit, backup, config, install, models, packs, reports, review, serve, verify
from appliance.cli.base import cli

__all__ = ["cli", "main"]

for _module in (serve, review, models, packs, reports, admin, config, audit, install, backup, verify):
    _module.register(cli)


def main() -> None:
    cli(prog_name="cortex")
