"""Rule-pack lifecycle: signed manifests and the trust root, offline import and activation, selection
per repository, and the pack authors' tools (examples, keys, signing)."""

from appliance.packs.importer import ImportResult, import_pack
from appliance.packs.loader import discover_packs, load_pack, pack_digest
from appliance.packs.rootstore import current_root, update_root
from appliance.packs.selection import TEMPLATES, clear_selection, list_selections, set_selection
from appliance.packs.service import PackCatalog, load_active_packs, load_ruleset
from appliance.packs.testing import PackTestReport, run_pack_examples

__all__ = [
    "TEMPLATES",
    "ImportResult",
    "PackCatalog",
    "PackTestReport",
    "clear_selection",
    "current_root",
    "discover_packs",
    "import_pack",
    "list_selections",
    "load_active_packs",
    "load_pack",
    "load_ruleset",
    "pack_digest",
    "run_pack_examples",
    "set_selection",
    "update_root",
]
