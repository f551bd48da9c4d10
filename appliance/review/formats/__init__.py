"""A stored review rendered for people and tools: JSON, SARIF 2.1.0 and Markdown."""

import json
from typing import Any

from appliance.review.formats.jsondoc import review_document
from appliance.review.formats.markdown import review_markdown
from appliance.review.formats.sarif import SARIF_SCHEMA_PATH, review_sarif

__all__ = ["SARIF_SCHEMA_PATH", "render", "review_document", "review_markdown", "review_sarif"]

FORMATS = ("json", "sarif", "markdown")


def render(review: dict[str, Any], fmt: str, *, base_url: str = "") -> str:
    """The review as text in ``fmt`` (json, sarif or markdown)."""
    if fmt == "json":
        return json.dumps(review_document(review, base_url=base_url), indent=2, ensure_ascii=False) + "\n"
    if fmt == "sarif":
        return json.dumps(review_sarif(review, base_url=base_url), indent=2, ensure_ascii=False) + "\n"
    if fmt == "markdown":
        return review_markdown(review, base_url=base_url)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
