"""Every setting, CLI command and audit tag is documented in offline-docs (as datasette's test_docs)."""

from __future__ import annotations

import re

import click
import pytest

from appliance.audit import AuditTag
from appliance.cli import cli
from appliance.config import setting_fields
from tests.support import ROOT

DOCS = ROOT / "offline-docs"


def page(name: str) -> str:
    return (DOCS / f"{name}.md").read_text(encoding="utf-8")


def commands(group: click.Group, prefix: str = "cortex") -> list[str]:
    found = []
    for name, command in sorted(group.commands.items()):
        full = f"{prefix} {name}"
        if isinstance(command, click.Group):
            found.extend(commands(command, full))
        else:
            found.append(full)
    return found


@pytest.mark.parametrize("name", [f.name for f in setting_fields()])
def test_every_setting_is_documented(name: str) -> None:
    assert f"`{name}`" in page("configuration")


@pytest.mark.parametrize("command", commands(cli))
def test_every_cli_command_is_documented(command: str) -> None:
    assert f"`{command}" in page("cli")


@pytest.mark.parametrize("tag", [t.value for t in AuditTag])
def test_every_audit_tag_is_documented(tag: str) -> None:
    assert f"`{tag}`" in page("audit-events")


def test_the_manual_links_resolve_and_use_no_external_addresses() -> None:
    names = {p.stem for p in DOCS.glob("*.md")}
    for path in DOCS.glob("*.md"):
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([a-z0-9-]+)\.md(?:#[^)]*)?\)", text):
            assert target in names, f"{path.name} links to missing page {target}.md"
        assert not re.search(r"https?://(?!127\.0\.0\.1|localhost|\[::1\]|example\.)", text), path.name


def test_readme_links_and_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python3 build.py serve" in readme and "python3 build.py test" in readme
    for target in re.findall(r"\]\(offline-docs/([a-z0-9-]+)\.md\)", readme):
        assert (DOCS / f"{target}.md").is_file(), target
