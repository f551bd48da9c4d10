"""The parts one appliance process shares: the database, the rule set, the model and the job queue.

Built once per process by the entry points (``cortex serve`` through ``create_app``, the other CLI
commands directly) from explicit settings; nothing here reads globals or the environment.
"""

from __future__ import annotations

import logging
import shutil
import threading
from typing import Any

from appliance.audit import Actor, AuditTag, RepeatGate, record_event
from appliance.audit.checkpoints import load_key, make_checkpoint
from appliance.config import Settings
from appliance.inference import ModelRuntime
from appliance.packs import PackCatalog
from appliance.review.engine import RuleSet
from appliance.store import Database, Migration, Transaction, migrate
from appliance.tasks.audit_worker import AuditWorker
from appliance.tasks.queue import JobQueue

__all__ = ["Services", "open_database"]

log = logging.getLogger(__name__)


def open_database(settings: Settings) -> Database:
    """Open ``appliance.db`` and apply pending migrations, each audited in its own transaction."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_path)

    def audited(tx: Transaction, migration: Migration) -> None:
        record_event(tx, AuditTag.SYSTEM_DATABASE_MIGRATED, Actor.system(), target="database",
                     details={"version": migration.version, "name": migration.name, "checksum": migration.checksum})

    for migration in migrate(db, on_applied=audited):
        log.info("applied migration %04d_%s", migration.version, migration.name)
    return db


class Services:
    """One process's database, rule set, model runtime and job queue."""

    def __init__(self, settings: Settings, *, db: Database | None = None) -> None:
        self.settings = settings
        self.db = db or open_database(settings)
        self.runtime = ModelRuntime(settings)
        # Refusals an anonymous client can provoke are audited through this gate (see audit/gate.py).
        self.refusal_gate = RepeatGate()
        self.catalog = PackCatalog(settings, self.db)
        # A user re-reading the same review within audit_view_minutes is recorded once (see web/controllers).
        self.view_gate = RepeatGate(burst=1, window_seconds=settings.audit_view_minutes * 60.0)
        self.audit_worker = AuditWorker(settings, self.db)
        self.queue = JobQueue(settings, self.db, self.catalog, self.runtime)
        self._model_thread: threading.Thread | None = None

    @property
    def ruleset(self) -> RuleSet:
        """Every active pack (reloaded when an import or a selection changes them)."""
        return self.catalog.ruleset

    def load_model(self) -> None:
        self.runtime.load(self.db)

    def start(self, *, workers: int | None = None) -> None:
        """Start the service; in the background, the model, then the queue consumer, then the packs
        (checked, then compiled).

        The consumer waits for the model: a review taken while the model loads would otherwise run
        rules-only for good. Until the model is up and the packs are checked, /readyz says "not ready"
        (and /healthz answers). A review that comes before the rules are compiled waits for them.
        """
        count = self.settings.workers if workers is None else workers
        # Leftovers of an import or upload cut short (a crash, a power cut) are never active: clear them.
        for leftover in (".staging", ".uploads"):
            shutil.rmtree(self.settings.data_dir / "packs" / leftover, ignore_errors=True)
        with self.db.write() as tx:
            record_event(tx, AuditTag.SYSTEM_SERVICE_STARTED, Actor.system(), target="service",
                         details={"workers": count, "data_dir": str(self.settings.data_dir)})
        load_key(self.db, self.settings.data_dir)  # created (and audited) on first start
        self.catalog.begin_load()  # checked and compiled by bring_up(); a review waits for the rules
        self.audit_worker.start()

        def bring_up() -> None:
            try:
                self.runtime.load(self.db)
                self.queue.start(count)
            finally:
                # After the model: compiling the queries holds the GIL for milliseconds at a time, and the
                # model's load (thousands of short calls into llama.cpp) would queue behind it for seconds.
                self.catalog.load()

        self._model_thread = threading.Thread(target=bring_up, name="bring-up", daemon=True)
        self._model_thread.start()

    def stop(self) -> None:
        """Stop: the model first, so a review mid-generation is handed back to the queue at its next
        chunk (not stored half-reviewed), then the consumer, then the audit record of the stop."""
        if self._model_thread is not None:
            self._model_thread.join(timeout=120)
        self.runtime.close()
        self.queue.stop()
        self.audit_worker.stop()
        try:
            with self.db.write() as tx:
                record_event(tx, AuditTag.SYSTEM_SERVICE_STOPPED, Actor.system(), target="service")
            # The stop is the last event of this run: sign it, so the log's end is covered when it rests.
            make_checkpoint(self.db, self.settings.data_dir)
        except Exception:  # a full disk must not stop the shutdown
            log.exception("could not record the service stop")

    def close(self) -> None:
        self.runtime.close()
        self.db.close()

    def readiness(self) -> dict[str, Any]:
        """What /readyz reports: database writable, consumer alive, model loaded or why not."""
        checks: dict[str, Any] = {}
        try:
            with self.db.write():
                pass
            checks["database"] = {"ok": True}
        except Exception as exc:
            checks["database"] = {"ok": False, "reason": str(exc)}
        queue = self.queue.health()
        wanted = self.settings.workers > 0
        checks["queue"] = {"ok": queue["running"] or not wanted, **queue,
                           **({} if wanted else {"note": "no consumer in this process (workers = 0)"})}
        model = self.runtime.describe()
        model["ok"] = model["status"] in ("ready", "unavailable", "disabled")
        checks["model"] = model
        checks["audit"] = {"ok": self.audit_worker.alive() or self._model_thread is None,
                           "worker": self.audit_worker.alive()}
        try:
            packs = self.catalog.describe()
            checks["packs"] = {"ok": not packs.get("checking"), **packs}
            if packs.get("checking"):
                checks["packs"]["note"] = ("the active packs are loaded after the model: their files and "
                                           "signatures are checked, then their rules compiled")
            elif not packs["active"]:
                checks["packs"]["note"] = "no rule pack is active: import signed packs with `cortex packs import`"
        except Exception as exc:  # readiness reports, never raises
            checks["packs"] = {"ok": False, "reason": str(exc), "active": [], "refused": []}
        ready = all(c["ok"] for c in checks.values())
        # A model switched off on purpose (rules-only sites) is not a degradation; a broken one is.
        degraded = (model["status"] == "unavailable" or bool(checks["packs"]["refused"])
                    or not checks["packs"]["active"] or bool(checks["packs"].get("expired")))
        return {"status": "ready" if ready and not degraded else "degraded" if ready else "not ready",
                "ready": ready, "checks": checks}
