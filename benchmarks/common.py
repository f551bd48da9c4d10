"""Helpers the benchmarks share: paths, timing, statistics and the machine's state."""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["BENCH_DIR", "ROOT", "Row", "cpu_count", "fmt_rate", "load_average", "median", "standalone", "timed_runs"]

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

Row = dict[str, str]  # benchmark, measured, target, anchor, status


def cpu_count() -> int:
    """CPUs this process may run on (what the appliance gives llama.cpp when model_threads = 0)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed_runs(fn: Callable[[], Any], *, repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return seconds


def fmt_rate(per_second: float) -> str:
    if per_second >= 1_000_000:
        return f"{per_second / 1_000_000:.2f}M"
    if per_second >= 10_000:
        return f"{per_second / 1000:.0f}k"
    if per_second >= 1000:
        return f"{per_second / 1000:.1f}k"
    return f"{per_second:.0f}"


def standalone(doc: str, run: Callable[..., dict[str, Any]], rows: Callable[[dict[str, Any]], list[Row]],
               option: str, default: int, help_text: str, argv: list[str] | None = None) -> None:
    """Run one benchmark on its own: its figures as JSON, then its README rows."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(option, type=int, default=default, help=f"{help_text} (default {default})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    fig = run(**{option.lstrip("-").replace("-", "_"): getattr(args, option.lstrip("-").replace("-", "_"))})
    json.dump(fig, sys.stdout, indent=2)
    print()
    for row in rows(fig):
        print(f"{row['benchmark']}: {row['measured']} [{row['status']}]")
