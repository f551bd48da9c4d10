"""The active rule packs of this process: loaded from the folders signed imports activated, checked
against their signed manifests, compiled, and reloaded when another process changes them.

Only packs that came through :func:`appliance.packs.importer.import_pack` are ever active: an edited file
under ``<data_dir>/packs`` no longer matches its manifest, and a pack whose signatures the current trust
root no longer accepts (its key was rotated out) is refused (and audited) at load. An expired pack keeps
reviewing, so a site is never left without rules, but readiness reports it as degraded until renewed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from appliance import clock
from appliance.audit import Actor, AuditTag, record_event
from appliance.config import Settings
from appliance.errors import PackError
from appliance.packs import repo
from appliance.packs.integrity import check_pack_files
from appliance.packs.loader import load_pack
from appliance.packs.manifest import read_folder_manifest
from appliance.packs.rootstore import current_root
from appliance.packs.selection import resolve_selection
from appliance.packs.trust import check_threshold
from appliance.review.engine import RuleSet
from appliance.review.ruleset import PackSpec
from appliance.store import Database

__all__ = ["PackCatalog", "load_active_packs", "load_ruleset"]

log = logging.getLogger(__name__)


def load_active_packs(db: Database, settings: Settings) -> tuple[list[PackSpec], list[PackError]]:
    with db.read() as tx:
        rows = repo.active_packs(tx)
    packs: list[PackSpec] = []
    errors: list[PackError] = []
    try:
        root = current_root(db, settings)
    except PackError as exc:
        return [], [PackError(f"no active pack can be trusted: {exc.message}")]
    for row in rows:
        folder = settings.data_dir / row["path"]
        try:
            check_pack_files(folder)
            manifest = read_folder_manifest(folder)
            if manifest is None:  # check_pack_files refuses this already
                raise PackError(f"{folder} has lost its manifest")
            # Against the root trusted now: after a key rotation, packs signed only by retired keys stop.
            check_threshold(manifest.payload, manifest.signatures, root.keys, root.roles["packs"],
                            what="its signatures, checked against the current trust root", role_name="packs")
            pack = load_pack(folder)
        except PackError as exc:
            errors.append(PackError(f"active pack {row['id']} {row['display_version']} refused at load: {exc.message}",
                                    pack_id=row["id"]))
            continue
        except Exception as exc:  # a pack must never stop the appliance: refuse it and go on
            errors.append(PackError(f"active pack {row['id']} could not be read ({exc!r})", pack_id=row["id"]))
            continue
        packs.append(pack)
    return packs, errors


def load_ruleset(db: Database, settings: Settings, *, actor: Actor | None = None, audit: bool = True,
                 verified: tuple[list[PackSpec], list[PackError]] | None = None) -> RuleSet:
    """Every active pack, compiled. Refusals are logged and (with ``audit``) recorded. ``verified`` is the
    result of :func:`load_active_packs` when the caller has it already."""
    packs, load_errors = verified if verified is not None else load_active_packs(db, settings)
    ruleset = RuleSet.compile(packs)
    ruleset.refused = [*load_errors, *ruleset.refused]
    for error in ruleset.refused:
        log.error("rule pack refused: %s", error.message)
    if audit:
        who = actor or Actor.system()
        with db.write() as tx:
            for error in ruleset.refused:
                record_event(tx, AuditTag.PACKS_PACK_REFUSED, who, target=f"pack:{error.pack_id or '?'}",
                             outcome="failure", details={"rule": error.rule_id, "reason": error.message})
            for pack in ruleset.packs:
                record_event(tx, AuditTag.PACKS_PACK_LOADED, who, target=f"pack:{pack.id}", details=pack.provenance())
    return ruleset


@dataclass(frozen=True)
class _Verified:
    """A load under way: the packs' files and signatures are checked; their rules are being compiled."""

    packs: list[PackSpec]
    errors: list[PackError]


class PackCatalog:
    """This process's view of the active packs and selections; reloads when their generation changes
    (an import or a selection change in any process bumps it).

    Checking the packs' files and signatures takes a fraction of a second; compiling their tree-sitter
    queries takes seconds (native work that holds the GIL). The service does both off its start-up path
    (:meth:`begin_load`, then :meth:`load` in its bring-up thread); :meth:`describe` (what /readyz shows)
    reports the checked packs at once, and anything that matches diffs waits for the compiled rules.
    """

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._lock = threading.Lock()
        self._generation: str | None = None
        self._all: RuleSet | None = None
        self._selected: dict[str, RuleSet] = {}
        self._starting = False  # the service's first load is still to come (begin_load .. load)
        self._verified: _Verified | None = None  # set while a load compiles
        self._reload_guard = threading.Lock()
        self._reloader: threading.Thread | None = None

    def _read_generation(self) -> str:
        with self.db.read() as tx:
            return str(repo.get_state(tx, repo.GENERATION, "0"))

    def _current(self) -> RuleSet:
        generation = self._read_generation()
        with self._lock:
            if self._all is None or generation != self._generation:
                try:
                    verified = load_active_packs(self.db, self.settings)
                    self._verified = _Verified(*verified)
                    self._all = load_ruleset(self.db, self.settings, verified=verified)
                    self._generation = generation
                    self._selected = {}
                finally:
                    self._verified = None
            return self._all

    def begin_load(self) -> None:
        """Say the first load is coming (:meth:`load`, from another thread): until then :meth:`describe`
        reports ``checking`` instead of starting one itself."""
        self._starting = True

    def load(self) -> None:
        """Check and compile the active packs now; a failure is logged (and retried on first use)."""
        try:
            self._load_quietly()
        finally:
            self._starting = False

    def _load_quietly(self) -> None:
        try:
            self._current()
        except Exception:
            log.exception("could not load the active rule packs")

    def _reload_in_background(self) -> None:
        with self._reload_guard:
            if self._reloader is None or not self._reloader.is_alive():
                self._reloader = threading.Thread(target=self._load_quietly, name="packs-reload", daemon=True)
                self._reloader.start()

    @property
    def ruleset(self) -> RuleSet:
        """All active packs."""
        return self._current()

    def for_repository(self, repository: str) -> RuleSet:
        """The packs selected for ``repository`` (its own selection, else the default, else all active)."""
        everything = self._current()
        with self.db.read() as tx:
            selection = resolve_selection(tx, repository)
        key = repr(sorted(selection.items(), key=lambda kv: kv[0]))
        with self._lock:
            if key not in self._selected:
                if selection["packs"] is None:
                    chosen = RuleSet(everything.packs, everything.rules, everything.refused,
                                     strict=selection["strict"], selection=selection)
                else:
                    chosen = everything.select(selection["packs"], strict=selection["strict"], selection=selection)
                self._selected[key] = chosen
            return self._selected[key]

    def describe(self) -> dict[str, Any]:
        """The active, refused and expired packs, without ever waiting for a compile: while a load
        compiles, the packs it has checked (files and signatures); when the packs changed since the last
        load, the last load's, while the new one runs in the background. ``compiled`` is false in both
        cases; ``checking`` is true while there is nothing loaded yet."""
        verified, current = self._verified, self._all
        if verified is not None:
            packs, refused, compiled = verified.packs, verified.errors, False
        elif current is not None and self._generation == self._read_generation():
            packs, refused, compiled = current.packs, current.refused, True
        else:
            if not self._starting:
                self._reload_in_background()
            if current is None:
                return {"active": [], "refused": [], "expired": [], "compiled": False, "checking": True}
            packs, refused, compiled = current.packs, current.refused, False
        now = clock.now()
        expired = [f"{p.id} {p.display_version} expired on {clock.iso(p.expires)}; import a renewed pack"
                   for p in packs if p.expires is not None and p.expires <= now]
        return {"active": [p.provenance() for p in packs], "refused": [e.message for e in refused],
                "expired": expired, "compiled": compiled}
