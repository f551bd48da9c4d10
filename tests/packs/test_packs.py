"""Every pack in rules/: loads, compiles, and passes its own examples; and the packs together cover
what the compliance milestone asks for."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.packs import load_pack, run_pack_examples
from appliance.review.engine import RuleSet
from tests.support import pack_folders


@pytest.mark.parametrize("folder", pack_folders(), ids=lambda p: p.name)
def test_each_pack_compiles_and_its_examples_pass(folder: Path) -> None:
    pack = load_pack(folder)
    assert RuleSet.compile([pack]).refused == []
    report = run_pack_examples(pack)
    assert report.missing == [], report.missing
    assert [f"{f.rule_id} #{f.index}: {f.detail}" for f in report.failures] == []
    assert pack.product == "cortex-code-appliance" and pack.frameworks
    for rule in pack.rules:
        assert rule.controls, f"{pack.id}/{rule.id} maps to no framework control"
