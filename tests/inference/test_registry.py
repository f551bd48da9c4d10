"""The model registry: manifest, sha256 checks before load, site models added with their license."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.audit import Actor
from appliance.config import Settings
from appliance.errors import ModelError
from appliance.inference import add_model, find_model, list_models, verify_model_file
from appliance.inference.gguf import read_gguf_metadata
from appliance.inference.registry import load_manifest
from appliance.inference.runtime import ModelRuntime
from appliance.store import Database
from tests.support import make_settings

DEFAULT = "smollm2-135m-instruct-q4_1"


def default_file(settings: Settings) -> Path:
    return find_model_file(settings)


def find_model_file(settings: Settings) -> Path:
    entry = next(e for e in load_manifest(settings.models_dir) if e.id == DEFAULT)
    return entry.file


def test_the_manifest_pins_the_default_model(settings: Settings) -> None:
    entry = next(e for e in load_manifest(settings.models_dir) if e.id == DEFAULT)
    assert entry.sha256 == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert entry.plumbing and entry.license == "Apache-2.0"
    verify_model_file(entry)


def test_gguf_header_metadata(settings: Settings) -> None:
    meta = read_gguf_metadata(find_model_file(settings))
    assert meta["general.license"] == "apache-2.0"
    assert meta["llama.context_length"] == 8192
    assert "im_start" in meta["tokenizer.chat_template"]


def corrupt_copy(settings: Settings, tmp_path: Path, *, truncate: bool = False) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    source = find_model_file(settings)
    shutil.copy(Path(settings.models_dir) / "manifest.toml", models / "manifest.toml")
    target = models / source.name
    shutil.copy(source, target)
    with target.open("r+b") as fh:
        if truncate:
            fh.truncate(1024)
        else:
            fh.seek(5_000_000)
            byte = fh.read(1)
            fh.seek(5_000_000)
            fh.write(bytes([byte[0] ^ 0xFF]))
    return models


def test_a_corrupt_model_is_refused_before_loading(settings: Settings, tmp_path: Path) -> None:
    models = corrupt_copy(settings, tmp_path)
    entry = next(e for e in load_manifest(models) if e.id == DEFAULT)
    with pytest.raises(ModelError, match=r"sha256 .* expected b179c952"):
        verify_model_file(entry)
    truncated = corrupt_copy(settings, tmp_path / "t", truncate=True) if (tmp_path / "t").mkdir() is None else None
    assert truncated is not None
    with pytest.raises(ModelError, match="truncated or replaced"):
        verify_model_file(next(e for e in load_manifest(truncated) if e.id == DEFAULT))


def test_a_corrupt_or_missing_model_leaves_the_runtime_unavailable_with_the_reason(
        settings: Settings, db: Database, tmp_path: Path) -> None:
    bad = make_settings(settings.data_dir, model_enabled=True, models_dir=corrupt_copy(settings, tmp_path))
    runtime = ModelRuntime(bad)
    runtime.load(db)
    assert runtime.status == "unavailable" and "sha256" in runtime.reason and not runtime.available
    missing = make_settings(settings.data_dir, model_enabled=True, model="no-such-model")
    runtime = ModelRuntime(missing)
    runtime.load(db)
    assert runtime.status == "unavailable" and "no model with id 'no-such-model'" in runtime.reason
    with db.read() as tx:
        events = tx.query("SELECT outcome FROM audit_events WHERE action = 'models:model:unavailable'")
    assert [e["outcome"] for e in events] == ["failure", "failure"]


def test_add_model_copies_hashes_and_records_the_license(settings: Settings, db: Database) -> None:
    entry = add_model(db, settings, find_model_file(settings), model_id="site-coder", actor=Actor.cli())
    assert entry.file == settings.data_dir / "models" / "site-coder.gguf" and entry.file.is_file()
    assert entry.sha256 == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert entry.license == "apache-2.0" and entry.context == 8192 and entry.origin == "site"
    assert find_model(db, settings, "site-coder") == entry
    assert {e.id for e in list_models(db, settings)} == {DEFAULT, "site-coder"}
    with db.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM audit_events WHERE action = 'models:model:added'") == 1
    with pytest.raises(ModelError, match="already registered"):
        add_model(db, settings, find_model_file(settings), model_id="site-coder", actor=Actor.cli())


def test_add_model_refuses_files_that_are_not_gguf(settings: Settings, db: Database, tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelError, match="not a GGUF model file"):
        add_model(db, settings, fake, model_id="fake", actor=Actor.cli())
    assert not (settings.data_dir / "models" / "fake.gguf").exists()
    with pytest.raises(ModelError, match="must be lower-case"):
        add_model(db, settings, fake, model_id="Bad Id", actor=Actor.cli())
