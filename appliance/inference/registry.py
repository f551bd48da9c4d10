"""The models the appliance knows: those in ``models/manifest.toml`` and those added on site.

Every model is pinned by sha256; :func:`verify_model_file` runs before every load, so a swapped or
damaged file is never loaded. Site models are copied into ``<data_dir>/models/`` (written to a temporary
file, fsynced, renamed) and recorded in the database with their audit event in one transaction.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from appliance import clock
from appliance.audit import Actor, AuditTag, record_event
from appliance.config import Settings
from appliance.errors import ModelError
from appliance.inference.gguf import read_gguf_metadata
from appliance.store import Database, IntegrityError

__all__ = ["ModelEntry", "add_model", "find_model", "list_models", "load_manifest", "sha256_file",
           "verify_model_file"]

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")


@dataclass(frozen=True)
class ModelEntry:
    id: str
    name: str
    file: Path
    sha256: str
    size: int | None
    license: str
    context: int | None
    chat_template: str | None
    plumbing: bool
    origin: str  # manifest or site

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["file"] = str(self.file)
        return data


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_manifest(models_dir: Path) -> list[ModelEntry]:
    manifest = models_dir / "manifest.toml"
    if not manifest.is_file():
        return []
    try:
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{manifest} is not valid TOML: {exc}") from exc
    entries = []
    for index, raw in enumerate(data.get("model", []), 1):
        missing = [k for k in ("id", "file", "sha256", "license") if k not in raw]
        if missing:
            raise ModelError(f"{manifest}: model entry {index} lacks {', '.join(missing)}")
        entries.append(ModelEntry(
            id=raw["id"], name=raw.get("name", raw["id"]), file=(models_dir / raw["file"]).resolve(),
            sha256=raw["sha256"].lower(), size=raw.get("size"), license=raw["license"],
            context=raw.get("context"), chat_template=raw.get("chat_template"),
            plumbing=bool(raw.get("plumbing", False)), origin="manifest"))
    return entries


def list_models(db: Database, settings: Settings) -> list[ModelEntry]:
    entries = load_manifest(settings.models_dir)
    with db.read() as tx:
        rows = tx.query("SELECT * FROM models ORDER BY added_at")
    for row in rows:
        entries.append(ModelEntry(
            # Site models live in the data directory and are recorded relative to it.
            id=row["id"], name=row["name"], file=settings.data_dir / row["file"], sha256=row["sha256"],
            size=row["size"],
            license=row["license"], context=row["context"], chat_template=row["chat_template"],
            plumbing=False, origin="site"))
    return entries


def find_model(db: Database, settings: Settings, model_id: str) -> ModelEntry:
    for entry in list_models(db, settings):
        if entry.id == model_id:
            return entry
    known = ", ".join(e.id for e in list_models(db, settings)) or "none"
    raise ModelError(f"no model with id {model_id!r} is registered (registered: {known}); "
                     "add one with `cortex models add FILE.gguf --id NAME`")


def verify_model_file(entry: ModelEntry) -> None:
    """Check the file is there, has the pinned size and sha256.

    Raises:
        ModelError: missing, wrong size, or wrong sha256 (the message says which and what to do).
    """
    if not entry.file.is_file():
        raise ModelError(f"model {entry.id}: file {entry.file} is missing; "
                         "run `python3 build.py setup` (shipped models) or add it again")
    size = entry.file.stat().st_size
    if entry.size is not None and size != entry.size:
        raise ModelError(f"model {entry.id}: {entry.file} is {size} bytes, expected {entry.size}; "
                         "the file is truncated or replaced: restore it from the install media")
    actual = sha256_file(entry.file)
    if actual != entry.sha256:
        raise ModelError(f"model {entry.id}: sha256 of {entry.file} is {actual}, expected {entry.sha256}; "
                         "the file is corrupt or replaced: restore it from the install media")


def add_model(
    db: Database,
    settings: Settings,
    source: Path,
    *,
    model_id: str,
    actor: Actor,
    license_name: str | None = None,
    name: str | None = None,
) -> ModelEntry:
    """Copy a GGUF file into the data directory and register it.

    Raises:
        ModelError: the id is malformed or taken, the file is not GGUF, or no license is known.
    """
    if not _ID.match(model_id):
        raise ModelError(f"model id {model_id!r} must be lower-case letters, digits, '.', '_' or '-'")
    if any(e.id == model_id for e in list_models(db, settings)):
        raise ModelError(f"a model with id {model_id!r} is already registered; choose another id")
    source = source.resolve()
    if not source.is_file():
        raise ModelError(f"{source} does not exist or is not a file")
    meta = read_gguf_metadata(source)
    license_text = license_name or meta.get("general.license")
    if not license_text:
        raise ModelError(f"{source.name} carries no license in its GGUF header; say which with --license "
                         "(an SPDX id such as apache-2.0, or the name of the site's agreement)")
    context = next((int(v) for k, v in meta.items() if k.endswith(".context_length")), None)
    target_dir = settings.data_dir / "models"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{model_id}.gguf"
    h = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=target_dir, prefix=f".{model_id}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            for block in iter(lambda: src.read(4 << 20), b""):
                h.update(block)
                out.write(block)
                size += len(block)
            out.flush()
            os.fsync(out.fileno())
        entry = ModelEntry(
            id=model_id, name=name or str(meta.get("general.name") or model_id), file=target,
            sha256=h.hexdigest(), size=size, license=str(license_text), context=context,
            chat_template="gguf" if meta.get("tokenizer.chat_template") else None, plumbing=False, origin="site")
        with db.write() as tx:
            tx.insert("models", {
                "id": entry.id, "name": entry.name, "file": target.relative_to(settings.data_dir).as_posix(),
                "sha256": entry.sha256,
                "size": entry.size, "license": entry.license, "context": entry.context,
                "chat_template": entry.chat_template, "added_by": actor.name, "added_at": clock.now_iso()})
            record_event(tx, AuditTag.MODELS_MODEL_ADDED, actor, target=f"model:{entry.id}",
                         details={"sha256": entry.sha256, "size": entry.size, "license": entry.license,
                                  "source": str(source)})
            Path(tmp_name).replace(target)
    except IntegrityError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise ModelError(f"a model with id {model_id!r} is already registered") from exc
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return entry
