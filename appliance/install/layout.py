"""Where an installed appliance lives, and the install record that says so.

A host install (as root)::

    /opt/cortex/releases/<version>/   the verified bundle contents (binary, model, packs, manual, MANIFEST)
    /opt/cortex/current -> releases/<version>
    /etc/cortex/appliance.toml        settings; tls/cert.pem, tls/key.pem; install.json (this record)
    /var/lib/cortex/                  the data directory (database, keys, backups)

With ``--prefix DIR`` (a staged or unprivileged install) the same tree sits under DIR, with the settings
in ``DIR/etc`` and the data in ``DIR/data``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError

__all__ = ["DEFAULT_PREFIX", "InstallPaths", "InstallRecord", "parse_version", "write_atomic"]

DEFAULT_PREFIX = Path("/opt/cortex")
RECORD_NAME = "install.json"


def parse_version(text: str) -> tuple[int, ...]:
    """``"0.10.2"`` → ``(0, 10, 2)``; anything after a ``-`` or ``+`` is ignored."""
    core = text.split("+", 1)[0].split("-", 1)[0]
    try:
        return tuple(int(part) for part in core.split("."))
    except ValueError as exc:
        raise ConfigError(f"version {text!r} is not a dotted number") from exc


@dataclass(frozen=True)
class InstallPaths:
    prefix: Path
    config_dir: Path
    data_dir: Path

    @classmethod
    def resolve(cls, prefix: Path | None, config_dir: Path | None, data_dir: Path | None) -> InstallPaths:
        staged = prefix is not None and prefix.resolve() != DEFAULT_PREFIX
        base = (prefix or DEFAULT_PREFIX).resolve()
        return cls(prefix=base,
                   config_dir=(config_dir or (base / "etc" if staged else Path("/etc/cortex"))).resolve(),
                   data_dir=(data_dir or (base / "data" if staged else Path("/var/lib/cortex"))).resolve())

    @property
    def releases(self) -> Path:
        return self.prefix / "releases"

    @property
    def current(self) -> Path:
        return self.prefix / "current"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "appliance.toml"

    @property
    def record_file(self) -> Path:
        return self.config_dir / RECORD_NAME

    @property
    def tls_dir(self) -> Path:
        return self.config_dir / "tls"

    @property
    def progress_file(self) -> Path:
        """Present while an install or upgrade is under way: what it was doing, so a re-run can finish."""
        return self.prefix / ".install-in-progress.json"

    def release(self, version: str) -> Path:
        return self.releases / version


@dataclass
class InstallRecord:
    """``install.json``: what is installed where (read by ``cortex verify`` and by later installs)."""

    version: str
    prefix: str
    release_dir: str
    config_dir: str
    data_dir: str
    service_user: str
    systemd: bool
    site_ranges: list[str] = field(default_factory=list)
    installed_at: str = ""
    previous_version: str | None = None
    previous_backup: str | None = None
    key_fingerprint: str = ""

    @classmethod
    def load(cls, path: Path) -> InstallRecord | None:
        if not path.exists():
            return None
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            known = {f for f in cls.__dataclass_fields__}
            return cls(**{k: v for k, v in data.items() if k in known})
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path} is not a readable install record ({exc}); restore it from the last "
                              "backup or remove it to install afresh (the data directory is kept)") from exc

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", mode=0o644)


def write_atomic(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write ``path`` whole or not at all: a temporary sibling, fsynced, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(temp).chmod(mode)
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
