"""The whole review with the real rule packs and the real default model (llama.cpp)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from appliance.audit import Actor
from appliance.config import Settings
from appliance.errors import InvalidDiffError, PayloadTooLargeError
from appliance.inference import PROMPT_VERSION, ModelRuntime
from appliance.jobs import current_owner
from appliance.review import service
from appliance.review.diffparse import parse_diff
from appliance.review.modelreview import build_chunks, review_with_model
from appliance.review.pipeline import analyse
from appliance.store import Database
from appliance.tasks.services import Services
from tests.support import make_settings

DIFF = b"""\
diff --git a/app/db.py b/app/db.py
--- a/app/db.py
+++ b/app/db.py
@@ -1,3 +1,9 @@
 import sqlite3
+import pickle
\x20
 def get_user(conn, name):
+    query = "SELECT * FROM users WHERE name = '" + name + "'"
+    return conn.execute(query).fetchone()
+
+def load(blob):
+    return pickle.loads(blob)
"""


@pytest.mark.slow
def test_rules_and_model_together_with_full_provenance(settings: Settings, model_runtime: ModelRuntime) -> None:
    services = Services(settings)
    model_settings = settings.replace(model_enabled=True)
    outcome = analyse(DIFF, services.ruleset, model_runtime, model_settings)
    prov = outcome.provenance
    assert prov["engine"]["name"] == "cortex-appliance"
    assert prov["model"]["sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert prov["model"]["plumbing"] is True
    assert prov["prompt_version"] == PROMPT_VERSION
    assert [p["id"] for p in prov["packs"]] == [p.id for p in services.ruleset.packs]
    assert all(p["sha256"] and p["version"] for p in prov["packs"])
    assert prov["model_review"]["status"] == "reviewed" and prov["model_review"]["reviewed"] >= 1
    assert prov["model_review"]["prompt_tokens"] > 0
    assert set(prov["timings_ms"]) == {"parse", "rules", "model", "merge", "total"}
    rule_ids = {f.rule_id for f in outcome.findings if f.source == "rule"}
    assert rule_ids, "the starter pack flags SQL concatenation and pickle.loads"
    # Whatever the small model said, every model finding that survived is on an added line of the diff.
    added = {(f.path, ln.number) for f in outcome.diff.files for ln in f.added_lines}
    for finding in outcome.findings:
        assert (finding.path, finding.line) in added
        if finding.source == "model":
            assert "plumbing" in finding.title
    # Ranked: severities never increase down the list.
    weights = [f.severity.weight for f in outcome.findings]
    assert weights == sorted(weights, reverse=True)
    services.close()


@pytest.mark.slow
def test_chunks_fit_the_context_window(model_runtime: ModelRuntime) -> None:
    lines = "".join(f"+value_{i} = compute_something_long(argument_{i}, other_argument_{i}) * {i}\n"
                    for i in range(600))
    diff = parse_diff(f"--- a/big.py\n+++ b/big.py\n@@ -0,0 +1,600 @@\n{lines}")
    backend = model_runtime.backend
    assert backend is not None
    chunks = build_chunks(diff, 400, backend.count_tokens)
    assert len(chunks) > 1
    covered = [n for c in chunks for n in c.added_numbers]
    assert covered == list(range(1, 601)), "every added line is in exactly one chunk, in order"
    from appliance.inference.prompts import render_chunk

    assert max(backend.count_tokens(render_chunk(c)) for c in chunks) <= 400 + 20


@pytest.mark.slow
def test_model_chunk_limit_is_reported(settings: Settings, model_runtime: ModelRuntime) -> None:
    lines = "".join(f"+def handler_{i}(request):\n+    return render(request.args['page_{i}'])\n" for i in range(20))
    diff = parse_diff(f"--- a/views.py\n+++ b/views.py\n@@ -0,0 +1,40 @@\n{lines}")
    limited = settings.replace(model_enabled=True, model_max_chunks=1, model_context=560, model_max_output_tokens=96)
    result = review_with_model(diff, model_runtime, limited)
    assert result.chunks_total > 1 and result.chunks_reviewed == 1
    assert "reviewed 1 of" in result.note and "rules only" in result.note


def test_a_missing_model_means_rules_only_and_says_so(settings: Settings, db: Database) -> None:
    no_model = make_settings(settings.data_dir, model_enabled=True, model="not-installed")
    services = Services(no_model, db=db)
    services.load_model()
    accepted = service.submit_review(db, no_model, DIFF, actor=Actor.cli(), source="cli")
    assert service.run_review_job(db, no_model, accepted.job_id, owner=current_owner(), ruleset=services.catalog,
                                  runtime=services.runtime) == "done"
    review = service.get_review(db, accepted.review_id)
    assert review["model_status"] == "unavailable"
    assert review["provenance"]["model_review"]["note"].startswith("model unavailable: no model with id")
    assert review["findings"] and {f["source"] for f in review["findings"]} == {"rule"}


def test_intake_refuses_bad_input_and_stores_nothing(settings: Settings, db: Database) -> None:
    small = settings.replace(max_diff_bytes=1024)
    with pytest.raises(PayloadTooLargeError, match=r"limit is 1\.0 KB"):
        service.submit_review(db, small, b"+" * 2048, actor=Actor.cli(), source="cli")
    with pytest.raises(InvalidDiffError):
        service.submit_review(db, settings, b"", actor=Actor.cli(), source="cli")
    with db.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM reviews") == 0
        refused = tx.query("SELECT outcome FROM audit_events WHERE action = 'review:review:refused'")
    assert [r["outcome"] for r in refused] == ["failure", "failure"]


def test_a_review_is_stored_once_even_when_its_job_is_delivered_twice(settings: Settings, db: Database) -> None:
    services = Services(settings, db=db)
    accepted = service.submit_review(db, settings, DIFF, actor=Actor.cli(), source="cli", use_model=False)
    outcomes = [service.run_review_job(db, settings, accepted.job_id, owner=current_owner(),
                                       ruleset=services.catalog, runtime=None) for _ in range(3)]
    assert outcomes == ["done", "finished", "finished"]
    review: dict[str, Any] = service.get_review(db, accepted.review_id)
    with db.read() as tx:
        stored = tx.scalar("SELECT COUNT(*) FROM findings WHERE review_id = ?", (accepted.review_id,))
        actions = Counter(r[0] for r in tx.rows("SELECT action FROM audit_events WHERE target = ?",
                                                (f"review:{accepted.review_id}",)))
    assert stored == review["findings_total"] == len(review["findings"]) > 0
    assert actions == {"review:review:created": 1, "review:review:started": 1, "review:review:completed": 1}


@pytest.mark.slow
def test_a_review_reaching_a_closed_model_goes_back_to_the_queue(settings: Settings, db: Database) -> None:
    model_settings = settings.replace(model_enabled=True)
    services = Services(model_settings, db=db)
    services.load_model()
    assert services.runtime.available
    accepted = service.submit_review(db, model_settings, DIFF, actor=Actor.cli(), source="cli")
    services.runtime.close()  # what stopping the service does first
    outcome = service.run_review_job(db, model_settings, accepted.job_id, owner=current_owner(),
                                     ruleset=services.catalog, runtime=services.runtime)
    assert outcome == "released"
    with db.read() as tx:
        job = tx.one("SELECT status, attempts, lease_owner FROM jobs WHERE id = ?", (accepted.job_id,))
        requeued = tx.query("SELECT details FROM audit_events WHERE action = 'jobs:job:requeued'")
        stored = tx.scalar("SELECT COUNT(*) FROM findings")
    assert job == {"status": "queued", "attempts": 1, "lease_owner": None}
    assert len(requeued) == 1 and "stopping" in str(requeued[0]["details"]) and stored == 0
