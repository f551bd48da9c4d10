"""Audit log at scale: append rate, verify rate, and the viewer's query time at one million events.

A fresh data directory gets ``events`` events (default 1,000,000) through ``record_event``, the one write
path, as the appliance writes them: chained, canonical, in ``BEGIN IMMEDIATE`` transactions on a
``synchronous=FULL`` WAL database. Timed:

- append, batched: 1,000 events per transaction (a purge marker, a bulk import, many events in one request);
- append, one event per transaction (each commit fsynced: the rate of independent requests);
- verify: ``verify_database`` over the whole log, every hash recomputed, checkpoints checked;
- viewer: ``GET /api/v1/audit-logs`` through the real app (TestClient, an auditor's API token), a mix of first
  pages, deep pages by seq, and filters by action, actor, outcome, target, date range and text; p50 and p95
  of the server's answer time.

Run alone: ``.venv/bin/python benchmarks/bench_audit.py [--events N]``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Row, fmt_rate, load_average, standalone

from appliance.audit import Actor, AuditTag, record_event
from appliance.audit.checkpoints import make_checkpoint
from appliance.audit.log import verify_database
from appliance.auth import create_token, create_user
from appliance.config import load_settings
from appliance.tasks.services import Services, open_database

NAME = "audit"
TARGET_APPEND = 10_000
TARGET_VERIFY = 200_000
TARGET_P95_MS = 100.0
ANCHOR = "design targets (seed: SOC 2 evidence only)"
BATCH = 1000

_TAGS = [AuditTag.AUTH_SESSION_CREATED, AuditTag.REVIEW_REVIEW_VIEWED, AuditTag.REVIEW_REVIEW_CREATED,
         AuditTag.AUTH_SESSION_FAILED, AuditTag.REVIEW_REVIEW_COMPLETED, AuditTag.AUTH_TOKEN_CREATED]


def _append(db: Any, start: int, count: int) -> None:
    with db.write() as tx:
        for n in range(start, start + count):
            user = n % 500
            record_event(tx, _TAGS[n % len(_TAGS)],
                         Actor(kind="user", name=f"user{user}", id=str(user), address=f"10.0.{user % 250}.7",
                               display=f"User {user}"),
                         target=f"review:{n // 3}", outcome="failure" if n % 17 == 0 else "success",
                         details={"source": "api", "bytes": n * 7 % 100_000, "sha256": f"{n:064x}", "files": n % 9})


def _viewer(settings: Any, db: Any, size: int, rounds: int) -> dict[str, Any]:
    from litestar.testing import TestClient

    from appliance.web import create_app

    auditor = create_user(db, username="bench-auditor", role="auditor", actor=Actor.system(), password=None)
    token = create_token(db, auditor, name="bench", actor=Actor.system()).token
    services = Services(settings, db=db)
    queries = {
        "first page": "",
        "deep page (before seq = size / 2)": f"before={size // 2}",
        "action filter": "action=auth:session:failed",
        "area filter, deep": f"action=review&before={size // 3}",
        "actor filter": "actor=user123",
        "outcome filter": "outcome=failure",
        "target filter": f"target=review:{size // 7}",
        "date range (one day)": "since=2000-01-01&until=2000-01-01",
        "text search": "q=user42",
        "text + action": "q=10.0.3.7&action=auth",
    }
    timings: dict[str, list[float]] = {name: [] for name in queries}
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(app=create_app(settings, services, start_workers=False)) as client:
        for name, query in queries.items():  # warm-up
            assert client.get(f"/api/v1/audit-logs?{query}", headers=headers).status_code == 200, name
        for _ in range(rounds):
            for name, query in queries.items():
                started = time.perf_counter()
                response = client.get(f"/api/v1/audit-logs?{query}", headers=headers)
                timings[name].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
    every = sorted(t for ts in timings.values() for t in ts)
    p95 = every[min(len(every) - 1, round(0.95 * len(every)) - 1)]
    return {"queries": {n: {"p50_ms": round(statistics.median(t), 1), "max_ms": round(max(t), 1)}
                        for n, t in timings.items()},
            "p50_ms": round(statistics.median(every), 1), "p95_ms": round(p95, 1), "requests": len(every)}


def run(*, events: int = 1_000_000, rounds: int = 20) -> dict[str, Any]:
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="cortex-bench-audit-") as tmp:
        settings = load_settings({"CORTEX_CONFIG": ""}, data_dir=Path(tmp), workers=0, model_enabled=False)
        db = open_database(settings)
        try:
            started = time.perf_counter()
            written = 0
            while written < events:
                count = min(BATCH, events - written)
                _append(db, written, count)
                written += count
            batched_seconds = time.perf_counter() - started
            single = 1000
            started = time.perf_counter()
            for n in range(single):
                _append(db, events + n, 1)
            single_seconds = time.perf_counter() - started
            make_checkpoint(db, settings.data_dir)
            started = time.perf_counter()
            report = verify_database(db, settings.data_dir)
            verify_seconds = time.perf_counter() - started
            if not report.ok:
                raise RuntimeError(f"the benchmark's own log does not verify: {report.summary()}")
            file_bytes = settings.db_path.stat().st_size
            viewer = _viewer(settings, db, report.size, rounds)
        finally:
            db.close()
    fig: dict[str, Any] = {
        "events": report.events, "database_bytes": file_bytes, "batch": BATCH,
        "append_batched_per_second": round(events / batched_seconds),
        "append_batched_seconds": round(batched_seconds, 2),
        "append_single_per_second": round(single / single_seconds),
        "verify_per_second": round(report.events / verify_seconds), "verify_seconds": round(verify_seconds, 2),
        "viewer": viewer, "load_average_before": load_before, "load_average_after": load_average(),
    }
    fig["meets_target"] = (fig["append_batched_per_second"] >= TARGET_APPEND
                           and fig["verify_per_second"] >= TARGET_VERIFY and viewer["p95_ms"] <= TARGET_P95_MS)
    return fig


def rows(fig: dict[str, Any]) -> list[Row]:
    viewer = fig["viewer"]
    slowest = max(viewer["queries"].items(), key=lambda kv: kv[1]["p50_ms"])

    def status(ok: bool) -> str:
        return "meets" if ok else "misses"

    return [
        {"benchmark": f"audit log append, {fig['batch']:,} events per transaction, {fig['events']:,} events",
         "measured": f"{fmt_rate(fig['append_batched_per_second'])} events/s ({fig['append_batched_seconds']:.0f} s)",
         "target": f"≥ {fmt_rate(TARGET_APPEND)} events/s", "anchor": ANCHOR,
         "status": status(fig["append_batched_per_second"] >= TARGET_APPEND)},
        {"benchmark": "↳ one event per transaction (each commit fsynced)",
         "measured": f"{fmt_rate(fig['append_single_per_second'])} events/s", "target": "—", "anchor": "breakdown",
         "status": "—"},
        {"benchmark": f"audit log verify, {fig['events']:,} events",
         "measured": f"{fmt_rate(fig['verify_per_second'])} events/s ({fig['verify_seconds']:.1f} s)",
         "target": f"≥ {fmt_rate(TARGET_VERIFY)} events/s", "anchor": ANCHOR,
         "status": status(fig["verify_per_second"] >= TARGET_VERIFY)},
        {"benchmark": f"audit viewer query (GET /api/v1/audit-logs), {fig['events']:,} events, "
                      f"{len(viewer['queries'])} query kinds",
         "measured": f"p95 {viewer['p95_ms']:.0f} ms, p50 {viewer['p50_ms']:.0f} ms ({viewer['requests']} requests; "
                     f"slowest kind: {slowest[0]}, p50 {slowest[1]['p50_ms']:.0f} ms)",
         "target": f"p95 ≤ {TARGET_P95_MS:.0f} ms", "anchor": "design: dashboard page at 1M audit events",
         "status": status(viewer["p95_ms"] <= TARGET_P95_MS)},
    ]


def main(argv: list[str] | None = None) -> None:
    standalone(__doc__ or "", run, rows, "--events", 1_000_000, "events to write", argv)


if __name__ == "__main__":
    main()
