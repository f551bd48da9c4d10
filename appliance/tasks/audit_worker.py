"""The audit log's background work inside ``cortex serve``: checkpoints, forwarding and retention.

One thread wakes every second: it signs a checkpoint when ``audit_checkpoint_events`` events arrived or
``audit_checkpoint_minutes`` passed since the last one, sends each forwarder its next batches, and once an
hour applies the retention policies. (Huey's periodic tasks run at most once a minute, too coarse for the
checkpoint and forwarding cadence; this work also needs no queue, since the database holds its state.)
A forwarder that fails is retried with a backoff of up to ``MAX_BACKOFF`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time

from appliance.audit import Actor
from appliance.audit.checkpoints import checkpoint_due, load_key, make_checkpoint
from appliance.audit.forwarders import ForwardError, deliver, list_forwarders
from appliance.audit.retention import purge
from appliance.config import Settings
from appliance.errors import ApplianceError
from appliance.store import Database

__all__ = ["AuditWorker"]

log = logging.getLogger(__name__)

TICK = 1.0
MAX_BACKOFF = 5.0
PURGE_EVERY = 3600.0
BATCHES_PER_TICK = 20


class AuditWorker:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry_at: dict[int, tuple[float, float]] = {}  # forwarder id -> (monotonic time, backoff)
        self._next_purge = time.monotonic() + 60.0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="audit-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout=timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            try:
                self.tick()
            except Exception:  # the worker must outlive a full disk or a locked database
                log.exception("audit worker: tick failed")

    def checkpoint(self) -> None:
        if checkpoint_due(self.db, every_events=self.settings.audit_checkpoint_events,
                          every_minutes=self.settings.audit_checkpoint_minutes):
            made = make_checkpoint(self.db, self.settings.data_dir)
            if made is not None:
                log.info("audit checkpoint signed at size %d", made.size)

    def forward(self) -> None:
        appliance_id = load_key(self.db, self.settings.data_dir).appliance_id
        now = time.monotonic()
        for forwarder in list_forwarders(self.db):
            when, backoff = self._retry_at.get(forwarder.id, (0.0, 0.0))
            if now < when:
                continue
            try:
                for _ in range(BATCHES_PER_TICK):
                    if not deliver(self.db, forwarder.id, appliance_id=appliance_id):
                        break
                self._retry_at.pop(forwarder.id, None)
            except ForwardError as exc:
                backoff = min(MAX_BACKOFF, max(1.0, backoff * 2))
                self._retry_at[forwarder.id] = (time.monotonic() + backoff, backoff)
                log.warning("audit forwarder %s: %s (retry in %.0f s)", forwarder.name, exc, backoff)

    def retention(self) -> None:
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_EVERY
        try:
            result = purge(self.db, self.settings.data_dir, actor=Actor.system(), audit_refusal=False)
        except ApplianceError as exc:
            log.info("audit retention: %s", exc.message)
            return
        if result.events:
            log.info("audit retention purged %d events into %s", result.events, result.archive)

    def tick(self) -> None:
        self.checkpoint()
        self.forward()
        self.retention()
