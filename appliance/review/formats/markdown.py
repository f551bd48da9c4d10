"""The review as Markdown for a merge-request comment (GitLab, Gitea, GitHub Enterprise flavours).

Everything that came from the diff or the model is escaped: a comment can carry no markup, link or HTML
that the reviewed code put there.
"""

from __future__ import annotations

import re
from typing import Any

from appliance import __version__

__all__ = ["review_markdown"]

# Every ASCII punctuation character that means something in CommonMark or GFM, plus '@' (mentions) and
# ':' (autolinks such as https://…): backslash-escaped, they render as themselves (CommonMark §2.4).
_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~&@:])")
_ORDER = ("critical", "high", "medium", "low", "info")


def _escape(text: str) -> str:
    escaped = _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))
    # GFM also links bare www. addresses.
    return re.sub(r"(?i)\bwww\.", lambda m: m.group(0)[:-1] + "\\.", escaped)


def _code(text: str) -> str:
    """A code span whose content renders literally (CommonMark §6.1): the fence is longer than any
    backtick run inside, and pipes are escaped so a table row keeps its cells (GFM §4.10)."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {text} {fence}" if longest else f"{fence}{text}{fence}"


def _counts(by_severity: dict[str, int]) -> str:
    parts = [f"{by_severity[s]} {s}" for s in _ORDER if by_severity.get(s)]
    return ", ".join(parts)


def _finding_row(f: dict[str, Any]) -> str:
    ref = f"CWE-{f['cwe']}" if f["cwe"] else ""
    origin = f"{f['pack_id']}/{f['rule_id']}" if f["pack_id"] else f["rule_id"]
    meta = ", ".join(x for x in (ref, _escape(origin)) if x)
    return f"| **{f['severity']}** | {_code(f['path'] + ':' + str(f['line']))} | {_escape(f['title'])} ({meta}) |"


def _details(f: dict[str, Any]) -> list[str]:
    lines = [f"- **{_escape(f['title'])}** at {_code(f['path'] + ':' + str(f['line']))}: {_escape(f['message'])}"]
    if f["snippet"]:
        lines.append(f"  - code: {_code(f['snippet'][:200])}")
    if f["fix"]:
        lines.append(f"  - fix: {_escape(f['fix'])}")
    return lines


def review_markdown(review: dict[str, Any], *, base_url: str = "") -> str:
    findings = review["findings"]
    rules = [f for f in findings if f["source"] == "rule"]
    model = [f for f in findings if f["source"] == "model"]
    by_severity = review["counts"].get("severity", {})
    prov = review["provenance"]
    out: list[str] = []
    status = review["status"]
    if status != "done":
        out.append(f"### Cortex Code review #{review['id']}: {status}")
        if review.get("error"):
            out.append("")
            out.append(f"The review did not complete: {_escape(review['error'])}")
        return "\n".join(out) + "\n"
    headline = f"{len(findings)} finding{'s' if len(findings) != 1 else ''}"
    if findings:
        headline += f" ({_counts(by_severity)})"
    out.append(f"### Cortex Code review #{review['id']}: {headline}")
    out.append("")
    out.append(f"{_escape(review['title'])}" + (f" · {_code(review['repository'])}" if review["repository"] else ""))
    out.append("")
    if rules:
        out += ["#### Rule findings", "", "| Severity | Location | Finding |", "|---|---|---|"]
        out += [_finding_row(f) for f in rules]
        out += ["", "<details><summary>Details and fixes</summary>", ""]
        for f in rules:
            out += _details(f)
        out += ["", "</details>", ""]
    elif not model:
        out += ["No findings from the active rule packs or the model.", ""]
    model_review = prov.get("model_review", {})
    model_info = prov.get("model", {})
    if model:
        label = "Model suggestions"
        if model_info.get("plumbing"):
            label += f" ({_escape(model_info.get('name', 'model'))}: plumbing model, unverified)"
        else:
            label += " (unverified)"
        out += [f"#### {label}", ""]
        for f in model:
            out += _details(f)
        out.append("")
    if review["model_status"] == "unavailable":
        out += [f"> Model unavailable: this review ran rules only. {_escape(model_review.get('note', ''))}", ""]
    packs = ", ".join(f"{p['id']}@{p['display_version']}" for p in prov.get("packs", [])) or "none"
    model_text = "none"
    if model_info.get("sha256"):
        model_text = f"{model_info['id']} (sha256 {model_info['sha256'][:12]}…)"
    footer = [f"Cortex Code Appliance {__version__}", f"packs: {_escape(packs)}", f"model: {_escape(model_text)}",
              f"prompt {_escape(prov.get('prompt_version', ''))}"]
    if review["model_dropped"]:
        footer.append(f"{review['model_dropped']} model suggestion(s) dropped as ungrounded or duplicate")
    if review["decoding_replaced"]:
        footer.append("the diff was not valid UTF-8: undecodable bytes were replaced")
    if base_url:
        footer.append(f"[full review]({base_url}/reviews/{review['id']})")
    out.append("<sub>" + " · ".join(footer) + "</sub>")
    return "\n".join(out) + "\n"
