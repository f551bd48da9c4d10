"""``cortex reports``: compliance reports on the appliance host."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from appliance.audit import Actor
from appliance.cli.base import Context, pass_context
from appliance.review.reports import compliance_report, parse_period, record_export, report_csv, report_json
from appliance.review.triage import STATUSES
from appliance.tasks.services import open_database
from appliance.web.templating import render

__all__ = ["register"]


@click.group("reports")
def reports_group() -> None:
    """Compliance reports."""


@reports_group.command("compliance")
@click.option("--repository", help="One repository (default: all).")
@click.option("--from", "start", help="First day, YYYY-MM-DD (default: 90 days ago).")
@click.option("--to", "end", help="Last day, YYYY-MM-DD (default: today).")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "html"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File to write (default: stdout).")
@pass_context
def reports_compliance(ctx: Context, repository: str | None, start: str | None, end: str | None, fmt: str,
                       output: str | None) -> None:
    """Findings by framework control, status counts and weekly trend; the export is audited."""
    db = open_database(ctx.settings)
    first, last = parse_period(start, end)
    report = compliance_report(db, repository=repository, start=first, end=last)
    text = {"json": report_json, "csv": report_csv}.get(fmt, lambda r: render("reports/print.html", report=r,
                                                                               statuses=STATUSES))(report)
    record_export(db, report, fmt=fmt, actor=Actor.cli())
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {fmt} to {output}: {report['reviews']} review(s), {report['findings']['rule']} finding(s)",
                   err=True)
    else:
        sys.stdout.write(text)


def register(group: click.Group) -> None:
    group.add_command(reports_group)
