"""``cortex verify`` as operators run it: through the real click command (and once as a process), with a
configuration file and the installer's install.json beside it."""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from appliance import __version__
from appliance.cli import cli
from appliance.verify.runner import CHECKLIST
from tests.support import TEST_TRUST
from tests.verify.conftest import SERVICE_USER
from tests.verify.release import MODEL_ID, Release

IDS = [item.id for item in CHECKLIST]


@pytest.fixture
def config(tmp_path: Path, installed: Path, release: Release) -> Path:
    """/etc/cortex as the installer writes it: appliance.toml and install.json."""
    etc = tmp_path / "etc" / "cortex"
    etc.mkdir(parents=True)
    path = etc / "appliance.toml"
    path.write_text(f'data_dir = "{installed}"\ntrust_root = "{TEST_TRUST["root"]}"\n'
                    f'models_dir = "{release.dir / "models"}"\nmodel = "{MODEL_ID}"\nmodel_enabled = false\n'
                    'site_ranges = ["10.20.0.0/16"]\nworkers = 0\n')
    (etc / "install.json").write_text(json.dumps({
        "version": __version__, "prefix": str(tmp_path / "opt"), "release_dir": str(tmp_path / "opt" / "current"),
        "config_dir": str(etc), "data_dir": str(installed), "service_user": SERVICE_USER, "systemd": False,
        "site_ranges": ["10.20.0.0/16"], "installed_at": "2026-11-24T15:00:00Z"}))
    return path


def verify(config: Path, *args: str) -> Result:
    # env: CliRunner restores CORTEX_CONFIG afterwards (the global --config option sets it).
    return CliRunner().invoke(cli, ["--config", str(config), "verify", *args], env={"CORTEX_CONFIG": str(config)})


def test_json_has_every_check_and_the_install_record_is_used(config: Path, release: Release) -> None:
    result = verify(config, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) >= {"host", "version", "time", "status", "checks"}
    assert report["version"] == __version__ and report["status"] in ("PASS", "WARN")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", report["time"])
    assert [c["id"] for c in report["checks"]] == IDS
    for check in report["checks"]:
        assert set(check) == {"id", "title", "status", "evidence", "remedy"}
        assert check["status"] in ("PASS", "WARN") and check["evidence"]
        assert (check["remedy"] is None) == (check["status"] == "PASS")
    by_id = {c["id"]: c for c in report["checks"]}
    assert by_id["release"]["status"] == "PASS"
    assert by_id["release"]["evidence"][0] == (f"release directory {release.dir} (from "
                                               f"{config.parent / 'install.json'})")
    uid = pwd.getpwnam(SERVICE_USER).pw_uid
    assert report["context"]["service_user"] == (f"{SERVICE_USER} (uid {uid}), from "
                                                 f"{config.parent / 'install.json'}")
    assert report["context"]["config_file"] == str(config)
    assert report["context"]["site_ranges"] == ["10.20.0.0/16"]


def test_the_table_and_a_failing_check_exit_1(config: Path, release: Release) -> None:
    clean = verify(config)
    assert clean.exit_code == 0
    for number, check_id in enumerate(IDS, start=1):
        assert re.search(rf"^\s*{number}  (PASS|WARN)  {check_id} ", clean.stdout, re.M), check_id
    assert re.search(r"^overall: (PASS|WARN) \(0 FAIL, \d+ WARN, \d+ PASS\)$", clean.stdout, re.M)
    (release.dir / "licenses" / "extra.txt").write_text("x")
    failed = verify(config)
    assert failed.exit_code == 1
    assert " 1  FAIL  release " in failed.stdout
    assert "· licenses/extra.txt: extra file, not listed in MANIFEST" in failed.stdout
    assert "→ fix: reinstall this release from the install media" in failed.stdout
    assert "overall: FAIL (1 FAIL," in failed.stdout


def test_options_win_over_the_install_record(config: Path, release: Release, tmp_path: Path) -> None:
    result = verify(config, "--json", "--service-user", "root", "--release", str(release.dir),
                    "--release-key", str(release.dir / "release-key.pem"))
    assert result.exit_code == 1
    by_id = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
    assert by_id["service-user"]["status"] == "FAIL"
    assert by_id["release"]["evidence"][0] == f"release directory {release.dir} (from --release)"
    assert "(--release-key)" in by_id["release"]["evidence"][2]


def test_html_report_is_self_contained(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "accreditation" / "verify.html"
    out.parent.mkdir()
    result = verify(config, "--html", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote the HTML report to {out}" in result.stderr
    html = out.read_text(encoding="utf-8")
    report = json.loads(verify(config, "--json").stdout)
    assert report["host"] in html and f"<td>{__version__}</td>" in html
    assert re.search(r"Overall result: <strong>(PASS|WARN)</strong>", html)
    for check in report["checks"]:
        assert f"<code>{check['id']}</code>" in html and check["title"] in html
    assert "Installed files match the signed release manifest" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    for external in ("<script", "<link", "<img", "@import", "url("):
        assert external not in html.lower()


def test_a_source_checkout_without_a_release_warns(tmp_path: Path, installed: Path, release: Release) -> None:
    config = tmp_path / "appliance.toml"
    config.write_text(f'data_dir = "{installed}"\ntrust_root = "{TEST_TRUST["root"]}"\nmodel_enabled = false\n'
                      f'models_dir = "{release.dir / "models"}"\nmodel = "{MODEL_ID}"\n')
    result = verify(config, "--json", "--service-user", SERVICE_USER)
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout)["checks"][0]
    assert first["status"] == "WARN"
    assert first["evidence"] == ["not an installed release (running from a source checkout)"]


def test_a_malformed_install_record_is_an_error(config: Path) -> None:
    (config.parent / "install.json").write_text("{not json")
    result = verify(config)
    assert result.exit_code == 1
    assert f"Error: {config.parent / 'install.json'} is not valid JSON" in result.stderr


def test_the_exit_status_of_the_real_command(config: Path, release: Release) -> None:
    env = {**os.environ, "CORTEX_CONFIG": str(config)}
    command = [sys.executable, "-m", "appliance", "verify"]
    ok = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (release.dir / "cortex").write_bytes(b"patched")
    failed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert failed.returncode == 1
    assert "cortex: modified (7 bytes" in failed.stdout and "overall: FAIL" in failed.stdout
