"""``cortex review`` and ``cortex scan``: review a diff, a local repository's branch, or a whole tree.

The review runs in this process against the appliance's data directory, so it is stored, audited and
shown in the dashboard like any other. Exit status: 0, or 3 when a finding reaches ``--fail-on``
(for CI gates), or 1 on an error.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from appliance.audit import Actor
from appliance.cli.base import Context, pass_context
from appliance.jobs import current_owner, get_job
from appliance.review import service as reviews
from appliance.review.formats import render
from appliance.review.models import Severity
from appliance.review.sources import git_diff, tree_as_diff
from appliance.tasks.services import Services

__all__ = ["register"]

EXIT_FINDINGS = 3
_SEVERITY_CHOICE = click.Choice([s.value for s in Severity] + ["none"])


def _run(ctx: Context, data: bytes, *, source: str, title: str, repository: str, base: str | None,
         head: str | None, use_model: bool, max_bytes: int | None) -> dict[str, Any]:
    settings = ctx.settings
    services = Services(settings)
    try:
        accepted = reviews.submit_review(services.db, settings, data, actor=Actor.cli(), source=source, title=title,
                                         repository=repository, base_ref=base, head_ref=head, use_model=use_model,
                                         max_bytes=max_bytes)
        if use_model:
            services.load_model()
        outcome = reviews.run_review_job(services.db, settings, accepted.job_id, owner=current_owner(),
                                         ruleset=services.catalog, runtime=services.runtime)
        while outcome == "held":
            # A running appliance's worker took the job first: wait for its result.
            time.sleep(0.5)
            with services.db.read() as tx:
                job = get_job(tx, accepted.job_id)
            outcome = job.status if job and job.status in ("done", "failed") else "held"
        return reviews.get_review(services.db, accepted.review_id)
    finally:
        services.close()


def _summary(review: dict[str, Any]) -> str:
    lines = []
    counts = review["counts"].get("severity", {})
    parts = [f"{counts[s.value]} {s.value}" for s in Severity if counts.get(s.value)]
    lines.append(f"Review #{review['id']} ({review['status']}): {review['files_reviewed'] or 0} of "
                 f"{review['files_total'] or 0} files reviewed, {review['lines_added'] or 0} lines added, "
                 f"{review['findings_total']} finding(s)" + (f" ({', '.join(parts)})" if parts else ""))
    if review["status"] == "failed":
        lines.append(f"  failed: {review['error']}")
    for f in review["findings"]:
        origin = f"{f['pack_id']}/{f['rule_id']}" if f["source"] == "rule" else f"model suggestion, {f['rule_id']}"
        cwe = f", CWE-{f['cwe']}" if f["cwe"] else ""
        lines.append(f"  {f['severity'].upper():<8} {f['path']}:{f['line']}  {f['title']} [{origin}{cwe}]")
        lines.append(f"           {f['message']}")
    prov = review["provenance"]
    model = prov.get("model_review", {})
    model_line = f"Model: {review['model_status']}"
    if model.get("note"):
        model_line += f" ({model['note']})"
    if review["model_dropped"]:
        dropped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in model.get("dropped", {}).items())
        model_line += f"; {review['model_dropped']} suggestion(s) dropped: {dropped}"
    lines.append(model_line)
    packs = ", ".join(f"{p['id']} {p['display_version']}" for p in prov.get("packs", [])) or "none"
    lines.append(f"Packs: {packs}")
    for refused in prov.get("packs_refused", []):
        lines.append(f"  refused: {refused['reason']}")
    return "\n".join(lines)


def _emit(ctx: Context, review: dict[str, Any], fmt: str, output: str | None, fail_on: str) -> None:
    base = ctx.settings.base_url
    text = _summary(review) + "\n" if fmt == "text" else render(review, fmt, base_url=base)
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(_summary(review), err=True)
        click.echo(f"wrote {fmt} to {output}", err=True)
    else:
        sys.stdout.write(text)
    if review["status"] == "failed":
        raise click.ClickException(f"review {review['id']} failed: {review['error']}")
    if fail_on != "none":
        threshold = Severity(fail_on).weight
        worst = [f for f in review["findings"] if Severity(f["severity"]).weight >= threshold]
        if worst:
            click.echo(f"{len(worst)} finding(s) at or above {fail_on}: failing (exit {EXIT_FINDINGS})", err=True)
            sys.exit(EXIT_FINDINGS)


def _output_options(func: Any) -> Any:
    func = click.option("--fail-on", type=_SEVERITY_CHOICE, default="none", show_default=True,
                        help="Exit with status 3 when a finding has this severity or worse.")(func)
    func = click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
                        help="Write the result to this file instead of stdout.")(func)
    func = click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif", "markdown"]), default="text",
                        show_default=True, help="Output format.")(func)
    func = click.option("--no-model", is_flag=True, help="Rules only: do not run the local model.")(func)
    func = click.option("--repository", default="", help="Repository name to record (e.g. group/project).")(func)
    func = click.option("--title", default="", help="Title to record (default: from the patch).")(func)
    return func


@click.command("review")
@click.option("--diff", "diff_file", type=click.Path(dir_okay=False, allow_dash=True),
              help="A unified diff file ('-' for stdin), as `git diff` or `git format-patch` writes it.")
@click.option("--repo", "repo", type=click.Path(file_okay=False, exists=True), help="A local git repository.")
@click.option("--base", help="With --repo: the target branch or commit (e.g. main).")
@click.option("--head", default="HEAD", show_default=True, help="With --repo: the change's branch or commit.")
@_output_options
@pass_context
def review_command(ctx: Context, diff_file: str | None, repo: str | None, base: str | None, head: str,
                   title: str, repository: str, no_model: bool, fmt: str, output: str | None, fail_on: str) -> None:
    """Review a diff file, or the changes of --head since it left --base in a local repository."""
    if bool(diff_file) == bool(repo):
        raise click.UsageError("give either --diff FILE or --repo PATH --base REF")
    if repo:
        if not base:
            raise click.UsageError("--repo needs --base (the branch the change goes into, e.g. main)")
        data = git_diff(Path(repo), base, head)
        repository = repository or Path(repo).resolve().name
    else:
        stream = click.open_file(diff_file or "-", "rb")
        with stream:
            data = stream.read()
    review = _run(ctx, data, source="cli", title=title, repository=repository, base=base if repo else None,
                  head=head if repo else None, use_model=not no_model, max_bytes=None)
    _emit(ctx, review, fmt, output, fail_on)


@click.command("scan")
@click.argument("path", type=click.Path(file_okay=False, exists=True))
@click.option("--max-bytes", type=int, default=50 << 20, show_default=True,
              help="Largest tree (as a diff) to scan; whole trees are larger than merge requests.")
@_output_options
@pass_context
def scan_command(ctx: Context, path: str, max_bytes: int, title: str, repository: str, no_model: bool, fmt: str,
                 output: str | None, fail_on: str) -> None:
    """Review every file of a tree, as a diff from the empty tree."""
    root = Path(path).resolve()
    data, skipped = tree_as_diff(root)
    for line in skipped:
        click.echo(f"skipped {line}", err=True)
    if not data:
        raise click.ClickException(f"{root} holds no text files to scan")
    review = _run(ctx, data, source="scan", title=title or f"Scan of {root.name}", repository=repository or root.name,
                  base=None, head=None, use_model=not no_model, max_bytes=max_bytes)
    _emit(ctx, review, fmt, output, fail_on)


def register(group: click.Group) -> None:
    group.add_command(review_command)
    group.add_command(scan_command)
