"""Import a signed pack from a folder or a .tar (USB media, read-only mounts welcome).

Order matters, after The Update Framework's threat model:

1. read only the manifest (bounded) and check a threshold of the packs role's signatures over it;
2. check product, channel, minimum appliance version, expiry against a clock floor (the latest issued time
   ever accepted, so setting the clock back does not revive an expired pack) and the version against the
   active one (lower: refused unless an admin downgrades with a reason; equal: nothing to do);
3. list the source: only regular files named in the manifest, each exactly its signed length (no links,
   devices, sparse files, '..' or absolute paths, nothing extra, nothing missing);
4. copy each file into a staging folder, reading at most its signed length plus one byte and checking its
   sha256, fsync;
5. load the staged pack (its pack.toml must name the manifest's id and version), compile it, and run its
   own examples: all must pass;
6. activate: rename the staging folder into place and switch the database row in one transaction with
   the audit events. A power cut before that commit leaves the old pack active.

Every refusal names its reason and is audited; the active packs never change on a refusal.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from appliance import __version__, clock
from appliance.audit import Actor, AuditTag, record_event
from appliance.config import Settings
from appliance.errors import PackError
from appliance.packs import repo
from appliance.packs.integrity import check_pack_files
from appliance.packs.loader import load_pack
from appliance.packs.manifest import LIMITS, MANIFEST_NAME, PRODUCT, PackManifest, check_member_path
from appliance.packs.rootstore import current_root
from appliance.packs.testing import run_pack_examples
from appliance.packs.trust import check_threshold
from appliance.store import Database

__all__ = ["ImportResult", "import_pack", "packs_dir"]

_FUTURE_SKEW = timedelta(days=2)


@dataclass(frozen=True)
class ImportResult:
    pack_id: str
    version: int
    display_version: str
    outcome: str  # activated, downgraded, unchanged, renewed, repaired
    signers: tuple[str, ...]
    path: Path | None


@dataclass(frozen=True)
class _Member:
    name: str
    kind: str  # file, dir, link, other
    size: int


def packs_dir(settings: Settings) -> Path:
    return settings.data_dir / "packs"


def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return (999_999,)


class _Source:
    """A pack on media: a folder or a tar file. Never written to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tar: tarfile.TarFile | None = None
        self._infos: dict[str, tarfile.TarInfo] = {}
        self._listing: list[_Member] = []
        if path.is_dir():
            self.kind = "folder"
        elif path.is_file() and tarfile.is_tarfile(path):
            self.kind = "tar"
            self._tar = tarfile.open(path, "r:")  # noqa: SIM115 - closed by close()
            try:
                self._scan_tar(self._tar)
            except BaseException:
                self._tar.close()
                raise
        else:
            raise PackError(f"{path} is neither a pack folder nor a .tar archive")

    def _scan_tar(self, tar: tarfile.TarFile) -> None:
        """Read the headers once, at most a bounded number: a tar bomb of entries is refused here."""
        try:
            while (info := tar.next()) is not None:
                if len(self._listing) >= LIMITS["files"] + 64:
                    raise PackError(f"the archive holds more than {LIMITS['files']} entries")
                name = info.name.removeprefix("./")
                kind = ("sparse" if info.issparse() else "file" if info.isreg() else "dir" if info.isdir()
                        else "link" if info.issym() or info.islnk() else "other")
                self._listing.append(_Member(name, kind, info.size))
                self._infos.setdefault(name, info)
        except tarfile.TarError as exc:
            raise PackError(f"{self.path} is a damaged or truncated archive ({exc})") from exc

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    def members(self) -> Iterator[_Member]:
        if self._tar is not None:
            yield from self._listing
            return
        for root, dirs, files in os.walk(self.path, followlinks=False):
            for name in sorted(dirs + files):
                full = Path(root) / name
                rel = full.relative_to(self.path).as_posix()
                st = full.lstat()
                if full.is_symlink():
                    kind = "link"
                elif full.is_dir():
                    kind = "dir"
                elif full.is_file():
                    kind = "file"
                else:
                    kind = "other"
                yield _Member(rel, kind, st.st_size)

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        if self._tar is not None:
            info = self._infos.get(name)
            handle = self._tar.extractfile(info) if info is not None and info.isreg() else None
            if handle is None:
                raise FileNotFoundError(name)
            with handle:
                yield handle
            return
        full = self.path / name
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            yield handle

    def manifest_bytes(self) -> bytes:
        try:
            with self.open(MANIFEST_NAME) as handle:
                data = handle.read(LIMITS["manifest_bytes"] + 1)
        except FileNotFoundError as exc:
            raise PackError(f"{self.path} has no {MANIFEST_NAME}: it is not a signed pack") from exc
        except OSError as exc:
            raise PackError(f"cannot read {MANIFEST_NAME} in {self.path}: {exc.strerror}") from exc
        if len(data) > LIMITS["manifest_bytes"]:
            raise PackError(f"{MANIFEST_NAME} is larger than {LIMITS['manifest_bytes'] >> 20} MB")
        return data


def _refuse(db: Database, actor: Actor, source: Path, reason: str, *, pack_id: str | None = None,
            version: int | None = None) -> PackError:
    with db.write() as tx:
        record_event(tx, AuditTag.PACKS_PACK_REFUSED, actor, target=f"pack:{pack_id or '?'}", outcome="failure",
                     details={"source": str(source), "version": version, "reason": reason})
    return PackError(f"pack refused ({source.name}): {reason}", pack_id=pack_id)


def _check_members(source: _Source, manifest: PackManifest) -> None:
    listed = {entry.path: entry for entry in manifest.files}
    parents = {"/".join(p.split("/")[:i]) for p in listed for i in range(1, p.count("/") + 1)}
    seen: set[str] = set()
    for member in source.members():
        name = member.name.rstrip("/")
        if name == MANIFEST_NAME:
            if member.kind != "file":
                raise PackError(f"{MANIFEST_NAME} is not a regular file")
            continue
        problem = check_member_path(name)
        if problem:
            raise PackError(f"the entry {name!r} is not allowed: {problem}")
        if member.kind == "dir":
            if name not in parents:
                raise PackError(f"the folder {name!r} holds no file of the signed manifest")
            continue
        if member.kind != "file":
            what = {"link": "symbolic or hard link", "sparse": "sparse file"}.get(member.kind, "device or special file")
            raise PackError(f"{name!r} is a {what}; a pack holds regular files only")
        entry = listed.get(name)
        if entry is None:
            raise PackError(f"{name!r} is not in the signed manifest")
        if name in seen:
            raise PackError(f"{name!r} appears twice in the archive")
        seen.add(name)
        if member.size > entry.length:
            raise PackError(f"{name!r} is {member.size} bytes, longer than the signed {entry.length}")
        if member.size < entry.length:
            raise PackError(f"{name!r} is {member.size} bytes, shorter than the signed {entry.length}")
    missing = sorted(set(listed) - seen)
    if missing:
        raise PackError(f"the signed manifest lists {missing[0]!r}, which the pack does not contain")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stage(source: _Source, manifest: PackManifest, staging: Path) -> None:
    staging.mkdir(parents=True)
    for entry in manifest.files:
        target = staging / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        with source.open(entry.path) as src, target.open("xb") as out:
            # Never read past the signed length (plus one byte, to notice a longer file).
            while size <= entry.length:
                block = src.read(min(1 << 16, entry.length + 1 - size))
                if not block:
                    break
                size += len(block)
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if size != entry.length:
            raise PackError(f"{entry.path!r} is {'longer' if size > entry.length else 'shorter'} than the signed "
                            f"{entry.length} bytes")
        if digest.hexdigest() != entry.sha256:
            raise PackError(f"{entry.path!r} does not match its signed sha256 (it was changed or belongs to "
                            "another pack)")
    (staging / MANIFEST_NAME).write_bytes(manifest.document())
    for folder in sorted({p.parent for p in staging.rglob("*")}, key=lambda p: len(p.parts), reverse=True):
        _fsync_dir(folder)


def import_pack(db: Database, settings: Settings, source_path: Path, *, actor: Actor, allow_downgrade: bool = False,
                reason: str | None = None) -> ImportResult:
    """Verify and activate the pack at ``source_path`` (see the module docstring for the order of checks).

    Raises:
        PackError: the pack is refused; the message says why. The refusal is audited and the active
            packs are unchanged.
    """
    source_path = Path(source_path)
    try:
        source = _Source(source_path)
    except PackError as exc:
        raise _refuse(db, actor, source_path, exc.message) from exc
    staging: Path | None = None
    manifest: PackManifest | None = None
    try:
        try:
            root = current_root(db, settings)
            manifest = PackManifest.parse(source.manifest_bytes())
            signers = check_threshold(manifest.payload, manifest.signatures, root.keys, root.roles["packs"],
                                      what=f"pack {manifest.id} version {manifest.version}", role_name="packs")
            _check_policy(db, settings, manifest, allow_downgrade=allow_downgrade, reason=reason)
        except PackError as exc:
            raise _refuse(db, actor, source_path, exc.message, pack_id=manifest.id if manifest else None,
                          version=manifest.version if manifest else None) from exc
        assert manifest is not None  # noqa: S101 - set above or refused
        with db.read() as tx:
            active = repo.active_pack(tx, manifest.id)
        try:
            _check_members(source, manifest)
            staging = packs_dir(settings) / ".staging" / f"{manifest.id}-{manifest.version}-{secrets.token_hex(4)}"
            _stage(source, manifest, staging)
            identity = content_identity(staging)
        except PackError as exc:
            raise _refuse(db, actor, source_path, exc.message, pack_id=manifest.id, version=manifest.version) from exc
        if active is not None and active["version"] == manifest.version:
            if active["content_digest"] != identity:
                raise _refuse(db, actor, source_path, f"version {manifest.version} is already active with different "
                              "content; a changed pack needs a higher version", pack_id=manifest.id,
                              version=manifest.version)
            return _same_version(db, settings, manifest, active, staging, signers, actor=actor, source=source_path)
        try:
            pack = load_pack(staging)
            for field_name, expected in (("id", manifest.id), ("version", manifest.version),
                                         ("product", manifest.product), ("channel", manifest.channel)):
                if getattr(pack, field_name) != expected:
                    raise PackError(f"pack.toml says {field_name} = {getattr(pack, field_name)!r} but the signed "
                                    f"manifest says {expected!r}")
            report = run_pack_examples(pack)
            if not report.ok:
                first = report.refused or (report.missing[0] if report.missing else
                                           f"{report.failures[0].rule_id} example {report.failures[0].index}: "
                                           f"{report.failures[0].detail}")
                raise PackError(f"the pack's own examples fail ({len(report.failures) + len(report.missing)} "
                                f"problem(s)); first: {first}")
        except PackError as exc:
            raise _refuse(db, actor, source_path, exc.message, pack_id=manifest.id, version=manifest.version) from exc
        return _activate(db, settings, manifest, staging, pack, signers, identity, actor=actor, active=active,
                         reason=reason)
    finally:
        source.close()
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _check_policy(db: Database, settings: Settings, manifest: PackManifest, *, allow_downgrade: bool,
                  reason: str | None) -> None:
    if manifest.product != PRODUCT:
        raise PackError(f"the pack is for {manifest.product!r}, not {PRODUCT}")
    if manifest.channel != settings.pack_channel:
        raise PackError(f"the pack is for the {manifest.channel!r} channel; this appliance takes "
                        f"{settings.pack_channel!r} (setting pack_channel)")
    if _version_tuple(manifest.min_appliance_version) > _version_tuple(__version__):
        raise PackError(f"the pack needs appliance {manifest.min_appliance_version} or newer; this is {__version__}")
    now = clock.now()
    with db.read() as tx:
        floor_text = repo.get_state(tx, repo.CLOCK_FLOOR)
        active = repo.active_pack(tx, manifest.id)
    floor = max(now, clock.from_iso(floor_text)) if floor_text else now
    if manifest.expires <= manifest.issued:
        raise PackError("the pack expires before it was issued")
    if manifest.issued > now + _FUTURE_SKEW:
        # A pack "from the future" would raise the clock floor past valid packs for good: refuse it.
        raise PackError(f"the pack was issued at {clock.iso(manifest.issued)}, more than {_FUTURE_SKEW.days} days "
                        "ahead of this appliance's clock; check the clock of the appliance (and of the publisher)")
    if manifest.expires <= floor:
        since = "" if floor == now else (f" (the appliance has accepted a pack issued at {clock.iso(floor)}, so "
                                         "a clock set back does not make it valid)")
        raise PackError(f"the pack expired at {clock.iso(manifest.expires)}{since}")
    if active is not None and manifest.version < active["version"]:
        if not allow_downgrade:
            raise PackError(f"version {manifest.version} is older than the active version {active['version']}; "
                            "an admin may downgrade with --allow-downgrade and --reason")
        if not (reason or "").strip():
            raise PackError("a downgrade needs a reason (--reason), recorded in the audit trail")


def content_identity(folder: Path) -> str:
    """What the pack is, apart from when it was signed: every file's sha256, with pack.toml's issued and
    expires lines left out. Re-signing the same content (to extend its validity) keeps its identity."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
        data = path.read_bytes()
        if path.relative_to(folder).as_posix() == "pack.toml":
            data = b"\n".join(line for line in data.split(b"\n")
                              if not line.lstrip().startswith((b"issued", b"expires")))
        h.update(path.relative_to(folder).as_posix().encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def _same_version(db: Database, settings: Settings, manifest: PackManifest, active: dict[str, Any], staging: Path,
                  signers: set[str], *, actor: Actor, source: Path) -> ImportResult:
    """The active version again: nothing to do, a re-issue with a later expiry that renews it, or a repair
    when the active folder no longer matches its manifest (edited or damaged on disk)."""
    details = {"version": manifest.version, "source": str(source), "expires": clock.iso(manifest.expires)}
    try:
        check_pack_files(settings.data_dir / active["path"])
    except PackError as exc:
        pack = load_pack(staging)
        result = _activate(db, settings, manifest, staging, pack, signers, active["content_digest"], actor=actor,
                           active=active, reason=None, repair=exc.message)
        return ImportResult(result.pack_id, result.version, result.display_version, "repaired", result.signers,
                            result.path)
    if manifest.expires <= clock.from_iso(active["expires"]):
        with db.write() as tx:
            record_event(tx, AuditTag.PACKS_PACK_UNCHANGED, actor, target=f"pack:{manifest.id}", details=details)
        return ImportResult(manifest.id, manifest.version, manifest.display_version, "unchanged",
                            tuple(sorted(signers)), settings.data_dir / active["path"])
    target = settings.data_dir / active["path"]
    # Same files apart from pack.toml's dates: the renewed manifest and pack.toml replace the old ones.
    for name in ("pack.toml", MANIFEST_NAME):
        tmp = target / f".{name}.new"
        shutil.copyfile(staging / name, tmp)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        tmp.replace(target / name)
    _fsync_dir(target)
    with db.write() as tx:
        tx.execute("UPDATE packs SET issued = ?, expires = ?, signers = ?, manifest_sha256 = ? WHERE id = ?",
                   (clock.iso(manifest.issued), clock.iso(manifest.expires), json.dumps(sorted(signers)),
                    hashlib.sha256(manifest.document()).hexdigest(), manifest.id))
        floor = repo.get_state(tx, repo.CLOCK_FLOOR)
        if floor is None or clock.from_iso(floor) < manifest.issued:
            repo.set_state(tx, repo.CLOCK_FLOOR, clock.iso(manifest.issued))
        record_event(tx, AuditTag.PACKS_PACK_RENEWED, actor, target=f"pack:{manifest.id}",
                     details={**details, "previous_expires": active["expires"]})
    return ImportResult(manifest.id, manifest.version, manifest.display_version, "renewed",
                        tuple(sorted(signers)), target)


def _activate(db: Database, settings: Settings, manifest: PackManifest, staging: Path, pack: Any,
              signers: set[str], identity: str, *, actor: Actor, active: dict[str, Any] | None,
              reason: str | None, repair: str | None = None) -> ImportResult:
    target = packs_dir(settings) / manifest.id / f"v{manifest.version}-{identity[:12]}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        # The same content was activated before: keep that folder only if it is still intact.
        try:
            check_pack_files(target)
            if repair is not None:
                raise PackError(repair)
        except PackError:
            aside = target.with_name(f".damaged-{target.name}-{secrets.token_hex(3)}")
            target.rename(aside)
            shutil.rmtree(aside, ignore_errors=True)
    if target.exists():
        shutil.rmtree(staging)
    else:
        staging.rename(target)
        _fsync_dir(target.parent)
    downgrade = active is not None and manifest.version < active["version"]
    row = {
        "id": manifest.id, "version": manifest.version, "display_version": manifest.display_version,
        # Relative to the data directory, so a restored or moved data directory keeps working.
        "name": pack.name, "path": target.relative_to(settings.data_dir).as_posix(),
        "content_digest": identity,
        "manifest_sha256": hashlib.sha256(manifest.document()).hexdigest(), "signers": sorted(signers),
        "channel": manifest.channel, "issued": clock.iso(manifest.issued), "expires": clock.iso(manifest.expires),
        "frameworks": list(pack.frameworks), "rules": len(pack.rules), "activated_at": clock.now_iso(),
        "activated_by": actor.name, "downgrade_reason": reason if downgrade else None,
    }
    details = {"version": manifest.version, "display_version": manifest.display_version, "signers": sorted(signers),
               "content_digest": identity, "rules": len(pack.rules),
               "previous_version": active["version"] if active else None}
    with db.write() as tx:
        repo.upsert_pack(tx, row)
        floor = repo.get_state(tx, repo.CLOCK_FLOOR)
        if floor is None or clock.from_iso(floor) < manifest.issued:
            repo.set_state(tx, repo.CLOCK_FLOOR, clock.iso(manifest.issued))
        repo.bump_generation(tx)  # a template selection may now include this pack
        record_event(tx, AuditTag.PACKS_PACK_IMPORTED, actor, target=f"pack:{manifest.id}",
                     details={**details, **({"repaired": repair} if repair else {})})
        if downgrade:
            record_event(tx, AuditTag.PACKS_PACK_DOWNGRADED, actor, target=f"pack:{manifest.id}",
                         details={**details, "reason": reason})
        record_event(tx, AuditTag.PACKS_PACK_ACTIVATED, actor, target=f"pack:{manifest.id}", details=details)
    return ImportResult(manifest.id, manifest.version, manifest.display_version,
                        "downgraded" if downgrade else "activated", tuple(sorted(signers)), target)
