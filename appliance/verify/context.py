"""What one verification run looks at: the settings, the release, the service user, the database, the host."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from appliance.config import Settings
from appliance.store import Database
from appliance.verify.install import InstallRecord
from appliance.verify.system import Process, SystemFiles, appliance_processes, descriptors

__all__ = ["ServiceUser", "VerifyContext", "resolve_service_user"]


@dataclass(frozen=True)
class ServiceUser:
    name: str
    uid: int | None  # None: no such user on this host
    source: str  # where the name came from: --service-user, install.json, the data directory's owner…

    def describe(self) -> str:
        who = f"{self.name} (uid {self.uid})" if self.uid is not None else f"{self.name} (no such user)"
        return f"{who}, from {self.source}"


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def resolve_service_user(name: str | None, source: str, data_dir: Path) -> ServiceUser:
    """The user the service runs as: the one named, else the owner of the data directory, else this user."""
    if name:
        try:
            return ServiceUser(name, pwd.getpwnam(name).pw_uid, source)
        except KeyError:
            return ServiceUser(name, None, source)
    try:
        uid = data_dir.stat().st_uid
        return ServiceUser(_user_name(uid), uid, f"the owner of the data directory {data_dir}")
    except OSError:
        uid = os.geteuid()
        return ServiceUser(_user_name(uid), uid, "the user running this check (the data directory does not exist)")


@dataclass
class VerifyContext:
    """Inputs of every check. ``db`` is None when the data directory holds no database yet."""

    settings: Settings
    now: datetime
    service_user: ServiceUser
    release_dir: Path | None = None
    release_source: str = ""
    release_key_pem: bytes | None = None  # None: the release directory's own release-key.pem
    install: InstallRecord | None = None
    db: Database | None = None
    db_error: str | None = None
    files: SystemFiles = field(default_factory=SystemFiles)
    _processes: list[Process] | None = None

    def processes(self) -> list[Process]:
        """The running ``cortex serve`` processes of this installation (looked up once per run).

        A host may run other appliances (a staging install, a test): a process belongs to this one when it
        holds this data directory's database open. One whose descriptors this user may not read is kept,
        and the checks say they could not look at it.
        """
        if self._processes is None:
            binaries = set()
            if self.release_dir is not None:
                binaries.add(str((self.release_dir / "cortex").resolve()))
            database = str(self.settings.db_path.resolve())
            self._processes = []
            for process in appliance_processes(self.files, binaries=binaries, exclude={os.getpid()}):
                try:
                    if database not in descriptors(self.files, process.pid):
                        continue
                except FileNotFoundError:
                    continue  # exited meanwhile
                except OSError:
                    pass
                self._processes.append(process)
        return self._processes
