"""``cortex init``, ``cortex admin``, ``cortex users`` and ``cortex tokens``: set-up and accounts."""

from __future__ import annotations

import sys

import click

from appliance.audit import Actor
from appliance.auth import (
    create_token,
    create_user,
    deactivate_user,
    find_user,
    issue_bootstrap_token,
    list_tokens,
    list_users,
    revoke_token,
    set_password,
)
from appliance.cli.base import Context, pass_context
from appliance.rbac import role_names
from appliance.store import applied_migrations
from appliance.tasks.services import open_database

__all__ = ["register"]


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@click.command("init")
@click.option("--quiet", is_flag=True, help="Print nothing when all is well.")
@pass_context
def init_command(ctx: Context, quiet: bool) -> None:
    """Create the data directory and bring the database schema up to date."""
    settings = ctx.settings
    db = open_database(settings)
    versions = applied_migrations(db)
    db.close()
    if not quiet:
        click.echo(f"data directory {settings.data_dir}: schema version {versions[-1]['version'] if versions else 0}")


@click.group("admin")
def admin_group() -> None:
    """Appliance administration."""


@admin_group.command("bootstrap")
@pass_context
def bootstrap_command(ctx: Context) -> None:
    """Print a one-time token for creating the first administrator at /setup."""
    db = open_database(ctx.settings)
    token = issue_bootstrap_token(db, ctx.settings)
    if token is None:
        raise click.ClickException("an administrator exists already; sign in, or have an admin create accounts")
    click.echo(f"One-time setup token (valid {ctx.settings.bootstrap_token_hours} hours): {token}")
    click.echo(f"Open {ctx.settings.base_url}/setup#token={token}")


@click.group("users")
def users_group() -> None:
    """Local accounts."""


@users_group.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(role_names()), required=True)
@click.option("--display-name", default="")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--no-password", is_flag=True, help="Create the account without a password (cannot sign in).")
@pass_context
def users_create(ctx: Context, username: str, role: str, display_name: str, password_stdin: bool,
                 no_password: bool) -> None:
    """Create a local account."""
    db = open_database(ctx.settings)
    password = None if no_password else _read_password(password_stdin)
    user = create_user(db, username=username, role=role, actor=Actor.cli(), password=password,
                       display_name=display_name)
    click.echo(f"created user {user.username} (id {user.id}, role {user.role})")


@users_group.command("list")
@pass_context
def users_list(ctx: Context) -> None:
    """List local accounts."""
    for user in list_users(open_database(ctx.settings)):
        state = "active" if user.is_active else "inactive"
        click.echo(f"{user.id:>5}  {user.username:<24} {user.role:<10} {state:<8} {user.display_name}")


@users_group.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@pass_context
def users_set_password(ctx: Context, username: str, password_stdin: bool) -> None:
    """Set an account's password (its open sessions end)."""
    set_password(open_database(ctx.settings), username, _read_password(password_stdin), actor=Actor.cli())
    click.echo(f"password of {username} changed; its sessions ended")


@users_group.command("deactivate")
@click.argument("username")
@pass_context
def users_deactivate(ctx: Context, username: str) -> None:
    """Block an account: no sign-in, its sessions end, its API tokens stop working."""
    deactivate_user(open_database(ctx.settings), username, actor=Actor.cli())
    click.echo(f"user {username} deactivated")


@click.group("tokens")
def tokens_group() -> None:
    """API tokens for CI and scripts."""


@tokens_group.command("create")
@click.option("--user", "username", required=True, help="The account the token acts as.")
@click.option("--name", required=True, help="What the token is for, e.g. ci-main.")
@click.option("--expires-days", type=int, help="Lifetime in days (default: no expiry).")
@pass_context
def tokens_create(ctx: Context, username: str, name: str, expires_days: int | None) -> None:
    """Create an API token; it is printed once, on stdout."""
    db = open_database(ctx.settings)
    created = create_token(db, find_user(db, username), name=name, actor=Actor.cli(), expires_days=expires_days)
    click.echo(created.token)
    click.echo(f"token {created.id} '{created.name}' for {username}"
               + (f", expires {created.expires_at}" if created.expires_at else ", no expiry"), err=True)


@tokens_group.command("list")
@pass_context
def tokens_list(ctx: Context) -> None:
    """List API tokens (never their values)."""
    for t in list_tokens(open_database(ctx.settings)):
        state = "revoked" if t["revoked_at"] else "active"
        click.echo(f"{t['id']:>5}  {t['prefix']}…  {t['username']:<20} {t['name']:<24} {state:<8} "
                   f"expires {t['expires_at'] or 'never'}  last used {t['last_used_at'] or 'never'}")


@tokens_group.command("revoke")
@click.argument("token_id", type=int)
@pass_context
def tokens_revoke(ctx: Context, token_id: int) -> None:
    """Revoke an API token by id."""
    revoke_token(open_database(ctx.settings), token_id, actor=Actor.cli())
    click.echo(f"token {token_id} revoked")


def register(group: click.Group) -> None:
    for command in (init_command, admin_group, users_group, tokens_group):
        group.add_command(command)
