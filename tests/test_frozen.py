"""The frozen `cortex` program (PyInstaller, one folder: the executable and its `runtime/`): serve and
review with llama.cpp and the grammars inside it. `python3 build.py test` freezes first and requires this
test to run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ROOT, Trust, make_token, wait_for_review

pytestmark = pytest.mark.slow


def frozen_binary() -> Path:
    path = Path(os.environ.get("CORTEX_FROZEN_BINARY", ROOT / "dist" / "frozen" / "cortex" / "cortex"))
    if not path.is_file():
        if os.environ.get("CORTEX_REQUIRE_FROZEN") == "1":
            pytest.fail(f"the frozen binary {path} is missing; `python3 build.py freeze` builds it")
        pytest.skip(f"no frozen binary at {path} (run `python3 build.py freeze`)")
    return path


def test_frozen_binary_serves_and_reviews_with_the_model(server_factory: Any, tmp_path: Path,
                                                         test_trust: Trust) -> None:
    binary = frozen_binary()
    server = server_factory(tmp_path / "frozen-data", command=[str(binary)], env={
        "CORTEX_MODEL_ENABLED": "true",
        # The binary carries the model manifest, the trust root and the manual; the GGUF file ships beside it.
        "CORTEX_MODELS_DIR": str(ROOT / "models"),
        "PYTHONPATH": "",
    })
    version = server.cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("cortex, version")
    # The frozen importer verifies and activates the signed packs (tarfile, Ed25519, tree-sitter inside).
    imported = server.cli("packs", "import", *map(str, test_trust.packs.values()))
    assert imported.returncode == 0 and "activated secure-coding-core" in imported.stdout, imported.stderr
    packs = server.cli("packs", "list")
    assert "secure-coding-core" in packs.stdout, packs.stderr
    server.start()
    ready = httpx.get(f"{server.base}/readyz").json()
    assert ready["checks"]["model"]["status"] == "ready", ready
    token = make_token(server)
    diff = (b"--- a/app.py\n+++ b/app.py\n@@ -0,0 +1,3 @@\n+import yaml\n+def load(f):\n"
            b"+    return yaml.load(f)\n")
    response = httpx.post(f"{server.base}/api/v1/reviews", content=diff, timeout=30,
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "text/x-diff"})
    assert response.status_code == 202, response.text
    review = wait_for_review(server.base, token, response.json()["id"])
    assert review["status"] == "done" and review["model"]["status"] == "reviewed"
    assert any(f["rule_id"] == "CORE-DESER-002" for f in review["findings"])
    assert httpx.get(f"{server.base}/docs").status_code == 200
    assert httpx.get(f"{server.base}/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
