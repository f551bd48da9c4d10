"""The packs domain's SQL: trusted roots, active packs, selections and appliance-wide state."""

from __future__ import annotations

import json
from typing import Any

from appliance import clock
from appliance.store import Transaction

__all__ = ["active_pack", "active_packs", "bump_generation", "get_state", "insert_root", "latest_root",
           "selections", "set_state", "upsert_pack", "upsert_selection"]

CLOCK_FLOOR = "packs.clock_floor"  # the latest issued time of any pack the appliance accepted
GENERATION = "packs.generation"  # changes whenever the active packs or selections change


def get_state(tx: Transaction, key: str, default: str | None = None) -> str | None:
    value = tx.scalar("SELECT value FROM appliance_state WHERE key = ?", (key,))
    return default if value is None else str(value)


def set_state(tx: Transaction, key: str, value: str) -> None:
    tx.execute("INSERT INTO appliance_state (key, value) VALUES (?, ?) "
               "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))


def bump_generation(tx: Transaction) -> None:
    set_state(tx, GENERATION, str(int(get_state(tx, GENERATION, "0") or 0) + 1))


def latest_root(tx: Transaction) -> dict[str, Any] | None:
    return tx.one("SELECT * FROM trust_roots ORDER BY version DESC LIMIT 1")


def insert_root(tx: Transaction, *, version: int, document: str, sha256: str, environment: str) -> None:
    tx.insert("trust_roots", {"version": version, "document": document, "sha256": sha256,
                              "environment": environment, "accepted_at": clock.now_iso()})


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row["signers"] = json.loads(row["signers"])
    row["frameworks"] = json.loads(row["frameworks"])
    return row


def active_pack(tx: Transaction, pack_id: str) -> dict[str, Any] | None:
    row = tx.one("SELECT * FROM packs WHERE id = ?", (pack_id,))
    return _decode(row) if row else None


def active_packs(tx: Transaction) -> list[dict[str, Any]]:
    return [_decode(r) for r in tx.query("SELECT * FROM packs ORDER BY id")]


def upsert_pack(tx: Transaction, row: dict[str, Any]) -> None:
    values = {**row, "signers": json.dumps(sorted(row["signers"])), "frameworks": json.dumps(list(row["frameworks"]))}
    columns = ", ".join(values)
    marks = ", ".join(f":{k}" for k in values)
    updates = ", ".join(f"{k} = excluded.{k}" for k in values if k != "id")
    tx.execute(f"INSERT INTO packs ({columns}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET {updates}",  # noqa: S608
               values)


def selections(tx: Transaction) -> list[dict[str, Any]]:
    rows = tx.query("SELECT * FROM pack_selections ORDER BY scope")
    for row in rows:
        row["packs"] = json.loads(row["packs"])
        row["strict"] = bool(row["strict"])
    return rows


def upsert_selection(tx: Transaction, *, scope: str, template: str | None, packs: list[str], strict: bool,
                     actor: str) -> None:
    tx.execute(
        "INSERT INTO pack_selections (scope, template, packs, strict, updated_by, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (scope) DO UPDATE SET template = excluded.template, packs = excluded.packs, "
        "strict = excluded.strict, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
        (scope, template, json.dumps(packs), int(strict), actor, clock.now_iso()))
