"""``cortex audit``: verify, checkpoint, export and read the audit log; forwarders, retention, legal holds."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from appliance.audit import Actor
from appliance.audit.checkpoints import load_key, make_checkpoint, read_checkpoint_file
from appliance.audit.export import verify_export_file
from appliance.audit.forwarders import KINDS, ForwardError, add_forwarder, deliver, list_forwarders, remove_forwarder
from appliance.audit.log import EventFilter, search_events
from appliance.audit.retention import (
    clear_policy,
    list_holds,
    list_policies,
    place_hold,
    purge,
    release_hold,
    set_policy,
)
from appliance.audit.service import export_log, verify_log
from appliance.audit.verify import VerifyReport
from appliance.cli.base import Context, pass_context
from appliance.tasks.services import open_database

__all__ = ["register"]


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit log."""


def _report(report: VerifyReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "summary": report.summary()}, indent=2))
    else:
        click.echo(report.summary())
        for note in report.notes:
            click.echo(f"note: {note}", err=True)
    if not report.ok:
        raise SystemExit(1)


@audit_group.command("verify")
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="A checkpoint file kept off the box; repeatable.")
@click.option("--export", "export_file", type=click.Path(dir_okay=False, exists=True),
              help="Verify this export or archive file on its own, offline (no data directory needed).")
@click.option("--public-key", type=click.Path(dir_okay=False, exists=True),
              help="The appliance's audit-ed25519.pub to check --export signatures with (default: the key "
                   "embedded in the file, reported by id).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_context
def audit_verify(ctx: Context, checkpoints: tuple[str, ...], export_file: str | None, public_key: str | None,
                 as_json: bool) -> None:
    """Verify the chain, its checkpoints and purge markers; exit 1 at the first bad seq."""
    if export_file:
        _report(verify_export_file(Path(export_file), Path(public_key) if public_key else None), as_json)
        return
    extra = [read_checkpoint_file(Path(p)) for p in checkpoints]
    settings = ctx.settings
    db = open_database(settings)
    try:
        report = verify_log(db, settings.data_dir, actor=Actor.cli(), checkpoints=extra, via="cli")
    finally:
        db.close()
    _report(report, as_json)


@audit_group.command("checkpoint")
@pass_context
def audit_checkpoint(ctx: Context) -> None:
    """Sign a checkpoint of the current head now (cortex serve also does it every N events or T minutes)."""
    db = open_database(ctx.settings)
    made = make_checkpoint(db, ctx.settings.data_dir)
    if made is None:
        click.echo("the newest event is covered by a checkpoint already")
        return
    path = ctx.settings.data_dir / "audit" / "checkpoints" / f"checkpoint-{made.size:012d}.txt"
    click.echo(f"checkpoint at size {made.size}, head {made.head}: {path}")


@audit_group.command("key")
@pass_context
def audit_key(ctx: Context) -> None:
    """Print the appliance id, the audit key id and the public key (PEM) auditors verify with."""
    key = load_key(open_database(ctx.settings), ctx.settings.data_dir)
    click.echo(f"appliance {key.appliance_id}\nkey id {key.key_id}", err=True)
    click.echo(key.public.pem(), nl=False)


@audit_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--from-seq", type=int, help="First event (default: the first).")
@click.option("--to-seq", type=int, help="Last event (default: the newest).")
@click.option("--since", default="", help="Only events at or after this ISO date or time.")
@click.option("--until", default="", help="Only events before this ISO time (a date: up to its end).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True, help="File to write; - for stdout.")
@pass_context
def audit_export(ctx: Context, fmt: str, from_seq: int | None, to_seq: int | None, since: str, until: str,
                 output: str) -> None:
    """Export a range with its chain fields and checkpoints, signed: it verifies on its own."""
    from appliance.audit.export import write_export_file

    db = open_database(ctx.settings)
    kwargs: dict[str, Any] = {"actor": Actor.cli(), "fmt": fmt, "first": from_seq, "last": to_seq, "since": since,
                              "until": until, "via": "cli"}
    if output == "-":
        info = export_log(db, ctx.settings.data_dir, sys.stdout.buffer, **kwargs)
    else:
        holder: dict[str, Any] = {}
        write_export_file(Path(output), lambda fh: holder.update(
            info=export_log(db, ctx.settings.data_dir, fh, **kwargs)))
        info = holder["info"]
    click.echo(f"exported events {info.first_seq}..{info.last_seq} ({info.events} events, {info.checkpoints} "
               f"checkpoint(s)) as {fmt}, sha256 {info.sha256}", err=True)


@audit_group.command("log")
@click.option("--text", "-q", default="", help="Text in actor, action, target, address or details.")
@click.option("--actor", default="")
@click.option("--action", default="", help="A tag or a prefix (auth, auth:session).")
@click.option("--outcome", type=click.Choice(["", "success", "failure", "denied"]), default="")
@click.option("--target", default="")
@click.option("--since", default="")
@click.option("--until", default="")
@click.option("--before", type=int, help="Only events with a smaller seq (paging).")
@click.option("--limit", type=int, default=50, show_default=True)
@pass_context
def audit_log(ctx: Context, text: str, actor: str, action: str, outcome: str, target: str, since: str, until: str,
              before: int | None, limit: int) -> None:
    """Print events, newest first, one per line (tab-separated; details as JSON)."""
    page = search_events(open_database(ctx.settings), EventFilter(text=text, actor=actor, action=action,
                                                                  outcome=outcome, target=target, since=since,
                                                                  until=until), before=before, limit=limit)
    for e in page["events"]:
        details = json.dumps(e["details"], ensure_ascii=True, sort_keys=True)
        click.echo("\t".join(str(v) for v in (e["seq"], e["at"], e["actor_kind"], ascii(e["actor_name"])[1:-1],
                                                 e["source_addr"] or "-", e["action"], ascii(e["target"])[1:-1],
                                                 e["outcome"], details)))


@audit_group.group("forwarders")
def forwarders_group() -> None:
    """Collectors the log is forwarded to (syslog over TCP or TLS, webhook, Splunk HEC)."""


@forwarders_group.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), required=True)
@click.option("--target", required=True, help="host:port for syslog; the URL for webhook and splunk-hec.")
@click.option("--ca-file", type=click.Path(dir_okay=False, exists=True),
              help="CA certificate(s) the collector's certificate must chain to (default: the system's).")
@click.option("--secret-file", type=click.Path(dir_okay=False, exists=True),
              help="File holding the webhook HMAC key or the HEC token (mode 0600).")
@click.option("--from-now", is_flag=True, help="Forward only events from now on (default: the whole log).")
@pass_context
def forwarders_add(ctx: Context, name: str, kind: str, target: str, ca_file: str | None, secret_file: str | None,
                   from_now: bool) -> None:
    """Add a forwarder; cortex serve starts sending to it within a second."""
    forwarder = add_forwarder(open_database(ctx.settings), name=name, kind=kind, target=target, actor=Actor.cli(),
                              ca_file=str(Path(ca_file).resolve()) if ca_file else None,
                              secret_file=str(Path(secret_file).resolve()) if secret_file else None,
                              from_now=from_now)
    click.echo(f"forwarder {forwarder.name} ({forwarder.kind} to {forwarder.target}) added; it starts after seq "
               f"{forwarder.cursor_seq}")


@forwarders_group.command("list")
@pass_context
def forwarders_list(ctx: Context) -> None:
    """List forwarders with their cursor and state."""
    for f in list_forwarders(open_database(ctx.settings)):
        state = f"failing: {f.last_error}" if f.failing else "ok"
        click.echo(f"{f.name:<20} {f.kind:<11} {f.target:<40} delivered up to seq {f.cursor_seq} "
                   f"({f.delivered} sent), last success {f.last_success_at or 'never'}, {state}")


@forwarders_group.command("remove")
@click.argument("name")
@pass_context
def forwarders_remove(ctx: Context, name: str) -> None:
    """Remove a forwarder."""
    remove_forwarder(open_database(ctx.settings), name, actor=Actor.cli())
    click.echo(f"forwarder {name} removed")


@audit_group.command("forward")
@pass_context
def audit_forward(ctx: Context) -> None:
    """Deliver pending events to every forwarder now, until each is caught up or fails."""
    db = open_database(ctx.settings)
    appliance_id = load_key(db, ctx.settings.data_dir).appliance_id
    failed = False
    for forwarder in list_forwarders(db):
        sent = 0
        try:
            while n := deliver(db, forwarder.id, appliance_id=appliance_id):
                sent += n
            click.echo(f"{forwarder.name}: {sent} event(s) delivered")
        except ForwardError as exc:
            failed = True
            click.echo(f"{forwarder.name}: {sent} event(s) delivered, then: {exc}", err=True)
    if failed:
        raise SystemExit(1)


@audit_group.group("retention")
def retention_group() -> None:
    """How long each action class is kept."""


@retention_group.command("set")
@click.argument("action_class")
@click.argument("days", type=int)
@pass_context
def retention_set(ctx: Context, action_class: str, days: int) -> None:
    """Keep ACTION_CLASS (an area such as review, or auth:session, or a tag) for DAYS days."""
    set_policy(open_database(ctx.settings), action_class, days, actor=Actor.cli())
    click.echo(f"events of {action_class} are kept {days} days")


@retention_group.command("clear")
@click.argument("action_class")
@pass_context
def retention_clear(ctx: Context, action_class: str) -> None:
    """Remove a class's retention (its events are kept for good)."""
    clear_policy(open_database(ctx.settings), action_class, actor=Actor.cli())
    click.echo(f"events of {action_class} are kept for good")


@retention_group.command("list")
@pass_context
def retention_list(ctx: Context) -> None:
    """List retention policies (classes without one are kept for good)."""
    for p in list_policies(open_database(ctx.settings)):
        click.echo(f"{p['action_class']:<32} {p['days']:>6} days   set {p['updated_at']} by {p['updated_by']}")


@audit_group.group("hold")
def hold_group() -> None:
    """Legal holds: while one is active, purges of its class are refused."""


@hold_group.command("place")
@click.option("--reason", required=True, help="The case or matter reference.")
@click.option("--class", "action_class", default="", help="Only this action class (default: everything).")
@pass_context
def hold_place(ctx: Context, reason: str, action_class: str) -> None:
    """Place a legal hold."""
    hold_id = place_hold(open_database(ctx.settings), reason, actor=Actor.cli(), action_class=action_class)
    click.echo(f"legal hold {hold_id} placed on {action_class or 'every class'}")


@hold_group.command("release")
@click.argument("hold_id", type=int)
@pass_context
def hold_release(ctx: Context, hold_id: int) -> None:
    """Release a legal hold."""
    release_hold(open_database(ctx.settings), hold_id, actor=Actor.cli())
    click.echo(f"legal hold {hold_id} released")


@hold_group.command("list")
@pass_context
def hold_list(ctx: Context) -> None:
    """List legal holds."""
    for h in list_holds(open_database(ctx.settings)):
        state = f"released {h['released_at']} by {h['released_by']}" if h["released_at"] else "active"
        click.echo(f"{h['id']:>4}  {h['action_class'] or '*':<24} {state:<48} {h['reason']}")


@audit_group.command("purge")
@click.option("--dry-run", is_flag=True, help="Only say how many events are due.")
@pass_context
def audit_purge(ctx: Context, dry_run: bool) -> None:
    """Apply the retention policies now: archive, then remove, the events past their retention."""
    result = purge(open_database(ctx.settings), ctx.settings.data_dir, actor=Actor.cli(), dry_run=dry_run)
    if dry_run or not result.events:
        click.echo(f"{result.events} event(s) due for purge" + (f": {result.by_class}" if result.events else ""))
        return
    click.echo(f"purged {result.events} event(s) in {result.ranges} range(s); marker at seq {result.marker_seq}; "
               f"archive {result.archive}")


def register(group: click.Group) -> None:
    group.add_command(audit_group)
