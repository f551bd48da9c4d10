"""Fixtures of the verification tests: a signed release directory, and settings of an installation that
uses it (the data directory with the signed packs imported, the release's models)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from appliance.config import Settings
from appliance.verify.models import Check, Report
from appliance.verify.runner import run_checks
from tests.support import make_settings
from tests.verify.release import MODEL_ID, Release, make_release

# The service user: an ordinary user. Tests running as root hand the data directory to `nobody`.
SERVICE_USER = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def give_to_service_user(path: Path) -> None:
    """chown -R to the service user (only root can, and only root needs to)."""
    if os.geteuid() != 0:
        return
    uid = pwd.getpwnam(SERVICE_USER).pw_uid
    os.chown(path, uid, -1, follow_symlinks=False)
    for item in path.rglob("*"):
        os.chown(item, uid, -1, follow_symlinks=False)


@pytest.fixture
def release(tmp_path: Path) -> Release:
    return make_release(tmp_path / "opt")


@pytest.fixture
def installed(data_dir: Path, release: Release) -> Path:
    """The data directory as the installer leaves it: mode 0700, owned by the service user."""
    data_dir.chmod(0o700)
    give_to_service_user(data_dir)
    return data_dir


def installation(data_dir: Path, release: Release, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"models_dir": release.dir / "models", "model": MODEL_ID, "model_enabled": True}
    values.update(overrides)
    return make_settings(data_dir, **values)


@pytest.fixture
def settings_of(installed: Path, release: Release) -> Any:
    def make(**overrides: Any) -> Settings:
        return installation(installed, release, **overrides)
    return make


def run(settings: Settings, release: Release | None, **kwargs: Any) -> Report:
    kwargs.setdefault("service_user", SERVICE_USER)
    return run_checks(settings, release_dir=release.dir if release else None, **kwargs)


def checks(report: Report) -> dict[str, Check]:
    return {c.id: c for c in report.checks}


def evidence(check: Check) -> str:
    return "\n".join(check.evidence)
