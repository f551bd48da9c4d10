"""The jobs ledger: claims are fenced, duplicates are harmless, dead workers' jobs come back."""

from __future__ import annotations

import subprocess
import sys

from appliance.jobs import claim_job, create_job, current_owner, finish_job, get_job, reconcile
from appliance.store import Database


def _job(db: Database) -> int:
    with db.write() as tx:
        ref = (tx.scalar("SELECT MAX(ref_id) FROM jobs") or 0) + 1
        return create_job(tx, "review", ref)


def test_a_finished_job_is_not_claimed_again(db: Database) -> None:
    job_id = _job(db)
    with db.write() as tx:
        assert claim_job(tx, job_id, "w1", lease_seconds=30, max_attempts=3).claimed
        assert finish_job(tx, job_id, "w1", status="done")
    with db.write() as tx:
        again = claim_job(tx, job_id, "w2", lease_seconds=30, max_attempts=3)
    assert (again.claimed, again.reason) == (False, "finished")


def test_a_live_lease_fences_other_workers(db: Database) -> None:
    job_id = _job(db)
    with db.write() as tx:
        assert claim_job(tx, job_id, "w1", lease_seconds=300, max_attempts=3).claimed
        second = claim_job(tx, job_id, "w2", lease_seconds=300, max_attempts=3)
        assert (second.claimed, second.reason) == (False, "held")
        # A worker that lost its lease cannot finish the job.
        assert not finish_job(tx, job_id, "w2", status="done")
        assert finish_job(tx, job_id, "w1", status="done")


def test_an_expired_lease_lets_another_worker_take_over(db: Database) -> None:
    job_id = _job(db)
    with db.write() as tx:
        claim_job(tx, job_id, "otherhost:1:1", lease_seconds=1, max_attempts=3)
        tx.execute("UPDATE jobs SET lease_expires_at = '2000-01-01T00:00:00.000000Z' WHERE id = ?", (job_id,))
        taken = claim_job(tx, job_id, "w2", lease_seconds=30, max_attempts=3)
        assert taken.claimed and taken.job.attempts == 2
        assert not finish_job(tx, job_id, "otherhost:1:1", status="done")


def test_attempts_run_out(db: Database) -> None:
    job_id = _job(db)
    for n in range(2):
        with db.write() as tx:
            tx.execute("UPDATE jobs SET status = 'queued' WHERE id = ?", (job_id,))
            assert claim_job(tx, job_id, f"w{n}", lease_seconds=30, max_attempts=2).claimed
    with db.write() as tx:
        tx.execute("UPDATE jobs SET status = 'queued' WHERE id = ?", (job_id,))
        last = claim_job(tx, job_id, "w9", lease_seconds=30, max_attempts=2)
        job = get_job(tx, job_id)
    assert last.reason == "exhausted" and job is not None and job.status == "failed"
    assert "gave up after 2 attempts" in (job.error or "")


def test_reconcile_hands_back_the_jobs_of_a_dead_process_on_this_host(db: Database) -> None:
    # A real process that has ended: its pid and start time identify a dead owner.
    child = subprocess.run([sys.executable, "-c", "from appliance.jobs import current_owner; print(current_owner())"],
                           capture_output=True, text=True, check=True)
    dead_owner = child.stdout.strip()
    running, queued = _job(db), _job(db)
    with db.write() as tx:
        claim_job(tx, running, dead_owner, lease_seconds=3600, max_attempts=3)
    mine = _job(db)
    with db.write() as tx:
        claim_job(tx, mine, current_owner(), lease_seconds=3600, max_attempts=3)
    handed_back = reconcile(db, owner=current_owner())
    assert sorted(j.id for j in handed_back) == sorted([running, queued])
    with db.read() as tx:
        assert get_job(tx, mine).status == "running"  # type: ignore[union-attr]
        events = tx.query("SELECT target, details FROM audit_events WHERE action = 'jobs:job:requeued'")
    assert len(events) == 1 and '"owner process ended"' in str(events[0]["details"])


def test_reconcile_leaves_a_live_lease_on_another_host_alone(db: Database) -> None:
    job_id = _job(db)
    with db.write() as tx:
        claim_job(tx, job_id, "elsewhere:42:42", lease_seconds=3600, max_attempts=3)
    assert reconcile(db, owner=current_owner()) == []


def test_two_threads_of_one_process_never_run_the_same_job(db: Database) -> None:
    job_id = _job(db)
    with db.write() as tx:
        assert claim_job(tx, job_id, current_owner(), lease_seconds=300, max_attempts=3).claimed
        again = claim_job(tx, job_id, current_owner(), lease_seconds=300, max_attempts=3)
    assert (again.claimed, again.reason) == (False, "held")


def test_reconcile_hands_back_this_process_s_own_job_once_its_lease_lapsed(db: Database) -> None:
    job_id = _job(db)
    with db.write() as tx:
        claim_job(tx, job_id, current_owner(), lease_seconds=300, max_attempts=3)
    assert reconcile(db, owner=current_owner()) == []  # a live lease is left alone
    with db.write() as tx:
        tx.execute("UPDATE jobs SET lease_expires_at = '2000-01-01T00:00:00.000000Z' WHERE id = ?", (job_id,))
    assert [j.id for j in reconcile(db, owner=current_owner())] == [job_id]
