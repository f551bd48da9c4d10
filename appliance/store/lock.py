"""The data directory's advisory lock: ``cortex serve`` shares it, a restore takes it alone.

``<data_dir>/appliance.lock`` is an empty file locked with ``flock(2)``. ``cortex serve`` (and
``cortex backup create``) hold a *shared* lock for as long as they run; ``cortex backup restore`` needs it
*exclusively*, so it is refused while a server runs against the directory, and a server cannot start in
the middle of a restore. The kernel drops a lock when its process ends, however it ends (``kill -9``, a
power cut), so a lock never outlives its holder the way a stale pid file does. Other ``cortex`` commands
take no lock: they may run beside a server, and the database serializes their writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from appliance.errors import ConfigError, ConflictError

__all__ = ["LOCK_FILE", "DataDirBusyError", "DataDirLock"]

LOCK_FILE = "appliance.lock"


class DataDirBusyError(ConflictError):
    """Another process holds the data directory's lock in a way that excludes this one."""

    code = "data_dir_busy"


class DataDirLock:
    """One hold on ``<data_dir>/appliance.lock``, released by :meth:`release` or at the end of a ``with``."""

    def __init__(self, data_dir: Path, *, exclusive: bool) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self.exclusive = exclusive
        self._fd: int | None = None

    @classmethod
    def hold_shared(cls, data_dir: Path, *, purpose: str) -> DataDirLock:
        """Hold the lock shared (a server, a backup being made).

        Raises:
            DataDirBusyError: a restore holds the directory.
        """
        lock = cls(data_dir, exclusive=False)
        if not lock._acquire():
            raise DataDirBusyError(
                f"cannot {purpose}: a restore is replacing the data in {Path(data_dir)} (it holds {lock.path}); "
                "wait for `cortex backup restore` to finish, then retry")
        return lock

    @classmethod
    def hold_exclusive(cls, data_dir: Path, *, purpose: str) -> DataDirLock:
        """Hold the lock alone (a restore).

        Raises:
            DataDirBusyError: a server, a backup or another restore holds the directory.
        """
        lock = cls(data_dir, exclusive=True)
        if not lock._acquire():
            raise DataDirBusyError(
                f"cannot {purpose}: the appliance is running against {Path(data_dir)} (`cortex serve`, a backup or "
                f"another restore holds {lock.path}); stop the service first (`systemctl stop cortex`) and retry")
        return lock

    def _acquire(self) -> bool:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Read-only and world-readable (it is empty): flock needs neither write access nor ownership, so a
        # lock file that a root command created does not keep the service account's server from starting.
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot open the lock file {self.path}: {exc.strerror}; make it readable by the "
                              "service account (or remove it while no cortex command runs)") from exc
        try:
            if os.geteuid() == 0:
                owner = self.path.parent.stat()
                os.fchown(fd, owner.st_uid, owner.st_gid)
            fcntl.flock(fd, (fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
