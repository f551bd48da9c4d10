"""The jobs ledger: the appliance's own record of accepted work, because the queue forgets.

Huey removes a task from its queue when a worker takes it, so a worker killed mid-task loses it. Each
job therefore has a row here (queued, running, done, failed; attempts; lease), written in the same
transaction as the work's acceptance. A worker *claims* a job before running it and *finishes* it in
the transaction that stores its results, fenced on its lease: if another worker took the job over, the
late result is discarded, so a job's results are stored exactly once however often it is delivered.

Leases: a running job names its owner (``host:pid:start-time``) and a lease expiry the owner renews.
At start-up a process hands back the running jobs of dead processes on its own host at once; any host
hands back jobs whose lease expired (an owner on another host that stopped renewing).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from appliance import clock
from appliance.audit import Actor, AuditTag, record_event
from appliance.store import Database, Transaction

__all__ = [
    "Claim",
    "JobState",
    "claim_job",
    "create_job",
    "current_owner",
    "finish_job",
    "get_job",
    "job_for",
    "keep_lease",
    "reconcile",
    "release_job",
]


@dataclass(frozen=True)
class JobState:
    id: int
    kind: str
    ref_id: int
    status: str
    attempts: int
    lease_owner: str | None
    lease_expires_at: str | None
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobState:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Claim:
    """The outcome of trying to claim a job."""

    job: JobState
    claimed: bool
    reason: str  # claimed, finished, held, exhausted


def _process_start_ticks(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (Linux), to tell a live owner from pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields after it are fixed.
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


log = logging.getLogger(__name__)
_OWNER: str | None = None


def current_owner() -> str:
    """This process's lease-owner name: ``host:pid:start-ticks``."""
    global _OWNER
    if _OWNER is None or _OWNER.split(":")[1] != str(os.getpid()):
        pid = os.getpid()
        _OWNER = f"{socket.gethostname()}:{pid}:{_process_start_ticks(pid) or '0'}"
    return _OWNER


def _owner_alive_here(owner: str) -> bool | None:
    """True/False for an owner on this host; None when the owner is on another host."""
    try:
        host, pid_text, ticks = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return None
    return _process_start_ticks(pid) == ticks


def create_job(tx: Transaction, kind: str, ref_id: int) -> int:
    now = clock.now_iso()
    return tx.insert("jobs", {"kind": kind, "ref_id": ref_id, "status": "queued", "attempts": 0,
                              "created_at": now, "updated_at": now})


def get_job(tx: Transaction, job_id: int) -> JobState | None:
    row = tx.one("SELECT * FROM jobs WHERE id = ?", (job_id,))
    return JobState.from_row(row) if row else None


def job_for(tx: Transaction, kind: str, ref_id: int) -> JobState | None:
    row = tx.one("SELECT * FROM jobs WHERE kind = ? AND ref_id = ?", (kind, ref_id))
    return JobState.from_row(row) if row else None


def claim_job(tx: Transaction, job_id: int, owner: str, *, lease_seconds: int, max_attempts: int) -> Claim:
    """Try to take ``job_id`` for ``owner`` inside ``tx``.

    A finished job, or one running under a live lease, is not claimed (a duplicate delivery), even when
    the lease is this process's own: two worker threads of one process never run the same job. A job
    that has used up its attempts is marked failed here.
    """
    job = get_job(tx, job_id)
    if job is None:
        raise LookupError(f"job {job_id} does not exist")
    now = clock.now()
    if job.status in ("done", "failed"):
        return Claim(job, False, "finished")
    if job.status == "running" and job.lease_expires_at and clock.from_iso(job.lease_expires_at) > now:
        return Claim(job, False, "held")
    if job.attempts >= max_attempts:
        error = (f"gave up after {job.attempts} attempts: the worker stopped before finishing each time "
                 "(see the service log around those times)")
        tx.execute("UPDATE jobs SET status = 'failed', error = ?, lease_owner = NULL, lease_expires_at = NULL, "
                   "updated_at = ?, finished_at = ? WHERE id = ?", (error, clock.iso(now), clock.iso(now), job_id))
        return Claim(get_job(tx, job_id) or job, False, "exhausted")
    tx.execute(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?, "
        "updated_at = ?, started_at = ?, error = NULL WHERE id = ?",
        (owner, clock.iso(now + timedelta(seconds=lease_seconds)), clock.iso(now), clock.iso(now), job_id))
    return Claim(get_job(tx, job_id) or job, True, "claimed")


def release_job(tx: Transaction, job_id: int, owner: str, *, why: str) -> bool:
    """Hand a job this owner holds back to the queue (a transient failure: storage, shutdown); audited."""
    changed = tx.execute(
        "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, updated_at = ? "
        "WHERE id = ? AND status = 'running' AND lease_owner = ?", (clock.now_iso(), job_id, owner))
    job = get_job(tx, job_id) if changed else None
    if job is not None:
        record_event(tx, AuditTag.JOBS_JOB_REQUEUED, Actor.system(), target=f"{job.kind}:{job.ref_id}",
                     details={"job": job_id, "previous_owner": owner, "attempts": job.attempts, "why": why})
    return changed == 1


def finish_job(tx: Transaction, job_id: int, owner: str, *, status: str, error: str | None = None) -> bool:
    """Mark a job done or failed, only if ``owner`` still holds it. Returns whether it did."""
    if status not in ("done", "failed"):
        raise ValueError(f"a job finishes as done or failed, not {status!r}")
    now = clock.now_iso()
    changed = tx.execute(
        "UPDATE jobs SET status = ?, error = ?, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?, "
        "finished_at = ? WHERE id = ? AND status = 'running' AND lease_owner = ?",
        (status, error, now, now, job_id, owner))
    return changed == 1


def _renew(db: Database, job_id: int, owner: str, lease_seconds: int) -> bool:
    with db.write() as tx:
        return tx.execute(
            "UPDATE jobs SET lease_expires_at = ?, updated_at = ? WHERE id = ? AND status = 'running' "
            "AND lease_owner = ?",
            (clock.now_iso(timedelta(seconds=lease_seconds)), clock.now_iso(), job_id, owner)) == 1


@contextmanager
def keep_lease(db: Database, job_id: int, owner: str, lease_seconds: int) -> Iterator[None]:
    """Renew the job's lease in the background while the block runs."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(max(lease_seconds / 3, 1)):
            try:
                if not _renew(db, job_id, owner, lease_seconds):
                    return
            except Exception:  # a failed renewal must not kill the job; the lease just lapses
                log.warning("could not renew the lease of job %s", job_id, exc_info=True)

    thread = threading.Thread(target=renew, name=f"lease-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def reconcile(db: Database, *, owner: str) -> list[JobState]:
    """Hand back jobs whose worker is gone and return every job that should be (re-)enqueued.

    Running jobs of dead processes on this host, and running jobs whose lease expired (whoever held it,
    this process included: a live worker renews its lease), go back to queued (an audit event each).
    The result lists all queued jobs, oldest first.
    """
    now = clock.now()
    with db.write() as tx:
        running = [JobState.from_row(r) for r in tx.query("SELECT * FROM jobs WHERE status = 'running'")]
        for job in running:
            alive = False if job.lease_owner is None else (
                True if job.lease_owner == owner else _owner_alive_here(job.lease_owner))
            expired = job.lease_expires_at is None or clock.from_iso(job.lease_expires_at) <= now
            if alive is False or expired:
                tx.execute("UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, "
                           "updated_at = ? WHERE id = ?", (clock.iso(now), job.id))
                record_event(tx, AuditTag.JOBS_JOB_REQUEUED, Actor.system(), target=f"{job.kind}:{job.ref_id}",
                             details={"job": job.id, "previous_owner": job.lease_owner,
                                      "attempts": job.attempts,
                                      "why": "owner process ended" if alive is False else "lease expired"})
        queued = [JobState.from_row(r) for r in tx.query("SELECT * FROM jobs WHERE status = 'queued' ORDER BY id")]
    return queued
