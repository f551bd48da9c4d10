"""The report as a terminal table, as JSON, and as a printable, self-contained HTML page for the
accreditation file (inline styles only: no script, no font, no image, no external address)."""

from __future__ import annotations

import json
import textwrap
from html import escape

from appliance.verify.models import Report, Status

__all__ = ["report_html", "report_json", "report_text"]

_CONTEXT_LABELS = (
    ("release_dir", "Release directory"), ("release_source", "Release directory from"), ("data_dir", "Data directory"),
    ("service_user", "Service user"), ("install_record", "Installer record"), ("site_ranges", "Site ranges"),
    ("site_ranges_source", "Site ranges from"), ("config_file", "Configuration file"),
)


def _context_value(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return "—" if value in (None, "") else str(value)


def report_text(report: Report, *, width: int = 100) -> str:
    """A table for the terminal: one block per check, its evidence indented under it."""
    counts = report.counts()
    lines = [f"Cortex Code Appliance {report.version}: air-gap verification of {report.host} at {report.time}", ""]
    id_width = max(len(c.id) for c in report.checks) if report.checks else 0
    for number, check in enumerate(report.checks, start=1):
        lines.append(f"{number:>2}  {check.status.value:<4}  {check.id:<{id_width}}  {check.title}")
        indent = " " * 10
        for item in check.evidence:
            lines.extend(textwrap.wrap(item, width=width, initial_indent=indent + "· ",
                                       subsequent_indent=indent + "  ", break_on_hyphens=False) or [indent + "·"])
        if check.remedy and check.status is not Status.PASS:
            lines.extend(textwrap.wrap(check.remedy, width=width, initial_indent=indent + "→ fix: ",
                                       subsequent_indent=indent + "       ", break_on_hyphens=False))
    lines += ["", f"overall: {report.status.value} ({counts['FAIL']} FAIL, {counts['WARN']} WARN, "
                  f"{counts['PASS']} PASS)"]
    return "\n".join(lines) + "\n"


def report_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


_STYLE = """
body { font: 11pt/1.4 system-ui, sans-serif; margin: 2em; color: #111; }
h1 { font-size: 16pt; margin: 0 0 .3em; }
table { border-collapse: collapse; width: 100%; margin: 1em 0; }
th, td { border: 1px solid #999; padding: .35em .5em; vertical-align: top; text-align: left; }
th { background: #eee; }
.PASS { background: #dff0d8; } .WARN { background: #fcf8e3; } .FAIL { background: #f2dede; }
.status { font-weight: bold; white-space: nowrap; }
ul { margin: 0; padding-left: 1.2em; }
.fix { margin-top: .3em; font-style: italic; }
.overall { font-size: 13pt; padding: .5em; border: 2px solid #333; display: inline-block; }
.sign td { height: 2.5em; }
code { font-family: ui-monospace, monospace; font-size: 10pt; word-break: break-all; }
@media print { body { margin: 1cm; } tr { page-break-inside: avoid; } }
"""


def report_html(report: Report) -> str:
    """A printable page with the host, version, time, overall result and every check's evidence."""
    counts = report.counts()
    facts = [("Host", report.host), ("Appliance version", report.version), ("Checked at", report.time)]
    facts += [(label, _context_value(report.context[key])) for key, label in _CONTEXT_LABELS
              if key in report.context]
    rows = []
    for number, check in enumerate(report.checks, start=1):
        evidence = "".join(f"<li><code>{escape(item)}</code></li>" for item in check.evidence)
        fix = (f'<div class="fix">Fix: {escape(check.remedy)}</div>'
               if check.remedy and check.status is not Status.PASS else "")
        rows.append(f'<tr class="{check.status.value}"><td>{number}</td><td>{escape(check.title)}<br>'
                    f"<code>{escape(check.id)}</code></td>"
                    f'<td class="status">{check.status.value}</td><td><ul>{evidence}</ul>{fix}</td></tr>')
    fact_rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Air-gap verification: {escape(report.host)} at {escape(report.time)}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Cortex Code Appliance: air-gap verification report</h1>
<table>{fact_rows}</table>
<p class="overall {report.status.value}">Overall result: <strong>{report.status.value}</strong>
({counts['FAIL']} FAIL, {counts['WARN']} WARN, {counts['PASS']} PASS)</p>
<p>PASS: proven as required. WARN: not proven, or weaker than recommended; reviewed and accepted or fixed.
FAIL: wrong; the appliance is not fit for accreditation until it is fixed and checked again.</p>
<table>
<tr><th>#</th><th>Check</th><th>Result</th><th>Evidence</th></tr>
{"".join(rows)}
</table>
<table class="sign">
<tr><th>Checked by (name, role)</th><td></td><th>Signature</th><td></td><th>Date</th><td></td></tr>
</table>
<p>Produced by <code>cortex verify --html</code>, which only reads the host's state and sends no packet.</p>
</body>
</html>
"""
