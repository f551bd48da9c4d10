"""Rule-pack lifecycle: loading pack folders, testing their examples, choosing the active packs."""

from appliance.packs.loader import discover_packs, load_pack, pack_digest
from appliance.packs.service import load_ruleset
from appliance.packs.testing import PackTestReport, run_pack_examples

__all__ = ["PackTestReport", "discover_packs", "load_pack", "load_ruleset", "pack_digest", "run_pack_examples"]
