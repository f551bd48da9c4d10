"""Run the benchmarks, print their figures, write benchmarks/results.json and the README's benchmark table.

    .venv/bin/python benchmarks/run.py                 every benchmark
    .venv/bin/python benchmarks/run.py rules review    only those (the others keep their last figures)
    .venv/bin/python benchmarks/run.py --quick         fewer repetitions, for a smoke run

``python3 build.py bench [args]`` runs this. Every figure is measured on the spot; a benchmark not run
this time keeps the figures (and date) of its last run in results.json and in the README table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Any

import bench_audit
import bench_inference
import bench_install
import bench_review
import bench_rules
from common import BENCH_DIR, ROOT, Row, cpu_count, load_average

BENCHMARKS: dict[str, ModuleType] = {"rules": bench_rules, "review": bench_review, "inference": bench_inference,
                                     "audit": bench_audit, "install": bench_install}
RESULTS = BENCH_DIR / "results.json"
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
COLUMNS = ("benchmark", "measured", "target", "anchor", "status")


def git_commit(root: Path = ROOT) -> str | None:
    """HEAD's commit, read from .git without running git; None when there is no repository."""
    git = root / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: <path>"
            git = (root / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(":", 1)[1].strip()
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        for base in (git, common):
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split(" ", 1)[0]
    except OSError:
        return None
    return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    try:
        llama_version: str | None = version("llama-cpp-python")
    except PackageNotFoundError:
        llama_version = None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_available": cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "llama_cpp_python": llama_version,
        "date_utc": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "git_commit": git_commit(),
        "load_average": load_average(),
    }


def load_results() -> dict[str, Any]:
    try:
        data = json.loads(RESULTS.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("benchmarks"), dict):
            return data
    except (OSError, ValueError):
        pass
    return {"benchmarks": {}}


def table_rows(results: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for name, module in BENCHMARKS.items():
        entry = results["benchmarks"].get(name)
        if entry is None:
            continue
        if "error" in entry:
            out.append({"benchmark": name, "measured": f"failed: {entry['error']}", "target": "—", "anchor": "—",
                        "status": "error"})
            continue
        out.extend(module.rows(entry["figures"]))
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(results: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in COLUMNS) + " |" for row in table_rows(results)]
    notes = []
    for name in BENCHMARKS:
        entry = results["benchmarks"].get(name)
        if entry is None:
            continue
        m = entry["machine"]
        commit = (m.get("git_commit") or "unknown")[:12]
        load = ", ".join(f"{x:g}" for x in m.get("load_average", [])) or "unknown"
        notes.append(f"`{name}`: {m['date_utc'].replace('+00:00', 'Z')}, commit {commit}, {m['cpus_available']} of "
                     f"{m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']}, llama-cpp-python "
                     f"{m.get('llama_cpp_python') or '?'}, load average at start {load}")
    lines += ["", "Measured by `benchmarks/run.py` (figures in `benchmarks/results.json`); ↳ rows break the "
              "figure above them down. Runs:", ""]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines)


def rewrite_readme(section: str) -> None:
    text = README.read_text(encoding="utf-8")
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{README} lacks the {START} … {END} markers; not touching it")
    new = text[: start + len(START)] + "\n" + section + "\n" + text[end:]
    tmp = README.with_suffix(".md.bench-tmp")
    tmp.write_text(new, encoding="utf-8")
    tmp.replace(README)


def print_table(rows: list[Row]) -> None:
    widths = {c: max([len(c), *(len(r[c]) for r in rows)]) for c in COLUMNS if c != "anchor"}
    cols = [c for c in COLUMNS if c != "anchor"]
    print("  ".join(c.ljust(widths[c]) for c in cols))
    print("  ".join("-" * widths[c] for c in cols))
    for row in rows:
        print("  ".join(row[c].ljust(widths[c]) for c in cols))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run, noisier figures)")
    parser.add_argument("--repeats", type=int, help="rules: timed runs per variant (default 7; quick 3)")
    parser.add_argument("--runs", type=int, help="review: reviews to run (default 5; quick 2)")
    parser.add_argument("--rounds", type=int, help="inference: rounds over the four model instances (default 4; "
                        "quick 2)")
    parser.add_argument("--events", type=int, help="audit: events in the log (default 1,000,000; quick 100,000)")
    parser.add_argument("--installs", type=int, help="install: installs to time (default 3; quick 1)")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the README section")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    options: dict[str, dict[str, int]] = {
        "rules": {"repeats": args.repeats or (3 if args.quick else 7)},
        "review": {"runs": args.runs or (2 if args.quick else 5)},
        "inference": {"rounds": args.rounds or (2 if args.quick else 4)},
        "audit": {"events": args.events or (100_000 if args.quick else 1_000_000)},
        "install": {"runs": args.installs or (1 if args.quick else 3)},
    }

    machine = machine_info()
    load = machine["load_average"]
    if load and load[0] > 0.5 * machine["cpus_available"]:
        print(f"warning: load average {load[0]:g} on {machine['cpus_available']} CPUs at start: "
              "if other work is running, the model figures will suffer", file=sys.stderr)
    results = load_results()
    failed = False
    started = time.perf_counter()
    for name in names:
        print(f"== {name} {options[name]}", file=sys.stderr, flush=True)
        bench_started = time.perf_counter()
        entry: dict[str, Any] = {"machine": {**machine_info()}, "options": options[name]}
        try:
            entry["figures"] = BENCHMARKS[name].run(**options[name])
        except Exception as exc:
            traceback.print_exc()
            entry["error"] = f"{type(exc).__name__}: {exc}"
            failed = True
        entry["seconds"] = round(time.perf_counter() - bench_started, 1)
        print(f"   {name} took {entry['seconds']:.0f} s", file=sys.stderr, flush=True)
        results["benchmarks"][name] = entry
    results["machine"] = machine
    results["last_run"] = {"benchmarks": names, "seconds": round(time.perf_counter() - started, 1)}
    results["benchmarks"] = {n: results["benchmarks"][n] for n in BENCHMARKS if n in results["benchmarks"]}

    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print()
    print_table(table_rows(results))
    print(f"\nfigures: {RESULTS.relative_to(ROOT)}; total {results['last_run']['seconds']:.0f} s")
    if not args.no_readme:
        rewrite_readme(markdown(results))
        print(f"README: {README.relative_to(ROOT)} section between {START} and {END} rewritten")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
