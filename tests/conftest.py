"""Shared fixtures: real SQLite files under tmp_path, the real Litestar app, the real model, and real
server processes on 127.0.0.1 (see support.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from appliance.audit import Actor
from appliance.auth import User, create_token, create_user
from appliance.config import Settings
from appliance.errors import PackError
from appliance.inference import ModelRuntime
from appliance.packs import import_pack
from appliance.store import Database
from appliance.tasks.services import Services, open_database
from appliance.web import create_app
from tests.support import ADMIN_PASSWORD, TEST_TRUST, ServerProcess, Trust, make_settings, make_trust


@pytest.fixture(scope="session")
def test_trust(tmp_path_factory: pytest.TempPathFactory) -> Trust:
    """A test publisher's keys and root, and every pack in rules/ signed with its pack key."""
    trust = make_trust(tmp_path_factory.mktemp("trust"))
    TEST_TRUST["root"] = trust.root
    return trust


@pytest.fixture(scope="session")
def seeded_template(test_trust: Trust, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with every pack imported through the real importer, copied by each test."""
    template = tmp_path_factory.mktemp("seeded") / "data"
    template_settings = make_settings(template)
    database = open_database(template_settings)
    for tar in test_trust.packs.values():
        try:
            import_pack(database, template_settings, tar, actor=Actor.system())
        except PackError:
            continue  # tests/packs/test_packs.py fails on that pack, once, with the reason
    database.close()
    return template


@pytest.fixture
def data_dir(seeded_template: Path, tmp_path: Path) -> Path:
    """A fresh data directory with the signed packs already active."""
    target = tmp_path / "data"
    shutil.copytree(seeded_template, target)
    return target


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return make_settings(data_dir)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = open_database(settings)
    yield database
    database.close()


@pytest.fixture(scope="session")
def model_runtime(tmp_path_factory: pytest.TempPathFactory, test_trust: Trust) -> Iterator[ModelRuntime]:
    """The real default model, loaded once for the session."""
    model_settings = make_settings(tmp_path_factory.mktemp("model") / "data", model_enabled=True)
    database = open_database(model_settings)
    runtime = ModelRuntime(model_settings)
    runtime.load(database)
    assert runtime.available, runtime.reason
    yield runtime
    runtime.close()
    database.close()


@pytest.fixture
def admin(db: Database) -> User:
    return create_user(db, username="admin", role="admin", actor=Actor.system(), password=ADMIN_PASSWORD,
                       display_name="Ada Admin")


@pytest.fixture
def admin_token(db: Database, admin: User) -> str:
    return create_token(db, admin, name="tests", actor=Actor.system()).token


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    svc = Services(settings)
    yield svc
    svc.close()


@pytest.fixture
def client(settings: Settings, db: Database) -> Iterator[TestClient[Any]]:
    """The real app over ASGI, without queue consumer threads (workers = 0)."""
    services = Services(settings, db=db)
    with TestClient(app=create_app(settings, services)) as test_client:
        yield test_client


@pytest.fixture
def server_factory(data_dir: Path) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def make(data_dir_arg: Path | None = None, **kwargs: Any) -> ServerProcess:
        server = ServerProcess(data_dir_arg or data_dir, **kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
