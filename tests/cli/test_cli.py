"""The cortex command as users run it: a subprocess against a real data directory and real git repos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from appliance.review.formats import SARIF_SCHEMA_PATH
from appliance.store import Database
from tests.support import ADMIN_PASSWORD, TEST_TRUST, git, init_repo


def cortex(data_dir: Path, *args: str, stdin: str | None = None, model: bool = False,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CORTEX_DATA_DIR": str(data_dir), "CORTEX_CONFIG": "",
           "CORTEX_MODEL_ENABLED": "true" if model else "false", "CORTEX_TRUST_ROOT": str(TEST_TRUST["root"])}
    return subprocess.run([sys.executable, "-m", "appliance", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=300, check=False, cwd=cwd)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = init_repo(tmp_path / "service", {"handlers.py": "import subprocess\n\n\ndef ping(host):\n    return host\n"},
                     branch="feature/ping")
    (root / "handlers.py").write_text(
        "import subprocess\nimport yaml\n\n\ndef ping(host):\n"
        "    subprocess.call('ping -c1 ' + host, shell=True)\n    return yaml.load(open('c.yml'))\n")
    git(root, "commit", "-qam", "Ping hosts")
    return root


def test_review_a_repository_branch_with_a_ci_gate(tmp_path: Path, repo: Path, data_dir: Path) -> None:
    data = data_dir
    result = cortex(data, "review", "--repo", str(repo), "--base", "main", "--head", "feature/ping",
                    "--fail-on", "high")
    assert result.returncode == 3, result.stderr
    assert "handlers.py:6" in result.stdout and "CORE-CMD-001" in result.stdout
    assert "finding(s) at or above high: failing (exit 3)" in result.stderr
    relaxed = cortex(data, "review", "--repo", str(repo), "--base", "main", "--fail-on", "none")
    assert relaxed.returncode == 0
    # Both reviews are stored where the dashboard reads them, with the repository and refs.
    db = Database(data / "appliance.db")
    with db.read() as tx:
        stored = tx.query("SELECT source, repository, base_ref, head_ref FROM reviews ORDER BY id")
    db.close()
    assert stored == [{"source": "cli", "repository": "service", "base_ref": "main", "head_ref": "feature/ping"},
                      {"source": "cli", "repository": "service", "base_ref": "main", "head_ref": "HEAD"}]


def test_review_writes_valid_sarif(tmp_path: Path, repo: Path, data_dir: Path) -> None:
    out = tmp_path / "review.sarif"
    result = cortex(data_dir, "review", "--repo", str(repo), "--base", "main", "--format", "sarif",
                    "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert f"wrote sarif to {out}" in result.stderr
    doc = json.loads(out.read_text())
    jsonschema.Draft7Validator(json.loads(SARIF_SCHEMA_PATH.read_text())).validate(doc)
    assert {r["ruleId"] for r in doc["runs"][0]["results"]} >= {"CORE-CMD-001"}


def test_review_a_diff_file_and_from_stdin(tmp_path: Path, repo: Path, data_dir: Path) -> None:
    diff = subprocess.run(["git", "-C", str(repo), "diff", "main...feature/ping"], capture_output=True, text=True,
                          check=True).stdout
    path = tmp_path / "change.diff"
    path.write_text(diff)
    from_file = cortex(data_dir, "review", "--diff", str(path), "--format", "json")
    from_stdin = cortex(data_dir, "review", "--diff", "-", "--format", "json", stdin=diff)
    first, second = json.loads(from_file.stdout), json.loads(from_stdin.stdout)
    assert first["id"] != second["id"]
    assert [f["fingerprint"] for f in first["findings"]] == [f["fingerprint"] for f in second["findings"]]


def test_bad_diff_and_bad_arguments_say_what_is_wrong(tmp_path: Path, repo: Path, data_dir: Path) -> None:
    bad = tmp_path / "bad.diff"
    bad.write_text("--- a/x.py\n+++ b/x.py\n@@ -1,1 +1,3 @@\n import os\n+x\n@@@ broken\n")
    result = cortex(data_dir, "review", "--diff", str(bad))
    assert result.returncode == 1 and result.stderr.startswith("Error: the diff is malformed at line 6")
    missing_base = cortex(data_dir, "review", "--repo", str(repo))
    assert missing_base.returncode == 2 and "--repo needs --base" in missing_base.stderr
    bad_ref = cortex(data_dir, "review", "--repo", str(repo), "--base", "no-such-branch")
    assert bad_ref.returncode == 1 and "'no-such-branch' is not a commit, branch or tag" in bad_ref.stderr
    not_repo = cortex(data_dir, "review", "--repo", str(tmp_path), "--base", "main")
    assert not_repo.returncode == 1 and "is not a git repository" in not_repo.stderr


def test_scan_reviews_a_whole_tree(tmp_path: Path, repo: Path, data_dir: Path) -> None:
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    result = cortex(data_dir, "scan", str(repo), "--format", "json", "--no-model")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    files = {f["path"]: f for f in doc["files"]}
    assert files["handlers.py"]["change"] == "added" and files["logo.png"]["skipped"] == "binary file"
    assert doc["title"] == "Scan of service" and doc["findings"]


def test_users_tokens_and_bootstrap(tmp_path: Path, data_dir: Path) -> None:
    data = data_dir
    token = cortex(data, "admin", "bootstrap")
    assert token.returncode == 0 and "/setup#token=" in token.stdout
    created = cortex(data, "users", "create", "alice", "--role", "admin", "--password-stdin", stdin=ADMIN_PASSWORD)
    assert created.returncode == 0 and "created user alice" in created.stdout
    again = cortex(data, "admin", "bootstrap")
    assert again.returncode == 1 and "an administrator exists already" in again.stderr
    weak = cortex(data, "users", "create", "bob", "--role", "viewer", "--password-stdin", stdin="short")
    assert weak.returncode == 1 and "at least 12 characters" in weak.stderr
    api = cortex(data, "tokens", "create", "--user", "alice", "--name", "ci", "--expires-days", "7")
    assert api.returncode == 0 and api.stdout.startswith("cca_") and "expires" in api.stderr
    listing = cortex(data, "tokens", "list")
    assert api.stdout.strip() not in listing.stdout and api.stdout.strip()[:12] in listing.stdout


@pytest.mark.slow
def test_models_add_list_and_verify(tmp_path: Path, data_dir: Path) -> None:
    data = data_dir
    source = Path(__file__).resolve().parents[2] / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    added = cortex(data, "models", "add", str(source), "--id", "local-copy")
    assert added.returncode == 0, added.stderr
    assert "license apache-2.0" in added.stdout and "sha256 b179c952" in added.stdout
    listed = cortex(data, "models", "list")
    assert "* smollm2-135m-instruct-q4_1" in listed.stdout and "local-copy" in listed.stdout
    assert cortex(data, "models", "verify").returncode == 0
    (data / "models" / "local-copy.gguf").write_bytes(b"GGUF tampered")
    tampered = cortex(data, "models", "verify")
    assert tampered.returncode == 1 and "FAILED  model local-copy" in tampered.stdout


def test_config_errors_are_clear(tmp_path: Path, data_dir: Path) -> None:
    config = tmp_path / "appliance.toml"
    config.write_text("prot = 8080\n")
    env = {**os.environ, "CORTEX_CONFIG": str(config)}
    result = subprocess.run([sys.executable, "-m", "appliance", "config", "show"], env=env, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 1 and "unknown setting 'prot'" in result.stderr


def test_serve_refuses_a_port_in_use(tmp_path: Path, data_dir: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        result = cortex(data_dir, "serve", "--port", str(port))
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
