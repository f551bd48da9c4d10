"""The installer's record of an installation: ``<config dir>/install.json``.

The installer writes it (``/etc/cortex`` by default, ``PREFIX/etc`` with ``--prefix``)::

    {"version": "0.2.0", "prefix": "/opt/cortex", "release_dir": "/opt/cortex/releases/0.2.0",
     "config_dir": "/etc/cortex", "data_dir": "/var/lib/cortex", "service_user": "cortex", "systemd": true,
     "site_ranges": ["10.20.0.0/16"], "installed_at": "2026-11-24T15:00:00Z"}

``cortex verify`` reads the one beside the configuration file in use and takes the release directory and
the service user from it when no option names them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import ReleaseError

__all__ = ["RECORD_NAME", "InstallRecord", "read_install_record"]

RECORD_NAME = "install.json"
_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class InstallRecord:
    path: Path
    version: str
    prefix: Path | None
    release_dir: Path | None
    config_dir: Path | None
    data_dir: Path | None
    service_user: str
    systemd: bool
    site_ranges: tuple[str, ...]
    installed_at: str


def _text(data: dict[str, Any], key: str, where: Path) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise ReleaseError(f"{where}: {key!r} must be text, got {value!r}")
    return value


def _path(data: dict[str, Any], key: str, where: Path) -> Path | None:
    value = _text(data, key, where)
    return Path(value) if value else None


def read_install_record(config_dir: Path) -> InstallRecord | None:
    """The record in ``config_dir``, or None when there is none (a source checkout, or not installed).

    Raises:
        ReleaseError: the file exists but is unreadable, not JSON, or has a field of the wrong type.
    """
    path = Path(config_dir) / RECORD_NAME
    try:
        with path.open("rb") as fh:
            raw = fh.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ReleaseError(f"cannot read {path}: {exc.strerror}") from exc
    if len(raw) > _MAX_BYTES:
        raise ReleaseError(f"{path} is larger than {_MAX_BYTES} bytes; it is not an installer record")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ReleaseError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ReleaseError(f"{path} must hold a JSON object")
    ranges = data.get("site_ranges", [])
    if not isinstance(ranges, list) or not all(isinstance(r, str) for r in ranges):
        raise ReleaseError(f"{path}: 'site_ranges' must be a list of CIDRs, got {ranges!r}")
    systemd = data.get("systemd", False)
    if not isinstance(systemd, bool):
        raise ReleaseError(f"{path}: 'systemd' must be true or false, got {systemd!r}")
    return InstallRecord(
        path=path, version=_text(data, "version", path), prefix=_path(data, "prefix", path),
        release_dir=_path(data, "release_dir", path), config_dir=_path(data, "config_dir", path),
        data_dir=_path(data, "data_dir", path), service_user=_text(data, "service_user", path), systemd=systemd,
        site_ranges=tuple(ranges), installed_at=_text(data, "installed_at", path))
