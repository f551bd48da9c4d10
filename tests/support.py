"""Helpers the tests share: settings from defaults only, the sign-in form, a real server process."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from litestar.testing import TestClient

from appliance.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "correct-horse-battery-staple"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings from defaults only (no /etc file, no CORTEX_* environment), plus overrides."""
    values: dict[str, Any] = {"workers": 0, "model_enabled": False, "job_lease_seconds": 30}
    values.update(overrides)
    return load_settings({"CORTEX_CONFIG": ""}, data_dir=data_dir, **values)


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
                    "CORTEX_CONFIG": "", **(env or {})}
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
