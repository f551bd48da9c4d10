"""The signed manifest of a pack: its identity, validity window and every file's path, length and sha256.

``manifest.json`` sits at the pack's root: ``{"signed": {...}, "signatures": [...]}``. The signed part
repeats what the appliance decides on before it reads anything else (id, version, product, channel,
minimum appliance version, issued, expires) and lists the files; an importer checks signatures first,
then reads each file only up to its signed length. ``cortex packs build`` stamps, signs and writes a
deterministic tar; ``cortex packs sign`` adds one more signature (a threshold is met by several key
holders, each running it once).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance import clock
from appliance.errors import PackError
from appliance.packs.trust import canonical, sign_document

__all__ = ["LIMITS", "MANIFEST_NAME", "PRODUCT", "FileEntry", "PackManifest", "build_tar", "check_member_path",
           "make_manifest", "read_folder_manifest", "sign_folder", "stamp_pack_toml"]

MANIFEST_NAME = "manifest.json"
PRODUCT = "cortex-code-appliance"
# Caps on what a pack may hold: an import never reads more than the signed lengths, and those are bounded.
LIMITS = {"files": 2000, "file_bytes": 4 << 20, "total_bytes": 32 << 20, "manifest_bytes": 1 << 20}
_SAFE_PATH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(/[A-Za-z0-9][A-Za-z0-9._-]{0,99}){0,7}$")
_TOP_LEVEL = frozenset({"pack.toml", "rules", "examples", "README.md", "LICENSE", "CHANGELOG.md"})


def check_member_path(path: str) -> str | None:
    """Why ``path`` may not be a pack member, or None when it may: relative, no '..', no odd characters."""
    if not path or path.startswith("/") or "\\" in path or "\0" in path:
        return "absolute paths, backslashes and NUL bytes are not allowed"
    parts = PurePosixPath(path).parts
    if any(part in ("..", ".") for part in path.split("/")):
        return "'..' and '.' path components are not allowed"
    if not _SAFE_PATH.match(path):
        return "only letters, digits, '.', '_' and '-' in at most 8 levels are allowed"
    if parts[0] not in _TOP_LEVEL:
        return f"a pack holds only {', '.join(sorted(_TOP_LEVEL))} at its top level"
    return None


@dataclass(frozen=True)
class FileEntry:
    path: str
    length: int
    sha256: str


@dataclass(frozen=True)
class PackManifest:
    id: str
    version: int
    display_version: str
    product: str
    channel: str
    min_appliance_version: str
    issued: datetime
    expires: datetime
    files: tuple[FileEntry, ...]
    signed: dict[str, Any]
    signatures: list[dict[str, str]]

    @property
    def payload(self) -> bytes:
        return canonical(self.signed)

    @property
    def content_digest(self) -> str:
        """Identity of the pack's content, whatever its issue date or signers."""
        h = hashlib.sha256()
        for entry in sorted(self.files, key=lambda e: e.path):
            h.update(f"{entry.path}\0{entry.length}\0{entry.sha256}\n".encode())
        return h.hexdigest()

    def document(self) -> bytes:
        return (json.dumps({"signed": self.signed, "signatures": self.signatures}, indent=2, sort_keys=True)
                + "\n").encode()

    @classmethod
    def parse(cls, data: bytes, *, where: str = MANIFEST_NAME) -> PackManifest:
        """Parse and bound-check a manifest (not its signatures).

        Raises:
            PackError: not JSON, a missing or mistyped field, an unsafe path, or limits exceeded.
        """
        if len(data) > LIMITS["manifest_bytes"]:
            raise PackError(f"{where} is larger than {LIMITS['manifest_bytes'] >> 20} MB")
        try:
            doc = json.loads(data)
            signed = doc["signed"]
            if signed.get("type") != "cortex-pack":
                raise ValueError("type is not cortex-pack")
            files = []
            total = 0
            for raw in signed["files"]:
                entry = FileEntry(str(raw["path"]), int(raw["length"]), str(raw["sha256"]).lower())
                problem = check_member_path(entry.path)
                if problem:
                    raise ValueError(f"file {entry.path!r}: {problem}")
                if not re.fullmatch(r"[0-9a-f]{64}", entry.sha256):
                    raise ValueError(f"file {entry.path!r}: sha256 is not 64 hex digits")
                if not 0 <= entry.length <= LIMITS["file_bytes"]:
                    raise ValueError(f"file {entry.path!r} is larger than {LIMITS['file_bytes'] >> 20} MB")
                total += entry.length
                files.append(entry)
            if len(files) > LIMITS["files"] or total > LIMITS["total_bytes"]:
                raise ValueError(f"a pack holds at most {LIMITS['files']} files and {LIMITS['total_bytes'] >> 20} MB")
            if len({f.path for f in files}) != len(files):
                raise ValueError("a file is listed twice")
            if "pack.toml" not in {f.path for f in files}:
                raise ValueError("pack.toml is not listed")
            manifest = cls(
                id=str(signed["id"]), version=int(signed["version"]), display_version=str(signed["display_version"]),
                product=str(signed["product"]), channel=str(signed["channel"]),
                min_appliance_version=str(signed["min_appliance_version"]),
                issued=clock.from_iso(str(signed["issued"])), expires=clock.from_iso(str(signed["expires"])),
                files=tuple(files), signed=signed, signatures=list(doc.get("signatures", [])))
        except PackError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PackError(f"{where} is malformed: {exc}") from exc
        if not all(isinstance(s, dict) for s in manifest.signatures):
            raise PackError(f"{where} is malformed: signatures must be a list of {{keyid, sig}}")
        return manifest


def _pack_files(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if rel == MANIFEST_NAME or "__pycache__" in path.parts:
            continue
        if path.is_symlink():
            raise PackError(f"{path} is a symbolic link; a pack holds regular files only")
        if path.is_file():
            problem = check_member_path(rel)
            if problem:
                raise PackError(f"{rel}: {problem}")
            files.append(path)
    return files


def make_manifest(folder: Path) -> dict[str, Any]:
    """The signed part for ``folder`` (its pack.toml must carry issued and expires)."""
    try:
        meta = tomllib.loads((folder / "pack.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PackError(f"cannot read {folder / 'pack.toml'}: {exc}") from exc
    for key in ("issued", "expires"):
        if not isinstance(meta.get(key), datetime):
            raise PackError(f"{folder / 'pack.toml'} needs {key} (a date-time) before signing; "
                            "`cortex packs build` stamps it")
    files = []
    for path in _pack_files(folder):
        data = path.read_bytes()
        files.append({"path": path.relative_to(folder).as_posix(), "length": len(data),
                      "sha256": hashlib.sha256(data).hexdigest()})
    return {
        "type": "cortex-pack", "id": meta.get("id"), "version": meta.get("version"),
        "display_version": str(meta.get("display_version", meta.get("version"))),
        "product": meta.get("product", PRODUCT), "channel": meta.get("channel", "stable"),
        "min_appliance_version": meta.get("min_appliance_version", "0.0.0"),
        "issued": clock.iso(meta["issued"]), "expires": clock.iso(meta["expires"]), "files": files,
    }


def read_folder_manifest(folder: Path) -> PackManifest | None:
    path = folder / MANIFEST_NAME
    return PackManifest.parse(path.read_bytes(), where=str(path)) if path.is_file() else None


def sign_folder(folder: Path, key: Ed25519PrivateKey) -> tuple[PackManifest, int]:
    """Add ``key``'s signature to ``folder``'s manifest, creating it from the files when needed.

    Returns the manifest and how many earlier signatures were dropped because the files changed since.
    """
    signed = make_manifest(folder)
    existing = read_folder_manifest(folder)
    signatures = existing.signatures if existing is not None and existing.signed == signed else []
    dropped = len(existing.signatures) - len(signatures) if existing is not None else 0
    doc = {"signed": signed, "signatures": sign_document(signed, signatures, key)}
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    (folder / MANIFEST_NAME).write_bytes(data)
    return PackManifest.parse(data), dropped


def stamp_pack_toml(folder: Path, *, issued: datetime, valid_for: timedelta) -> None:
    """Set issued and expires in a (copied) pack folder's pack.toml."""
    path = folder / "pack.toml"
    lines = [line for line in path.read_text(encoding="utf-8").splitlines()
             if not re.match(r"^\s*(issued|expires)\s*=", line)]
    lines += [f"issued = {clock.iso(issued)}", f"expires = {clock.iso(issued + valid_for)}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_tar(folder: Path, target: Path) -> Path:
    """A deterministic tar of a signed pack folder: manifest first, then the files in path order, with
    fixed owner, modes and times, so the same pack always gives the same bytes."""
    manifest = read_folder_manifest(folder)
    if manifest is None:
        raise PackError(f"{folder} has no {MANIFEST_NAME}; sign it first")
    mtime = int(manifest.issued.timestamp())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in [MANIFEST_NAME, *(f.path for f in sorted(manifest.files, key=lambda e: e.path))]:
            data = (folder / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uid, info.gid = len(data), mtime, 0o644, 0, 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(target)
    return target
