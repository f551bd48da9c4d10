"""The starter pack that ships: loads, compiles, covers the required classes, and its examples pass."""

from __future__ import annotations

import subprocess
import sys

from appliance.packs import load_pack, run_pack_examples
from appliance.review.engine import RuleSet
from tests.support import ROOT

PACK = ROOT / "rules" / "secure-coding-core"


def test_the_pack_compiles_and_every_example_passes() -> None:
    pack = load_pack(PACK)
    assert RuleSet.compile([pack]).refused == []
    report = run_pack_examples(pack)
    assert report.missing == [] and report.failures == [] and report.ok
    assert len(pack.rules) >= 20


def test_the_pack_covers_the_required_weakness_classes() -> None:
    cwes = {rule.cwe for rule in load_pack(PACK).rules}
    required = {
        798: "hard-coded credentials", 89: "SQL injection", 78: "OS command injection", 95: "eval injection",
        502: "unsafe deserialization", 295: "disabled TLS verification", 338: "insecure randomness",
        611: "XXE", 22: "path traversal",
    }
    missing = {cwe: what for cwe, what in required.items() if cwe not in cwes}
    assert not missing, f"no rule for {missing}"
    titles = " ".join(rule.title.lower() for rule in load_pack(PACK).rules)
    for words in ("private key", "card", "ssn", "password"):
        assert words in titles or any(words in r.message.lower() for r in load_pack(PACK).rules), words


def test_cortex_packs_test_command_passes_on_the_pack() -> None:
    result = subprocess.run([sys.executable, "-m", "appliance", "packs", "test", str(PACK)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "secure-coding-core" in result.stdout and "examples passed" in result.stdout
