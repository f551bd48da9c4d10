"""The Huey queue (SqliteHuey on ``queue.db``) and the consumer threads that ``cortex serve`` runs.

The queue only carries job ids, serialized as JSON (never pickle: a queue file must not be able to run
code). Huey forgets a task once a worker takes it, so the jobs ledger (``appliance.jobs``) is the record
of accepted work: at start-up, and every minute after, :meth:`JobQueue.reconcile` hands back jobs whose
worker died and enqueues every queued job; duplicate deliveries are harmless (claims are fenced).
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from typing import Any

from huey import SqliteHuey, crontab
from huey.consumer import Consumer
from huey.registry import Message
from huey.serializer import Serializer

from appliance.config import Settings
from appliance.inference import ModelRuntime
from appliance.jobs import current_owner, get_job, reconcile
from appliance.review.service import JOB_KIND as REVIEW_JOB
from appliance.review.service import RuleSetSource, run_review_job
from appliance.store import Database

__all__ = ["JSONSerializer", "JobQueue"]

log = logging.getLogger(__name__)


class JSONSerializer(Serializer):
    """Huey messages as JSON: ids and plain values only."""

    def _encode(self, value: Any) -> Any:
        if isinstance(value, Message):
            return {"__message__": {k: self._encode(v) for k, v in value._asdict().items()}}
        if isinstance(value, datetime):
            return {"__datetime__": value.isoformat()}
        if isinstance(value, tuple | list):
            return [self._encode(v) for v in value]
        if isinstance(value, dict):
            return {str(k): self._encode(v) for k, v in value.items()}
        if value is None or isinstance(value, str | int | float | bool):
            return value
        raise TypeError(f"task payloads carry ids and plain values, not {type(value).__name__}")

    def _decode(self, value: Any) -> Any:
        if isinstance(value, dict):
            if "__message__" in value:
                fields = {k: self._decode(v) for k, v in value["__message__"].items()}
                fields["args"] = tuple(fields.get("args") or ())
                return Message(**fields)
            if "__datetime__" in value:
                return datetime.fromisoformat(value["__datetime__"])
            return {k: self._decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._decode(v) for v in value]
        return value

    def _serialize(self, data: Any) -> bytes:
        return json.dumps(self._encode(data), separators=(",", ":")).encode()

    def _deserialize(self, data: bytes) -> Any:
        decoded = self._decode(json.loads(bytes(data)))
        return tuple(decoded) if isinstance(decoded, list) else decoded


class _EmbeddedConsumer(Consumer):
    """A consumer living inside the web server's process: the server owns the signal handlers."""

    def _set_signal_handlers(self) -> None:
        return None


class JobQueue:
    """The queue, its tasks and (when started) its consumer threads, for one process."""

    def __init__(self, settings: Settings, db: Database, rulesets: RuleSetSource,
                 runtime: ModelRuntime | None) -> None:
        """``rulesets`` gives each review its repository's rule set (the catalog of active packs)."""
        self.settings = settings
        self.db = db
        self.rulesets = rulesets
        self.runtime = runtime
        settings.queue_path.parent.mkdir(parents=True, exist_ok=True)
        self.huey = SqliteHuey(name="cortex", filename=str(settings.queue_path), results=False, utc=True,
                               serializer=JSONSerializer(), fsync=True, timeout=15)
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()
        self._run_task = self.huey.task(name="cortex.run_job")(self._run_job)
        self._reconcile_task = self.huey.periodic_task(crontab(minute="*"), name="cortex.reconcile")(
            self.reconcile)

    def _run_job(self, job_id: int) -> str:
        with self.db.read() as tx:
            job = get_job(tx, job_id)
        if job is None:
            log.warning("job %s is not in the ledger; dropped", job_id)
            return "missing"
        if job.kind == REVIEW_JOB:
            outcome = run_review_job(self.db, self.settings, job_id, owner=current_owner(),
                                     ruleset=self.rulesets, runtime=self.runtime)
            log.info("job %s (review %s): %s", job_id, job.ref_id, outcome)
            return outcome
        log.error("job %s has unknown kind %r", job_id, job.kind)
        return "unknown"

    def enqueue(self, job_id: int) -> None:
        """Put a job id on the queue. Losing this (a crash right after the ledger commit) loses nothing:
        reconcile finds the queued job."""
        self._run_task(job_id)

    def reconcile(self) -> int:
        """Hand back stale jobs and enqueue the queued ones the queue does not hold; returns how many."""
        queued = reconcile(self.db, owner=current_owner())
        waiting = {task.args[0] for task in self.huey.pending() if task.args}
        missing = [job for job in queued if job.id not in waiting]
        for job in missing:
            self.enqueue(job.id)
        if missing:
            log.info("reconcile: enqueued %d queued job(s) the queue did not hold", len(missing))
        return len(missing)

    def pending(self) -> int:
        return int(self.huey.pending_count())

    # --- consumer --------------------------------------------------------------------------------

    def start(self, workers: int) -> None:
        with self._lock:
            if self._consumer is not None or workers <= 0:
                return
            self.reconcile()
            self._consumer = _EmbeddedConsumer(self.huey, workers=workers, worker_type="thread", periodic=True,
                                               initial_delay=0.05, backoff=1.3, max_delay=1.0,
                                               check_worker_health=False)
            self._consumer.start()

    def stop(self, timeout: float = 30.0) -> None:
        with self._lock:
            consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.shutdown_timeout = timeout
            consumer.stop(graceful=True)

    def health(self) -> dict[str, Any]:
        consumer = self._consumer
        if consumer is None:
            return {"running": False, "workers": 0, "alive": 0}
        alive = sum(1 for _, proc in consumer.worker_threads if proc.is_alive())
        scheduler = consumer.scheduler.is_alive()
        return {"running": alive > 0 and scheduler, "workers": len(consumer.worker_threads), "alive": alive,
                "scheduler": scheduler}
