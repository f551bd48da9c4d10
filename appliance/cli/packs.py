"""``cortex packs``: test and list rule packs."""

from __future__ import annotations

from pathlib import Path

import click

from appliance.cli.base import Context, pass_context
from appliance.packs import discover_packs, load_pack, run_pack_examples
from appliance.review.engine import RuleSet

__all__ = ["register"]


@click.group("packs")
def packs_group() -> None:
    """Rule packs."""


@packs_group.command("test")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--verbose", "-v", is_flag=True, help="List every example, not only failures.")
def packs_test(directory: str, verbose: bool) -> None:
    """Run a pack's own examples: each rule must flag its positive examples and pass its negative ones."""
    pack = load_pack(Path(directory))
    report = run_pack_examples(pack)
    if report.refused:
        raise click.ClickException(report.refused)
    for result in report.results:
        if verbose or not result.passed:
            state = "ok  " if result.passed else "FAIL"
            kind = "positive" if result.expect == "finding" else "negative"
            click.echo(f"{state} {result.rule_id} example {result.index} ({kind}): {result.detail}")
    for missing in report.missing:
        click.echo(f"FAIL {missing}")
    passed = sum(1 for r in report.results if r.passed)
    click.echo(f"{pack.id} {pack.display_version}: {len(pack.rules)} rules, {passed}/{len(report.results)} examples "
               f"passed" + ("" if report.ok else f", {len(report.failures) + len(report.missing)} problem(s)"))
    if not report.ok:
        raise SystemExit(1)


@packs_group.command("list")
@pass_context
def packs_list(ctx: Context) -> None:
    """List the packs under the rules directory and whether each compiles."""
    packs, errors = discover_packs(ctx.settings.rules_dir)
    ruleset = RuleSet.compile(packs)
    active = {p.id for p in ruleset.packs}
    for pack in packs:
        state = "active" if pack.id in active else "refused"
        click.echo(f"{pack.id:<28} {pack.display_version:<10} {len(pack.rules):>4} rules  {state}  {pack.name}")
    for error in [*errors, *ruleset.refused]:
        click.echo(f"refused: {error.message}")


def register(group: click.Group) -> None:
    group.add_command(packs_group)
