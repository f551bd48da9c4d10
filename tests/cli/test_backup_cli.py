"""``cortex backup`` as the installer and operators run it: subprocesses, real data directories, a real server,
a real terminal for the confirmation."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from appliance.store.lock import DataDirLock
from tests.cli.test_cli import cortex
from tests.support import TEST_TRUST, Trust


@pytest.fixture
def data(tmp_path: Path, test_trust: Trust) -> Path:
    data_dir = tmp_path / "data"
    assert cortex(data_dir, "users", "create", "ada", "--role", "admin", "--no-password").returncode == 0
    assert cortex(data_dir, "audit", "checkpoint").returncode == 0
    return data_dir


def users(data_dir: Path) -> list[str]:
    listed = cortex(data_dir, "users", "list")
    assert listed.returncode == 0, listed.stderr
    return [line.split()[1] for line in listed.stdout.splitlines()]


def test_create_prints_only_the_path_and_the_backup_verifies(data: Path, tmp_path: Path) -> None:
    made = cortex(data, "backup", "create")
    assert made.returncode == 0, made.stderr
    assert len(made.stdout.splitlines()) == 1
    path = Path(made.stdout.strip())
    assert path.parent == data / "backups" and path.name.startswith("cortex-backup-")
    assert made.stderr.startswith(f"backup of {data}: ") and "verified (audit log: " in made.stderr
    checked = cortex(data, "backup", "verify", str(path))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"OK: backup {path} verifies: ") and "SQLite integrity check ok" in checked.stdout
    log = cortex(data, "audit", "log", "--action", "store:backup:created")
    assert str(path) in log.stdout and "cli:" in log.stdout
    elsewhere = cortex(data, "backup", "create", "--out", str(tmp_path / "usb"))
    assert elsewhere.returncode == 0 and Path(elsewhere.stdout.strip()).parent == tmp_path / "usb"


def test_verify_fails_with_an_error_that_names_the_file(data: Path, tmp_path: Path) -> None:
    path = Path(cortex(data, "backup", "create").stdout.strip())
    (path / "keys" / "appliance-id").unlink()
    failed = cortex(data, "backup", "verify", str(path))
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr == (f"Error: backup {path} does not verify: {path}/keys/appliance-id is listed in BACKUP.json "
                             "but missing: the backup is incomplete (a copy cut short?); copy the whole directory "
                             "again, or use another backup\n")
    nothing = cortex(data, "backup", "verify", str(tmp_path / "nope"))
    assert nothing.returncode == 1
    assert nothing.stderr.startswith(f"Error: no backup at {tmp_path / 'nope'}: it does not exist")
    no_data = cortex(tmp_path / "empty", "backup", "create")
    assert no_data.returncode == 1 and "nothing to back up" in no_data.stderr
    assert not (tmp_path / "empty").exists()  # a mistyped --data-dir is not created


def test_restore_without_a_terminal_needs_yes_then_brings_the_data_back(data: Path) -> None:
    path = Path(cortex(data, "backup", "create").stdout.strip())
    assert cortex(data, "users", "create", "bob", "--role", "viewer", "--no-password").returncode == 0
    refused = cortex(data, "backup", "restore", str(path), stdin="")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == (f"Error: restoring replaces the data in {data}, and there is no terminal to confirm on: "
                              "pass --yes. Nothing was changed\n")
    assert users(data) == ["ada", "bob"]
    restored = cortex(data, "backup", "restore", str(path), "--yes", stdin="")
    assert restored.returncode == 0, restored.stderr
    pre = Path(restored.stdout.strip())
    assert len(restored.stdout.splitlines()) == 1 and pre.parent == data / "backups"
    assert f"restored {data} from {path}" in restored.stderr
    assert f"to undo: cortex backup restore {pre}" in restored.stderr
    assert users(data) == ["ada"]
    assert cortex(data, "audit", "verify").returncode == 0
    assert cortex(data, "backup", "verify", str(pre)).returncode == 0
    undone = cortex(data, "backup", "restore", str(pre), "--yes", stdin="")
    assert undone.returncode == 0, undone.stderr
    assert users(data) == ["ada", "bob"]


def test_restore_asks_on_a_terminal(data: Path) -> None:
    path = Path(cortex(data, "backup", "create").stdout.strip())
    env = {**os.environ, "CORTEX_DATA_DIR": str(data), "CORTEX_CONFIG": "",
           "CORTEX_TRUST_ROOT": str(TEST_TRUST["root"])}
    for answer, status in ((b"n\n", 1), (b"y\n", 0)):
        primary, secondary = pty.openpty()
        try:
            proc = subprocess.Popen([sys.executable, "-m", "appliance", "backup", "restore", str(path)], env=env,
                                    stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            os.write(primary, answer)
            out, err = proc.communicate(timeout=120)
        finally:
            os.close(primary)
            os.close(secondary)
        assert proc.returncode == status, err
        assert f"Replace the data in {data} with the backup {path}, made " in err
        if status:
            assert "Error: restore cancelled; nothing was changed" in err and out == ""
        else:
            assert Path(out.strip()).name.startswith("pre-restore-")


def test_serve_does_not_start_while_a_restore_holds_the_data_directory(server_factory: Any, data_dir: Path) -> None:
    server = server_factory(data_dir)
    with DataDirLock.hold_exclusive(data_dir, purpose="restore a backup"):
        refused = server.cli("serve")
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"Error: cannot start the server: a restore is replacing the data in {data_dir}")


@pytest.mark.slow
def test_a_running_server_allows_a_backup_and_refuses_a_restore(server_factory: Any, data_dir: Path) -> None:
    server = server_factory(data_dir, env={"CORTEX_MODEL_ENABLED": "false"}).start()
    made = server.cli("backup", "create")
    assert made.returncode == 0, made.stderr
    path = Path(made.stdout.strip())
    refused = server.cli("backup", "restore", str(path), "--yes")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith(f"Error: cannot restore a backup: the appliance is running against {data_dir} "
                                     f"(`cortex serve`, a backup or another restore holds {data_dir}/appliance.lock); "
                                     "stop the service first")
    assert not list((data_dir / "backups").glob("pre-restore-*")) and not list(data_dir.glob(".restore-*"))
    server.stop()
    restored = server.cli("backup", "restore", str(path), "--yes")
    assert restored.returncode == 0, restored.stderr
    server.start()  # and the restored data serves
