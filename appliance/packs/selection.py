"""Which packs review which repository: a selection per repository, a default, and industry templates.

Resolution: the repository's own selection, else the default selection, else every active pack. A
template expands to its packs (those that are active) and may switch on strict severities.
"""

from __future__ import annotations

import json
from typing import Any

from appliance.audit import Actor, AuditTag, record_event
from appliance.errors import ValidationError
from appliance.packs import repo
from appliance.store import Database, Transaction

__all__ = ["TEMPLATES", "clear_selection", "list_selections", "resolve_selection", "set_selection"]

TEMPLATES: dict[str, dict[str, Any]] = {
    "healthcare": {"packs": ["hipaa", "gdpr", "secure-coding", "secure-coding-core"], "strict": False,
                   "description": "HIPAA Security Rule and GDPR with the secure-coding baseline"},
    "financial": {"packs": ["pci-dss", "sox", "secure-coding", "secure-coding-core"], "strict": False,
                  "description": "PCI DSS v4.0 and SOX IT general controls with the secure-coding baseline"},
    "government": {"packs": ["nist-800-53", "secure-coding", "secure-coding-core", "secrets"], "strict": True,
                   "description": "NIST SP 800-53 Rev. 5, secure coding and secrets, with strict severities "
                                  "(every finding one level more severe)"},
}


def _scope(repository: str | None) -> str:
    return "default" if not repository else f"repo:{repository}"


def resolve_selection(tx: Transaction, repository: str) -> dict[str, Any]:
    """``{"scope", "template", "packs" (None: all active), "strict"}`` for ``repository``."""
    for scope in (_scope(repository), "default"):
        row = tx.one("SELECT * FROM pack_selections WHERE scope = ?", (scope,))
        if row is not None:
            packs = json.loads(row["packs"])
            if row["template"] in TEMPLATES:
                # A template means its packs as they are active now, so a pack imported later joins in.
                active = {r[0] for r in tx.rows("SELECT id FROM packs")}
                packs = [p for p in TEMPLATES[row["template"]]["packs"] if p in active]
            return {"scope": scope, "template": row["template"], "packs": packs, "strict": bool(row["strict"])}
    return {"scope": "all", "template": None, "packs": None, "strict": False}


def set_selection(db: Database, *, repository: str | None, actor: Actor, template: str | None = None,
                  packs: list[str] | None = None, strict: bool | None = None) -> dict[str, Any]:
    """Choose the packs for a repository (or the default with ``repository=None``).

    Raises:
        ValidationError: an unknown template, no packs, or a pack that is not active.
    """
    if (template is None) == (packs is None):
        raise ValidationError("choose either a template (healthcare, financial, government) or a list of packs")
    with db.write() as tx:
        active = {row["id"] for row in repo.active_packs(tx)}
        if template is not None:
            if template not in TEMPLATES:
                raise ValidationError(f"unknown template {template!r}; templates: {', '.join(TEMPLATES)}")
            chosen = [p for p in TEMPLATES[template]["packs"] if p in active]
            missing = [p for p in TEMPLATES[template]["packs"] if p not in active]
            is_strict = TEMPLATES[template]["strict"] if strict is None else strict
        else:
            chosen = list(dict.fromkeys(packs or []))
            missing = [p for p in chosen if p not in active]
            if missing:
                raise ValidationError(f"pack(s) {', '.join(missing)} are not active; import them first "
                                      f"(active: {', '.join(sorted(active)) or 'none'})")
            is_strict = bool(strict)
        if not chosen:
            raise ValidationError("the selection names no active pack")
        scope = _scope(repository)
        repo.upsert_selection(tx, scope=scope, template=template, packs=chosen, strict=is_strict, actor=actor.name)
        repo.bump_generation(tx)
        record_event(tx, AuditTag.PACKS_SELECTION_CHANGED, actor, target=scope,
                     details={"template": template, "packs": chosen, "strict": is_strict,
                              "template_packs_not_active": missing if template else []})
    return {"scope": scope, "template": template, "packs": chosen, "strict": is_strict,
            "not_active": missing if template else []}


def clear_selection(db: Database, *, repository: str | None, actor: Actor) -> bool:
    scope = _scope(repository)
    with db.write() as tx:
        if not tx.execute("DELETE FROM pack_selections WHERE scope = ?", (scope,)):
            return False
        repo.bump_generation(tx)
        record_event(tx, AuditTag.PACKS_SELECTION_CHANGED, actor, target=scope, details={"cleared": True})
    return True


def list_selections(db: Database) -> list[dict[str, Any]]:
    with db.read() as tx:
        return repo.selections(tx)
