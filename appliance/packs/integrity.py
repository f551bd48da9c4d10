"""Is an activated pack folder still exactly what its signed manifest lists? (Checked at load, before
reuse, and on re-import, which repairs a damaged folder.)"""

from __future__ import annotations

import hashlib
from pathlib import Path

from appliance.errors import PackError
from appliance.packs.manifest import MANIFEST_NAME, read_folder_manifest

__all__ = ["check_pack_files"]


def check_pack_files(folder: Path) -> None:
    """Raises PackError naming the first file that is missing, extra, or changed."""
    manifest = read_folder_manifest(folder)
    if manifest is None:
        raise PackError(f"{folder} has lost its manifest")
    listed = {entry.path for entry in manifest.files}
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()}
    extra = sorted(present - listed - {MANIFEST_NAME})
    if extra:
        raise PackError(f"{folder} holds {extra[0]!r}, which its signed manifest does not list")
    for entry in manifest.files:
        path = folder / entry.path
        if path.is_symlink() or not path.is_file():
            raise PackError(f"{entry.path!r} is missing from {folder}")
        data = path.read_bytes()
        if len(data) != entry.length or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise PackError(f"{entry.path!r} in {folder} no longer matches its signed manifest (changed on disk)")
