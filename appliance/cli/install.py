"""``cortex install``: what ``./install`` runs once it has verified the bundle (see appliance.install)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import click

from appliance.cli.base import Context, pass_context
from appliance.install import InstallOptions, InstallPaths, install, rollback, uninstall


@click.command("install")
@click.option("--bundle", type=click.Path(file_okay=False, exists=True, path_type=Path), hidden=True,
              help="The verified bundle directory (set by ./install).")
@click.option("--key-fingerprint", default="", hidden=True, help="The release key's fingerprint (set by ./install).")
@click.option("--expect-key-fingerprint", default="", metavar="SHA256",
              help="Refuse the bundle unless its release key has this fingerprint (checked by ./install).")
@click.option("--prefix", type=click.Path(file_okay=False, path_type=Path),
              help="Install under DIR (default /opt/cortex, settings in /etc/cortex, data in /var/lib/cortex; "
                   "with --prefix DIR: DIR/etc and DIR/data).")
@click.option("--config-dir", type=click.Path(file_okay=False, path_type=Path), help="Settings directory.")
@click.option("--data-dir", "install_data_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Data directory.")
@click.option("--no-systemd", is_flag=True, help="Write no systemd unit and create no service user (for staging "
              "and unprivileged installs: the appliance then runs as you).")
@click.option("--service-user", help="The service account (default cortex; created when missing).")
@click.option("--hostname", default=socket.gethostname, show_default="this host's name",
              help="Host name for the self-signed certificate and the public URL.")
@click.option("--listen", "host", default="127.0.0.1", show_default=True, help="Address the appliance listens on.")
@click.option("--port", type=int, default=8443, show_default=True, help="HTTPS port.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The site's PEM certificate (with --tls-key); default: a self-signed one.")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The private key of --tls-cert (unencrypted PEM; stored with mode 0600).")
@click.option("--site-range", "site_ranges", multiple=True, metavar="CIDR",
              help="A network the appliance may reach (Git server, IdP, syslog); repeatable. Default: loopback only.")
@click.option("--allow-downgrade", is_flag=True, help="Install over a newer installed version.")
@click.option("--rollback", "do_rollback", is_flag=True,
              help="Return to the previous release and restore the data backed up before the upgrade.")
@click.option("--uninstall", "do_uninstall", is_flag=True, help="Remove the appliance; keep settings and data.")
@click.option("--purge", is_flag=True, help="With --uninstall: remove the settings and the data too.")
@pass_context
def install_command(ctx: Context, bundle: Path | None, key_fingerprint: str, expect_key_fingerprint: str,
                    prefix: Path | None, config_dir: Path | None, install_data_dir: Path | None, no_systemd: bool,
                    service_user: str | None, hostname: str, host: str, port: int, tls_cert: Path | None,
                    tls_key: Path | None, site_ranges: tuple[str, ...], allow_downgrade: bool, do_rollback: bool,
                    do_uninstall: bool, purge: bool) -> None:
    """Install, upgrade, roll back or remove the appliance on this host. Run it as ./install in the
    unpacked bundle, which verifies the bundle first."""
    paths = InstallPaths.resolve(prefix, config_dir, install_data_dir)
    if purge and not do_uninstall:
        raise click.UsageError("--purge goes with --uninstall")
    if do_rollback:
        raise SystemExit(rollback(paths, say=click.echo))
    if do_uninstall:
        raise SystemExit(uninstall(paths, purge=purge, say=click.echo))
    if bundle is None:
        raise click.UsageError("run ./install in the unpacked bundle: it verifies the bundle, then runs this")
    if not no_systemd and os.geteuid() != 0:
        raise click.UsageError("installing the systemd unit and the service user needs root: run ./install as "
                               "root, or stage an unprivileged install with --prefix DIR --no-systemd")
    options = InstallOptions(
        bundle=bundle, paths=paths, systemd=not no_systemd, service_user=service_user, hostname=hostname,
        host=host, port=port, tls_cert=tls_cert, tls_key=tls_key, site_ranges=list(site_ranges),
        allow_downgrade=allow_downgrade, key_fingerprint=key_fingerprint, say=click.echo)
    raise SystemExit(install(options))


def register(group: click.Group) -> None:
    group.add_command(install_command)
