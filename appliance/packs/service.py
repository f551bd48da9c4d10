"""The packs the appliance reviews with: discovered, compiled, and every refusal recorded.

Signed import, trust roots and per-repository selection come with the signed-packs issue; today the
active packs are the folders under ``settings.rules_dir``.
"""

from __future__ import annotations

import logging

from appliance.audit import Actor, AuditTag, record_event
from appliance.config import Settings
from appliance.errors import PackError
from appliance.packs.loader import discover_packs
from appliance.review.engine import RuleSet
from appliance.store import Database

__all__ = ["load_ruleset"]

log = logging.getLogger(__name__)


def load_ruleset(settings: Settings, db: Database | None = None, *, actor: Actor | None = None) -> RuleSet:
    """Load and compile the packs under ``settings.rules_dir``.

    A pack that is malformed or does not compile is refused (logged, and audited when ``db`` is given);
    the others are active. With ``db``, each active pack's load is audited too.
    """
    packs, load_errors = discover_packs(settings.rules_dir)
    ruleset = RuleSet.compile(packs)
    refused: list[PackError] = [*load_errors, *ruleset.refused]
    ruleset.refused = refused
    for error in refused:
        log.error("rule pack refused: %s", error.message)
    if db is not None:
        who = actor or Actor.system()
        with db.write() as tx:
            for error in refused:
                record_event(tx, AuditTag.PACKS_PACK_REFUSED, who, target=f"pack:{error.pack_id or '?'}",
                             outcome="failure", details={"rule": error.rule_id, "reason": error.message})
            for pack in ruleset.packs:
                record_event(tx, AuditTag.PACKS_PACK_LOADED, who, target=f"pack:{pack.id}",
                             details=pack.provenance())
    return ruleset
