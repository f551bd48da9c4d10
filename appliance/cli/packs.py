"""``cortex packs``: author, sign, import, list and select rule packs; manage the trust root."""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from datetime import timedelta
from pathlib import Path

import click

from appliance import clock
from appliance.audit import Actor
from appliance.cli.base import Context, pass_context
from appliance.errors import PackError
from appliance.packs import (
    TEMPLATES,
    clear_selection,
    current_root,
    import_pack,
    list_selections,
    load_active_packs,
    load_pack,
    run_pack_examples,
    set_selection,
    update_root,
)
from appliance.packs import repo as packs_repo
from appliance.packs.keys import generate_key, key_id, load_private_key, load_public_key
from appliance.packs.manifest import (
    MANIFEST_NAME,
    PackManifest,
    build_tar,
    sign_folder,
    stamp_pack_toml,
)
from appliance.packs.rootstore import root_history
from appliance.packs.trust import Root, check_threshold, make_root, sign_document
from appliance.tasks.services import open_database

__all__ = ["register"]


@click.group("packs")
def packs_group() -> None:
    """Rule packs: author, sign, import, list, select; the trust root."""


# --- authoring ------------------------------------------------------------------------------------


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


@packs_group.command("keygen")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="Private key file to create.")
def packs_keygen(out: str) -> None:
    """Create an Ed25519 signing key (mode 0600) and its .pub beside it; print its key id."""
    key = generate_key(Path(out))
    click.echo(f"key id {key_id(key.public_key())}")
    click.echo(f"private key {out} (keep it off the appliance), public key {out}.pub", err=True)


@packs_group.command("sign")
@click.argument("path", type=click.Path(exists=True))
@click.option("--key", "key_path", type=click.Path(dir_okay=False, exists=True), required=True,
              help="Your private signing key.")
def packs_sign(path: str, key_path: str) -> None:
    """Add one signature to a pack folder or .tar (a threshold is met by several key holders, one run each).

    A folder's pack.toml must carry issued and expires (`cortex packs build` stamps them).
    """
    key = load_private_key(Path(key_path))
    target = Path(path)
    if target.is_dir():
        manifest, dropped = sign_folder(target, key)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "pack"
            _unpack_signed_tar(target, folder)
            manifest, dropped = sign_folder(folder, key)
            build_tar(folder, target)
    if dropped:
        click.echo(f"warning: the files changed since the last signature; {dropped} earlier signature(s) dropped",
                   err=True)
    click.echo(f"signed {manifest.id} {manifest.display_version} (version {manifest.version}) with key "
               f"{key_id(key.public_key())[:16]}…: {len(manifest.signatures)} signature(s)")


def _unpack_signed_tar(tar_path: Path, folder: Path) -> None:
    """Unpack a pack tar for re-signing, accepting only the files its own manifest lists."""
    folder.mkdir(parents=True)
    with tarfile.open(tar_path, "r:") as tar:
        handle = tar.extractfile(MANIFEST_NAME)
        if handle is None:
            raise PackError(f"{tar_path} has no {MANIFEST_NAME}")
        manifest = PackManifest.parse(handle.read())
        (folder / MANIFEST_NAME).write_bytes(manifest.document())
        for entry in manifest.files:
            try:
                member = tar.getmember(entry.path)
            except KeyError as exc:
                raise PackError(f"{tar_path} lacks {entry.path}, which its manifest lists") from exc
            source = tar.extractfile(member)
            if source is None or not member.isreg() or member.size != entry.length:
                raise PackError(f"{entry.path} in {tar_path} does not match the manifest")
            (folder / entry.path).parent.mkdir(parents=True, exist_ok=True)
            (folder / entry.path).write_bytes(source.read(entry.length))


@packs_group.command("build")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--key", "key_paths", type=click.Path(dir_okay=False, exists=True), multiple=True, required=True,
              help="Signing key; repeat for several signatures.")
@click.option("--out", "out", type=click.Path(), required=True,
              help="The .tar to write (or a folder, for <id>-<version>.tar inside it).")
@click.option("--valid-days", type=int, default=365, show_default=True, help="Days until the pack expires.")
def packs_build(directory: str, key_paths: tuple[str, ...], out: str, valid_days: int) -> None:
    """Stamp issued/expires, sign and write a deterministic .tar of a pack folder (the folder is not changed)."""
    pack = load_pack(Path(directory))
    report = run_pack_examples(pack)
    if not report.ok:
        raise click.ClickException(f"{pack.id}: the pack's examples fail; run `cortex packs test {directory}`")
    target = Path(out)
    if target.is_dir() or not target.suffix:
        target = target / f"{pack.id}-{pack.version}.tar"
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / pack.id
        shutil.copytree(directory, staging, ignore=shutil.ignore_patterns(MANIFEST_NAME, "__pycache__"))
        stamp_pack_toml(staging, issued=clock.now().replace(microsecond=0), valid_for=timedelta(days=valid_days))
        for key_path in key_paths:
            sign_folder(staging, load_private_key(Path(key_path)))
        build_tar(staging, target)
    click.echo(f"{target}: {pack.id} {pack.display_version} (version {pack.version}), {len(pack.rules)} rules, "
               f"{len(key_paths)} signature(s), valid {valid_days} days")


# --- the appliance's packs ------------------------------------------------------------------------


@packs_group.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--allow-downgrade", is_flag=True, help="Accept a lower version than the active one (needs --reason).")
@click.option("--reason", help="Why (recorded in the audit trail); required for a downgrade.")
@pass_context
def packs_import(ctx: Context, paths: tuple[str, ...], allow_downgrade: bool, reason: str | None) -> None:
    """Verify and activate signed packs (folders or .tar files, e.g. from a read-only USB mount)."""
    db = open_database(ctx.settings)
    failed = 0
    for path in paths:
        try:
            result = import_pack(db, ctx.settings, Path(path), actor=Actor.cli(), allow_downgrade=allow_downgrade,
                                 reason=reason)
        except PackError as exc:
            failed += 1
            click.echo(f"refused   {path}: {exc.message}", err=True)
            continue
        click.echo(f"{result.outcome:<9} {result.pack_id} {result.display_version} (version {result.version}), "
                   f"signed by {len(result.signers)} key(s)")
    if failed:
        raise click.ClickException(f"{failed} of {len(paths)} pack(s) refused; the active packs are unchanged "
                                   "for those")


@packs_group.command("list")
@pass_context
def packs_list(ctx: Context) -> None:
    """List the active packs."""
    db = open_database(ctx.settings)
    with db.read() as tx:
        rows = packs_repo.active_packs(tx)
    if not rows:
        click.echo("no active packs; import signed packs with `cortex packs import PATH`")
    # What a review would load now: the files checked against their manifests and the current root.
    _, refused = load_active_packs(db, ctx.settings)
    reasons = {e.pack_id: e.message for e in refused}
    now = clock.now()
    for row in rows:
        note = f"  DOWNGRADED: {row['downgrade_reason']}" if row["downgrade_reason"] else ""
        if clock.from_iso(row["expires"]) <= now:
            note += "  EXPIRED: import a renewed pack"
        state = "REFUSED" if row["id"] in reasons else "active"
        click.echo(f"{row['id']:<22} {row['display_version']:<8} v{row['version']:<4} {row['rules']:>4} rules  "
                   f"{state:<8} expires {row['expires'][:10]}  {row['name']}{note}")
        if row["id"] in reasons:
            click.echo(f"    {reasons[row['id']]}")


@packs_group.command("show")
@click.argument("pack_id")
@pass_context
def packs_show(ctx: Context, pack_id: str) -> None:
    """Show an active pack: version, signers, validity, frameworks and rules."""
    db = open_database(ctx.settings)
    with db.read() as tx:
        row = packs_repo.active_pack(tx, pack_id)
    if row is None:
        raise click.ClickException(f"no active pack {pack_id!r}; `cortex packs list` shows the active ones")
    pack = load_pack(ctx.settings.data_dir / row["path"])
    for key in ("id", "name", "display_version", "version", "channel", "issued", "expires", "activated_at",
                "activated_by", "content_digest", "path"):
        click.echo(f"{key:<16} {row[key]}")
    click.echo(f"{'signers':<16} {', '.join(s[:16] + '…' for s in row['signers'])}")
    click.echo(f"{'frameworks':<16} {', '.join(row['frameworks'])}")
    if row["downgrade_reason"]:
        click.echo(f"{'downgraded':<16} {row['downgrade_reason']}")
    click.echo(f"rules ({len(pack.rules)}):")
    for rule in pack.rules:
        controls = ", ".join(f"{f} {c}" for f, c in rule.controls)
        click.echo(f"  {rule.id:<18} {rule.severity.value:<8} {rule.title}" + (f"  [{controls}]" if controls else ""))


@packs_group.command("select")
@click.option("--repository", help="The repository (as reviews record it); omit for the default selection.")
@click.option("--template", type=click.Choice(sorted(TEMPLATES)), help="An industry template.")
@click.option("--pack", "packs", multiple=True, help="A pack id; repeat for several.")
@click.option("--strict/--no-strict", default=None, help="Raise every severity one level.")
@click.option("--clear", is_flag=True, help="Remove the selection (the repository falls back to the default).")
@pass_context
def packs_select(ctx: Context, repository: str | None, template: str | None, packs: tuple[str, ...],
                 strict: bool | None, clear: bool) -> None:
    """Choose which packs review a repository (or, without --repository, every repository by default)."""
    db = open_database(ctx.settings)
    if clear:
        if not clear_selection(db, repository=repository, actor=Actor.cli()):
            raise click.ClickException("there is no such selection")
        click.echo("selection removed")
        return
    chosen = set_selection(db, repository=repository, actor=Actor.cli(), template=template,
                           packs=list(packs) if packs else None, strict=strict)
    strict_note = " (strict severities)" if chosen["strict"] else ""
    click.echo(f"{chosen['scope']}: {', '.join(chosen['packs'])}{strict_note}")
    if chosen["not_active"]:
        click.echo(f"note: template packs not active yet: {', '.join(chosen['not_active'])}", err=True)


@packs_group.command("selections")
@pass_context
def packs_selections(ctx: Context) -> None:
    """List the pack selections and the templates."""
    for row in list_selections(open_database(ctx.settings)):
        label = f"template {row['template']}" if row["template"] else "custom"
        click.echo(f"{row['scope']:<32} {label:<20} {', '.join(row['packs'])}"
                   + (" (strict)" if row["strict"] else ""))
    for name, template in TEMPLATES.items():
        click.echo(f"template {name:<12} {', '.join(template['packs'])}" + (" (strict)" if template["strict"] else ""))


# --- the trust root -------------------------------------------------------------------------------


@click.group("root")
def root_group() -> None:
    """Create and sign trust root documents (publisher side)."""


@root_group.command("init")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The root JSON to write.")
@click.option("--root-key", "root_keys", type=click.Path(dir_okay=False, exists=True), multiple=True, required=True,
              help="A root key (public or private PEM); repeat.")
@click.option("--root-threshold", type=int, default=1, show_default=True)
@click.option("--pack-key", "pack_keys", type=click.Path(dir_okay=False, exists=True), multiple=True, required=True,
              help="A pack-signing key (public or private PEM); repeat.")
@click.option("--pack-threshold", type=int, default=1, show_default=True)
@click.option("--version", "version", type=int, default=1, show_default=True)
@click.option("--valid-days", type=int, default=3650, show_default=True)
@click.option("--environment", type=click.Choice(["production", "development"]), default="production",
              show_default=True)
def root_init(out: str, root_keys: tuple[str, ...], root_threshold: int, pack_keys: tuple[str, ...],
              pack_threshold: int, version: int, valid_days: int, environment: str) -> None:
    """Write an unsigned root document; then each root key holder runs `cortex packs root sign`."""
    root = make_root(version=version, environment=environment,
                     expires=clock.now().replace(microsecond=0) + timedelta(days=valid_days),
                     root_keys=[load_public_key(Path(p)) for p in root_keys], root_threshold=root_threshold,
                     pack_keys=[load_public_key(Path(p)) for p in pack_keys], pack_threshold=pack_threshold)
    Path(out).write_text(root.document)
    click.echo(f"{out}: root version {version} ({environment}), root {root_threshold}-of-{len(set(root_keys))}, "
               f"packs {pack_threshold}-of-{len(set(pack_keys))}; unsigned")


@root_group.command("sign")
@click.argument("root_file", type=click.Path(dir_okay=False, exists=True))
@click.option("--key", "key_path", type=click.Path(dir_okay=False, exists=True), required=True)
def root_sign(root_file: str, key_path: str) -> None:
    """Add one root key's signature to a root document."""
    path = Path(root_file)
    root = Root.parse(path.read_bytes(), where=root_file)
    key = load_private_key(Path(key_path))
    signatures = sign_document(root.signed, root.signatures, key)
    path.write_text(json.dumps({"signed": root.signed, "signatures": signatures}, indent=2, sort_keys=True) + "\n")
    signed_root = Root.parse(path.read_bytes(), where=root_file)
    try:
        have = len(check_threshold(signed_root.payload, signed_root.signatures, signed_root.keys,
                                   signed_root.roles["root"], what=root_file, role_name="root"))
        state = f"meets its own root threshold ({have})"
    except PackError:
        state = f"below its own root threshold of {signed_root.roles['root'].threshold}"
    click.echo(f"signed {root_file} with key {key_id(key.public_key())[:16]}…; {state}")


@click.group("trust")
def trust_group() -> None:
    """The appliance's trusted root."""


@trust_group.command("show")
@pass_context
def trust_show(ctx: Context) -> None:
    """Show the trusted root (installing the shipped one on first use) and its history."""
    db = open_database(ctx.settings)
    root = current_root(db, ctx.settings)
    click.echo(f"root version {root.version} ({root.environment}), expires {clock.iso(root.expires)}")
    for name, role in root.roles.items():
        ids = ", ".join(k[:16] + "…" for k in sorted(role.keyids))
        click.echo(f"  {name:<6} {role.threshold}-of-{len(role.keyids)}: {ids}")
    if root.environment == "development":
        click.echo("  development root: packs signed with a development key are trusted; never ship this", err=True)
    for row in root_history(db):
        click.echo(f"  accepted version {row['version']} at {row['accepted_at']} (sha256 {str(row['sha256'])[:16]}…)")


@trust_group.command("update")
@click.argument("root_file", type=click.Path(dir_okay=False, exists=True))
@pass_context
def trust_update(ctx: Context, root_file: str) -> None:
    """Rotate to a new root: version + 1, signed by thresholds of the current and of the new root keys."""
    new = update_root(open_database(ctx.settings), ctx.settings, Path(root_file), actor=Actor.cli())
    click.echo(f"trusted root is now version {new.version} ({new.environment})")


packs_group.add_command(root_group)
packs_group.add_command(trust_group)


def register(group: click.Group) -> None:
    group.add_command(packs_group)

