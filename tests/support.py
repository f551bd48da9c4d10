"""Helpers the tests share: settings from defaults only, the sign-in form, a real server process."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from litestar.testing import TestClient

from appliance import clock
from appliance.config import Settings, load_settings
from appliance.errors import PackError
from appliance.packs import load_pack
from appliance.packs.keys import generate_key, load_private_key, load_public_key
from appliance.packs.manifest import build_tar, sign_folder, stamp_pack_toml
from appliance.packs.trust import make_root, sign_document

ROOT = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "correct-horse-battery-staple"


# The trust root the tests sign packs for (made once per session by conftest's `test_trust`).
TEST_TRUST: dict[str, Path] = {}


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings from defaults only (no /etc file, no CORTEX_* environment), plus overrides."""
    values: dict[str, Any] = {"workers": 0, "model_enabled": False, "job_lease_seconds": 30}
    if "root" in TEST_TRUST:
        values["trust_root"] = TEST_TRUST["root"]
    values.update(overrides)
    return load_settings({"CORTEX_CONFIG": ""}, data_dir=data_dir, **values)


@dataclass(frozen=True)
class Trust:
    """A test publisher: root and pack keys, the root document, and signed tars of every pack in rules/."""

    dir: Path
    root_key: Path
    pack_key: Path
    root: Path
    packs: dict[str, Path]


def pack_folders() -> list[Path]:
    return sorted(p for p in (ROOT / "rules").iterdir() if (p / "pack.toml").is_file())


def make_trust(base: Path) -> Trust:
    base.mkdir(parents=True, exist_ok=True)
    root_key, pack_key = base / "root.pem", base / "pack.pem"
    generate_key(root_key)
    generate_key(pack_key)
    root = make_root(version=1, environment="development", expires=clock.now() + timedelta(days=3650),
                     root_keys=[load_public_key(root_key)], root_threshold=1,
                     pack_keys=[load_public_key(pack_key)], pack_threshold=1)
    signatures = sign_document(root.signed, [], load_private_key(root_key))
    (base / "root.json").write_text(json.dumps({"signed": root.signed, "signatures": signatures}))
    packs = {}
    for folder in pack_folders():
        try:
            load_pack(folder)
        except PackError:
            continue  # tests/packs/test_packs.py fails on it, once, with the reason
        built = signed_pack(folder, base / "build" / folder.name, [pack_key])
        packs[folder.name] = build_tar(built, base / "dist" / f"{folder.name}.tar")
    return Trust(base, root_key, pack_key, base / "root.json", packs)


def signed_pack(source: Path, staging: Path, keys: list[Path], *, issued: datetime | None = None,
                valid: timedelta = timedelta(days=365), edit: Any = None) -> Path:
    """Copy a pack folder, let ``edit(folder)`` change it, stamp its dates and sign it with each key."""
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns("manifest.json", "__pycache__"))
    if edit is not None:
        edit(staging)
    stamp_pack_toml(staging, issued=(issued or clock.now()).replace(microsecond=0), valid_for=valid)
    for key in keys:
        sign_folder(staging, load_private_key(key))
    return staging


def git(repo: Path, *args: str) -> str:
    """Run real git in ``repo`` and return its output."""
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def init_repo(root: Path, files: dict[str, str | bytes], *, branch: str) -> Path:
    """A git repository whose ``main`` holds ``files``, checked out on a new ``branch``."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@site.invalid")
    git(root, "config", "user.name", "Dev")
    for name, content in files.items():
        path = root / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    git(root, "add", ".")
    git(root, "commit", "-qm", "base")
    git(root, "checkout", "-qb", branch)
    return root


CSRF_FIELD = re.compile(r'name="_csrf" value="([^"]*)"')


def form_csrf(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def sign_in(client: TestClient[Any] | httpx.Client, username: str = "admin", password: str = ADMIN_PASSWORD) -> str:
    """Sign in through the real form; returns the session's CSRF token."""
    page = client.get("/login")
    response = client.post("/login", data={"username": username, "password": password,
                                           "_csrf": form_csrf(page.text), "next": "/reviews"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    return form_csrf(client.get("/reviews/new").text)


# --- a real server process -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``cortex serve`` in a subprocess (the source tree, or the frozen binary)."""

    def __init__(self, data_dir: Path, *, command: list[str] | None = None, env: dict[str, str] | None = None,
                 workers: int = 1, tls_ca: Path | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"{'https' if tls_ca else 'http'}://127.0.0.1:{self.port}"
        self.verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(tls_ca)) if tls_ca else True
        self.command = command or [sys.executable, "-m", "appliance"]
        self.env = {**os.environ, "CORTEX_DATA_DIR": str(data_dir), "CORTEX_PORT": str(self.port),
                    "CORTEX_HOST": "127.0.0.1", "CORTEX_WORKERS": str(workers), "CORTEX_JOB_LEASE_SECONDS": "30",
                    "CORTEX_CONFIG": "", **({"CORTEX_TRUST_ROOT": str(TEST_TRUST["root"])} if TEST_TRUST else {}),
                    **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"server-{self.port}.log"

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.command, *args], env=self.env, input=stdin, capture_output=True, text=True,
                              timeout=120, check=False)

    def start(self, timeout: float = 120) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([*self.command, "serve"], env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                response = httpx.get(f"{self.base}/readyz", timeout=2, verify=self.verify)
                if response.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.log.read_text()[-4000:]}")

    def kill(self) -> None:
        """``kill -9``: no shutdown code runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


def make_token(server: ServerProcess, username: str = "ci", role: str = "developer") -> str:
    """An API token made through the real CLI against the server's data directory."""
    created = server.cli("users", "create", username, "--role", role, "--password-stdin", stdin=ADMIN_PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    token = server.cli("tokens", "create", "--user", username, "--name", "tests")
    assert token.returncode == 0, token.stderr
    return token.stdout.strip()


def wait_for_review(base: str, token: str, review_id: int, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{base}/api/v1/reviews/{review_id}", headers={"Authorization": f"Bearer {token}"},
                             timeout=10)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.3)
    raise AssertionError(f"review {review_id} did not finish within {timeout}s")
