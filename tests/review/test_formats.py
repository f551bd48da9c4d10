"""JSON, SARIF 2.1.0 (validated against the vendored OASIS schema) and Markdown renderings."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from markdown_it import MarkdownIt

from appliance.audit import Actor
from appliance.config import Settings
from appliance.jobs import current_owner
from appliance.review import service
from appliance.review.formats import SARIF_SCHEMA_PATH, render, review_markdown, review_sarif
from appliance.store import Database
from appliance.tasks.services import Services

HOSTILE_DIFF = b"""\
--- a/app.py
+++ b/app.py
@@ -1,1 +1,4 @@
 import os
+value = eval(request.args["q"])  # <script>alert(1)</script> | `tick` **bold** [link](javascript:x)
+API_TOKEN = "ghp_" + "x"
+os.system("ls " + request.args["dir"])
"""


@pytest.fixture
def finished_review(settings: Settings, db: Database) -> dict[str, Any]:
    services = Services(settings, db=db)
    accepted = service.submit_review(db, settings, HOSTILE_DIFF, actor=Actor.cli(), source="cli",
                                     title="A <b>title</b> | with pipes", use_model=False)
    assert service.run_review_job(db, settings, accepted.job_id, owner=current_owner(), ruleset=services.catalog,
                                  runtime=None) == "done"
    review = service.get_review(db, accepted.review_id)
    assert review["findings"], "the starter pack should flag this diff"
    return review


def sarif_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SARIF_SCHEMA_PATH.read_text())
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def test_sarif_validates_against_the_oasis_schema(finished_review: dict[str, Any]) -> None:
    doc = review_sarif(finished_review, base_url="http://127.0.0.1:8080")
    errors = sorted(sarif_validator().iter_errors(doc), key=str)
    assert errors == []
    run = doc["runs"][0]
    assert doc["version"] == "2.1.0"
    assert len(run["results"]) == len(finished_review["findings"])
    ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert all(res["ruleId"] == ids[res["ruleIndex"]] for res in run["results"])
    assert "secure-coding-core" in {p["id"] for p in run["properties"]["provenance"]["packs"]}


def test_sarif_with_model_findings_validates(finished_review: dict[str, Any]) -> None:
    review = dict(finished_review)
    review["findings"] = [*review["findings"], {
        "rank": 99, "source": "model", "rule_id": "model/smollm2-135m-instruct-q4_1", "pack_id": None,
        "pack_version": None, "path": "app.py", "line": 3, "severity": "medium", "cwe": None,
        "title": "Model suggestion", "message": "A token is built in code.", "fix": None, "snippet": None,
        "fingerprint": "f" * 32}]
    doc = review_sarif(review)
    assert sorted(sarif_validator().iter_errors(doc), key=str) == []
    model_result = doc["runs"][0]["results"][-1]
    assert model_result["kind"] == "review" and model_result["properties"]["unverified"] is True


def test_the_vendored_schema_rejects_a_broken_log() -> None:
    errors = list(sarif_validator().iter_errors({"version": "2.1.0", "runs": [{"results": []}]}))
    assert errors, "a run without a tool must not validate"


def test_markdown_escapes_everything_that_came_from_the_diff(finished_review: dict[str, Any]) -> None:
    text = review_markdown(finished_review, base_url="http://127.0.0.1:8080")
    assert text.startswith(f"### Cortex Code review #{finished_review['id']}:")
    # Render as a Git server would, with raw HTML allowed: nothing from the diff may become markup.
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    assert "<script" not in html and "<b>" not in html and 'href="javascript:' not in html
    assert "&lt;script&gt;" in html and "&lt;b&gt;title&lt;/b&gt;" in html
    assert '<a href="http://127.0.0.1:8080/reviews/' in html
    # Table rows keep their three columns: pipes from the diff are escaped.
    rows = [line for line in text.splitlines() if line.startswith("| **")]
    assert rows and all(line.count(" | ") == 2 for line in rows)


def test_json_rendering_round_trips(finished_review: dict[str, Any]) -> None:
    doc = json.loads(render(finished_review, "json"))
    assert doc["id"] == finished_review["id"] and doc["status"] == "done"
    assert {f["fingerprint"] for f in doc["findings"]} == {f["fingerprint"] for f in finished_review["findings"]}
    with pytest.raises(ValueError, match="unknown format"):
        render(finished_review, "yaml")


def test_markdown_carries_no_mentions_or_autolinks_from_the_diff(finished_review: dict[str, Any]) -> None:
    review = dict(finished_review)
    review["title"] = "ping @security-team see https://evil.example/x and www.evil.example"
    text = review_markdown(review)
    # GFM autolinks need a literal "https://" or "www."; mentions need a bare "@name".
    assert "https://" not in text and "www." not in text and " @security" not in text
    assert "https\\://evil.example" in text and "www\\.evil" in text and "\\@security-team" in text


def test_sarif_uris_and_shared_rule_ids_stay_valid(finished_review: dict[str, Any]) -> None:
    review = dict(finished_review)
    first = review["findings"][0]
    review["findings"] = [
        {**first, "path": "src/My File #1 (ü%).py"},
        {**first, "pack_id": "other-pack", "rank": 2, "fingerprint": "e" * 32},
    ]
    doc = review_sarif(review)
    assert sorted(sarif_validator().iter_errors(doc), key=str) == []
    run = doc["runs"][0]
    assert run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == \
        "src/My%20File%20%231%20%28%C3%BC%25%29.py"
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == [
        f"{first['pack_id']}/{first['rule_id']}", f"other-pack/{first['rule_id']}"]
