"""The jobs ledger that makes queued work survive crashes (see ``service`` for the protocol)."""

from appliance.jobs.service import (
    Claim,
    JobState,
    claim_job,
    create_job,
    current_owner,
    finish_job,
    get_job,
    job_for,
    keep_lease,
    reconcile,
    release_job,
)

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
