"""Shared fixtures: real SQLite files under tmp_path, the real Litestar app, the real model, and real
server processes on 127.0.0.1 (see support.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from appliance.audit import Actor
from appliance.auth import User, create_token, create_user
from appliance.config import Settings
from appliance.inference import ModelRuntime
from appliance.store import Database
from appliance.tasks.services import Services, open_database
from appliance.web import create_app
from tests.support import ADMIN_PASSWORD, ServerProcess, make_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = open_database(settings)
    yield database
    database.close()


@pytest.fixture(scope="session")
def model_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelRuntime]:
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
def server_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def make(data_dir: Path | None = None, **kwargs: Any) -> ServerProcess:
        server = ServerProcess(data_dir or tmp_path / "data", **kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
