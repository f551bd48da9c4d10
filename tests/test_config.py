"""Settings: defaults, then the TOML file, then CORTEX_* variables, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import Settings, load_settings, setting_fields
from appliance.errors import ConfigError


def test_precedence_defaults_file_environment_overrides(tmp_path: Path) -> None:
    config = tmp_path / "appliance.toml"
    config.write_text('port = 9000\nworkers = 4\ndata_dir = "state"\nmodel_enabled = false\n')
    settings = load_settings({"CORTEX_CONFIG": str(config), "CORTEX_WORKERS": "3"}, max_diff_bytes=4096)
    assert settings.port == 9000  # file over default
    assert settings.workers == 3  # environment over file
    assert settings.max_diff_bytes == 4096  # command line over everything
    assert settings.data_dir == (tmp_path / "state").resolve()  # relative to the file
    assert settings.model_enabled is False
    assert settings.host == Settings().host  # untouched default


@pytest.mark.parametrize(("content", "env", "message"), [
    ("colour = 'blue'\n", {}, "unknown setting 'colour'"),
    ("port = 'eighty'\n", {}, "must be an integer"),
    ("", {"CORTEX_MODEL_ENABLED": "perhaps"}, "must be a boolean"),
    ("", {"CORTEX_PORT": "0"}, "must be a positive integer"),
    ("tls_cert = '/x.pem'\n", {}, "must be set together"),
    ("port = \n", {}, "not valid TOML"),
])
def test_bad_configuration_is_refused_with_the_setting_named(tmp_path: Path, content: str, env: dict[str, str],
                                                              message: str) -> None:
    config = tmp_path / "appliance.toml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings({"CORTEX_CONFIG": str(config), **env})


def test_every_setting_has_help_text() -> None:
    for field in setting_fields():
        assert len(field.metadata.get("help", "")) > 20, field.name
