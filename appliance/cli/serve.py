"""``cortex serve``: the web server with the queue consumer inside it."""

from __future__ import annotations

import logging
import os
import socket
import sys

import click
import uvicorn

from appliance import __version__
from appliance.auth import has_admin, issue_bootstrap_token
from appliance.cli.base import Context, pass_context
from appliance.config import Settings
from appliance.errors import ConfigError
from appliance.store.lock import DataDirLock
from appliance.tasks.services import Services
from appliance.web import create_app

__all__ = ["register"]

# Modern AEAD suites only (TLS 1.2); TLS 1.3 suites are always on in OpenSSL.
_TLS_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


@click.command("serve")
@click.option("--host", help="Listen address (setting host).")
@click.option("--port", type=int, help="Listen port (setting port).")
@click.option("--workers", type=int, help="Queue consumer threads (setting workers).")
@click.option("--show-bootstrap-token/--no-show-bootstrap-token", default=None,
              help="Print the first admin's one-time setup token when no admin exists "
                   "(default: only when stdout is a terminal, so it never lands in a service log).")
@pass_context
def serve_command(ctx: Context, host: str | None, port: int | None, workers: int | None,
                  show_bootstrap_token: bool | None) -> None:
    """Run the appliance: dashboard, API and review workers."""
    ctx.override(host=host, port=port, workers=workers)
    settings = ctx.settings
    logging.getLogger().setLevel(settings.log_level.upper())
    _check_listen(settings)
    # Held shared for the life of the server: `cortex backup restore` needs it alone (see store/lock.py).
    with DataDirLock.hold_shared(settings.data_dir, purpose="start the server"):
        _run(settings, show_bootstrap_token)


def _run(settings: Settings, show_bootstrap_token: bool | None) -> None:
    services = Services(settings)
    show = sys.stdout.isatty() if show_bootstrap_token is None else show_bootstrap_token
    base = settings.base_url
    click.echo(f"Cortex Code Appliance {__version__}: data in {settings.data_dir}")
    token = issue_bootstrap_token(services.db, settings) if show else None
    if token:
        click.echo("No administrator yet. Create the first one, once, at:")
        click.echo(f"    {base}/setup#token={token}")
        click.echo(f"  (one-time setup token {token}, valid {settings.bootstrap_token_hours} hours; "
                   "only its hash is stored)")
    elif not show and not has_admin(services.db):
            click.echo("No administrator yet: run `cortex admin bootstrap` for a one-time setup token.")
    click.echo(f"Dashboard: {base}   API: {base}/api/docs   Manual: {base}/docs", nl=True)
    sys.stdout.flush()
    app = create_app(settings, services)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level,
        # Never believe X-Forwarded-For: throttling and audit use the socket's peer address.
        proxy_headers=False, forwarded_allow_ips="", server_header=False, lifespan="on",
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        ssl_ciphers=_TLS_CIPHERS, timeout_graceful_shutdown=30)
    try:
        uvicorn.Server(config).run()
    finally:
        services.close()


def _check_listen(settings: Settings) -> None:
    """Fail with a clear message before anything starts: unreadable TLS files, a port already taken."""
    for name in ("tls_cert", "tls_key"):
        path = getattr(settings, name)
        if path is not None and not os.access(path, os.R_OK):
            raise ConfigError(f"setting {name}: {path} does not exist or is not readable by this user")
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}; stop the process "
                              "holding the port or choose another with --port (setting port)") from exc


def register(group: click.Group) -> None:
    group.add_command(serve_command)
