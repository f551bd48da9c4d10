"""Checks that what runs is what was shipped and recorded: release files, model, rule packs, audit chain, clock.

Each reuses the appliance's own verification (the model registry's sha256 check, the pack loader's file and
signature checks, the audit chain verifier) and only reads: no key is created, no root installed, no event
recorded.
"""

from __future__ import annotations

from appliance import __version__, clock
from appliance.audit.keys import ID_FILE, KEY_FILE, PUBLIC_FILE, PublicKey, key_dir, load_public_key
from appliance.audit.log import verify_database
from appliance.errors import ApplianceError, ModelError
from appliance.inference.registry import list_models, load_manifest, verify_model_file
from appliance.packs import load_active_packs
from appliance.packs import repo as packs_repo
from appliance.verify.context import VerifyContext
from appliance.verify.manifest import (
    KEY_NAME,
    MANIFEST_NAME,
    key_fingerprint,
    read_manifest,
    release_key,
    verify_release,
)
from appliance.verify.models import Status, Verdict, checklist_item

__all__ = ["check_audit_chain", "check_clock", "check_model", "check_packs", "check_release"]

_MAX_LISTED = 40  # problems shown per check; the rest are counted


def _listed(lines: list[str]) -> list[str]:
    if len(lines) <= _MAX_LISTED:
        return lines
    return [*lines[:_MAX_LISTED], f"… and {len(lines) - _MAX_LISTED} more"]


def _no_database(ctx: VerifyContext) -> Verdict:
    return Verdict(Status.WARN,
                   [ctx.db_error or f"no database at {ctx.settings.db_path}: the appliance was never started "
                    "with this data directory"],
                   "point cortex verify at the appliance's configuration (--config, or CORTEX_CONFIG) or data "
                   "directory (--data-dir); on a new install, run `cortex init` first")


@checklist_item("release", "Installed files match the signed release manifest")
def check_release(ctx: VerifyContext) -> Verdict:
    """1. Every installed file matches the release's signed MANIFEST, and the signature verifies."""
    if ctx.release_dir is None:
        return Verdict(Status.WARN,
                       ["not an installed release (running from a source checkout)"],
                       "run the installed binary (PREFIX/current/cortex verify) or name the release with "
                       "--release DIR")
    where = f"release directory {ctx.release_dir} (from {ctx.release_source})"
    problems = verify_release(ctx.release_dir, ctx.release_key_pem)
    if problems:
        return Verdict(Status.FAIL, [where, *_listed(problems)],
                       "reinstall this release from the install media (./install on the USB bundle), then find out "
                       "who changed the files: the audit log and the host's own logs")
    manifest = read_manifest(ctx.release_dir / MANIFEST_NAME)
    pem = ctx.release_key_pem if ctx.release_key_pem is not None else (ctx.release_dir / KEY_NAME).read_bytes()
    source = "--release-key" if ctx.release_key_pem is not None else f"{KEY_NAME} in the release directory"
    evidence = [where,
                f"{len(manifest.files)} files match {MANIFEST_NAME}: {manifest.product} {manifest.version} "
                f"{manifest.arch}, built {manifest.built}",
                f"{MANIFEST_NAME} signature verifies with release key {key_fingerprint(release_key(pem))} "
                f"({source}); compare this fingerprint with the one published with the release"]
    if manifest.version != __version__:
        return Verdict(Status.WARN,
                       [*evidence, f"this cortex is version {__version__}, the release is {manifest.version}"],
                       "run the release's own binary (PREFIX/current/cortex verify), or name the installed release "
                       "with --release DIR")
    return Verdict(Status.PASS, evidence)


@checklist_item("model", "The active model matches its pinned sha256")
def check_model(ctx: VerifyContext) -> Verdict:
    """2. The active model's file has the size and sha256 its manifest (or site registration) pins."""
    settings = ctx.settings
    manifest = settings.models_dir / "manifest.toml"
    try:
        entries = list_models(ctx.db, settings) if ctx.db is not None else load_manifest(settings.models_dir)
    except ApplianceError as exc:
        return Verdict(Status.FAIL, [exc.message], f"restore {manifest} from the install media")
    entry = next((e for e in entries if e.id == settings.model), None)
    disabled = "" if settings.model_enabled else " (model_enabled = false: reviews run rules only)"
    if entry is None:
        known = ", ".join(e.id for e in entries) or "none"
        return Verdict(Status.FAIL if settings.model_enabled else Status.WARN,
                       [f"model {settings.model!r} is not registered (registered: {known}; manifest {manifest})"
                        + disabled],
                       "set `model` to a registered id, or register the file with `cortex models add FILE.gguf "
                       "--id NAME`")
    pinned = f"pinned in {manifest}" if entry.origin == "manifest" else "pinned when added with `cortex models add`"
    try:
        verify_model_file(entry)
    except ModelError as exc:
        missing = not entry.file.is_file()
        return Verdict(Status.WARN if missing and not settings.model_enabled else Status.FAIL,
                       [exc.message + disabled, f"sha256 {entry.sha256} {pinned}"],
                       "restore the model file from the install media (or add the model again); a file that "
                       "changed on disk was tampered with or damaged")
    return Verdict(Status.PASS,
                   [f"model {entry.id}: {entry.file} has sha256 {entry.sha256}, {pinned}" + disabled])


@checklist_item("packs", "Active rule packs verify against the trust root")
def check_packs(ctx: VerifyContext) -> Verdict:
    """3. Every active rule pack's files match its signed manifest, signed by the current trust root's keys."""
    if ctx.db is None:
        return _no_database(ctx)
    with ctx.db.read() as tx:
        root_row = packs_repo.latest_root(tx)
        active = packs_repo.active_packs(tx)
    if not active:
        return Verdict(Status.WARN, ["no rule pack is active: reviews run the model only"],
                       "import the signed packs from the install media: cortex packs import /media/usb/packs/*.tar")
    if root_row is None:  # load_active_packs would install the shipped root: a write, so not here
        return Verdict(Status.FAIL,
                       [f"{len(active)} pack(s) are active but the database holds no trusted root"],
                       "restore the database from a backup; packs are activated only after a trusted root exists")
    packs, errors = load_active_packs(ctx.db, ctx.settings)
    root = f"trusted root version {root_row['version']} ({root_row['environment']})"
    evidence = [root, *(f"{p.id} {p.display_version} (version {p.version}): files and signatures verify, sha256 "
                        f"{p.digest[:16]}…" for p in packs)]
    if errors:
        return Verdict(Status.FAIL, [*evidence, *(e.message for e in errors)],
                       "re-import the refused packs from the install media (cortex packs import FILE.tar repairs a "
                       "damaged folder); a pack refused for its signatures needs a release signed by current keys")
    now = clock.now()
    expired = [f"{p.id} {p.display_version} expired on {clock.iso(p.expires)}" for p in packs
               if p.expires is not None and p.expires <= now]
    if expired:
        return Verdict(Status.WARN, [*evidence, *expired],
                       "import renewed packs from the publisher's next media")
    return Verdict(Status.PASS, evidence)


def _audit_key(ctx: VerifyContext) -> tuple[PublicKey | None, str | None, list[str]]:
    folder = key_dir(ctx.settings.data_dir)
    notes: list[str] = []
    public: PublicKey | None = None
    for path in (folder / KEY_FILE, folder / PUBLIC_FILE):
        if path.exists():
            try:
                public = load_public_key(path)
                break
            except ApplianceError as exc:
                notes.append(exc.message)
    if public is None and not notes:
        notes.append(f"no audit key in {folder} yet: no checkpoint can have been signed")
    try:
        appliance_id: str | None = (folder / ID_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        appliance_id = None
    return public, appliance_id, notes


@checklist_item("audit-chain", "The audit chain verifies")
def check_audit_chain(ctx: VerifyContext) -> Verdict:
    """4. The audit log's hash chain, its signed checkpoints (database and files) and purge markers verify."""
    if ctx.db is None:
        return _no_database(ctx)
    public, appliance_id, notes = _audit_key(ctx)
    report = verify_database(ctx.db, ctx.settings.data_dir, public=public, appliance_id=appliance_id, read_only=True)
    evidence = [report.summary(), *notes, *report.notes]
    if public is not None:
        evidence.append(f"checkpoints checked with audit key {public.key_id}")
    if not report.ok:
        return Verdict(Status.FAIL, evidence,
                       "the log was changed outside the appliance: keep the database as evidence (copy it off the "
                       "box), compare with the checkpoints auditors hold (cortex audit verify --checkpoint FILE) "
                       "and follow the site's incident procedure")
    return Verdict(Status.PASS, evidence)


@checklist_item("clock", "The clock is not behind the audit log")
def check_clock(ctx: VerifyContext) -> Verdict:
    """11. The clock is not earlier than the newest audit event (nor the newest accepted pack's issue time)."""
    if ctx.db is None:
        return _no_database(ctx)
    with ctx.db.read() as tx:
        newest = tx.one("SELECT seq, at FROM audit_events ORDER BY seq DESC LIMIT 1")
        latest_at = tx.scalar("SELECT MAX(at) FROM audit_events")
        floor = packs_repo.get_state(tx, packs_repo.CLOCK_FLOOR)
    now = clock.iso(ctx.now)
    evidence = [f"clock reads {now}"]
    failed: list[str] = []
    if newest is None:
        evidence.append("the audit log is empty")
    else:
        evidence.append(f"newest audit event: seq {newest['seq']} at {newest['at']}")
        if latest_at and latest_at > newest["at"]:
            evidence.append(f"latest time in the audit log: {latest_at}")
        if latest_at and now < latest_at:
            failed.append(f"the clock ({now}) is earlier than the newest audit event ({latest_at})")
    if floor:
        evidence.append(f"newest issue time of an accepted rule pack: {floor}")
        if now < floor:
            failed.append(f"the clock ({now}) is earlier than a rule pack the appliance accepted ({floor})")
    if failed:
        return Verdict(Status.FAIL, [*evidence, *failed],
                       "set the clock from the site's time source (chrony/ntpd against the site's NTP server, or "
                       "by hand with `date -s`), then find out why it went back: audit times and pack expiry "
                       "depend on it")
    return Verdict(Status.PASS, evidence)
