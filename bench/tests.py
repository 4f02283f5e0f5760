"""Benchmark: `qrm tests run` of ~500 cases against two environments (two real test servers).

Run:  .venv/bin/python bench/tests.py [--cases N] [--concurrency N]
Starts two instances of tests/quantum_server.py on 127.0.0.1 (variants v1 and v2: two environments) in a
child process, so that the servers do not share a GIL with the client; writes a workspace with one
Project (two environments with a `url:`) and one TestSuite of N cases (smoke pages, a JSON endpoint, the
auth redirect, valid actions with their success flash, invalid actions with their error flash); then runs
the suite against both environments as a fresh `qrm tests run` process (as a user runs it) and in-process
(testsflow.run_tests, without Python start-up and imports). Prints wall time, cases/s and the p50/p95 of
the case durations. Target (issue 6): at least 500 cases/s on 2 cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reconciler import runner, testsflow  # noqa: E402
from reconciler.workflow import open_workspace  # noqa: E402

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
SUITE = "bench-suite"


def serve(ports: Any, stop: Any) -> None:
    """The child process: two test servers until `stop` is set."""
    from tests.quantum_server import quantum_server

    with quantum_server("v1") as dev, quantum_server("v2") as staging:
        ports.put((dev.url, staging.url))
        stop.wait()


def templates() -> list[dict[str, Any]]:
    smoke = [{"type": "smoke", "request": {"path": path}, "expect": [{"status": 200}, {"no_errors": True}]}
             for path in ("/", "/about", "/blog", "/contact", "/login", "/thanks")]
    return [
        *smoke,
        {"type": "endpoint", "request": {"path": "/api/items"},
         "expect": [{"status": 200}, {"json_path": {"path": "$.count", "equals": 2}}]},
        {"type": "auth", "request": {"path": "/admin"}, "expect": [{"status": 302}, {"redirect": "/login"}]},
        {"type": "action", "writes": True,
         "request": {"method": "POST", "path": "/contact", "form": {"name": "qa-user", "email": "qa@example.com"}},
         "expect": [{"status": 302}, {"redirect": "/thanks"}, {"flash": "Thanks"}]},
        {"type": "action", "writes": True,
         "request": {"method": "POST", "path": "/contact", "form": {"name": "A", "email": "qa@example.com"}},
         "expect": [{"status": 302}, {"flash": "at least 3"}]},
        {"type": "action", "writes": True,
         "request": {"method": "POST", "path": "/login", "form": {"username": "qa", "password": "secret"}},
         "expect": [{"status": 302}, {"redirect": "/admin"}, {"flash": "Welcome back"}]},
    ]


def write_workspace(root: Path, dev: str, staging: str, count: int) -> None:
    forms = templates()
    cases = [{"id": f"case-{i:04d}", "name": f"case {i}", **forms[i % len(forms)]} for i in range(count)]
    project = {"kind": "Project", "name": "bench", "services": {"web": {"type": "app"}},
               "environments": {"dev": {"url": dev}, "staging": {"url": staging}}}
    suite = {"kind": "TestSuite", "name": SUITE, "project": "bench", "environments": ["dev", "staging"],
             "cases": cases}
    (root / "manifests").mkdir(parents=True, exist_ok=True)
    (root / "manifests" / "bench.yaml").write_text(yaml.safe_dump(project) + "---\n" + yaml.safe_dump(suite))


def report_durations(root: Path) -> tuple[list[float], dict[str, int]]:
    durations: list[float] = []
    outcomes: dict[str, int] = {}
    for env in ("dev", "staging"):
        report = yaml.safe_load((root / "reports" / "tests" / SUITE / f"{env}.yaml").read_text())
        for r in report["results"]:
            durations.append(float(r.get("duration_ms", 0.0)))
            outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    return durations, outcomes


def percentile(values: list[float], p: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def show(label: str, wall: float, durations: list[float], outcomes: dict[str, int]) -> None:
    n = len(durations)
    print(f"{label:<12} {n} cases in {wall:6.2f} s = {n / wall:7.0f} cases/s; case p50 "
          f"{percentile(durations, 50):5.1f} ms, p95 {percentile(durations, 95):5.1f} ms; "
          + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=runner.DEFAULT_CONCURRENCY)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    ports, stop = context.Queue(), context.Event()
    child = context.Process(target=serve, args=(ports, stop), daemon=True)
    child.start()
    try:
        dev, staging = ports.get(timeout=30)
        with tempfile.TemporaryDirectory(prefix="qrm-bench-tests-") as tmp:
            root = Path(tmp)
            write_workspace(root, dev, staging, args.cases)
            print(f"{args.cases} cases x 2 environments ({dev}, {staging}), concurrency {args.concurrency}, "
                  f"{os.cpu_count()} CPUs")
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "reconciler", "-C", str(root), "tests", "run", SUITE,
                                   "--concurrency", str(args.concurrency)],
                                  capture_output=True, text=True, env=ENV)
            wall = time.perf_counter() - start
            if proc.returncode not in (0, 3):
                sys.exit(f"qrm tests run failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
            show("process", wall, *report_durations(root))

            start = time.perf_counter()
            outcome = testsflow.run_tests(open_workspace(root, None), SUITE, [], concurrency=args.concurrency)
            wall = time.perf_counter() - start
            results = [r for run in outcome.runs for r in run.results]
            counts: dict[str, int] = {}
            for r in results:
                counts[r.outcome] = counts.get(r.outcome, 0) + 1
            show("in-process", wall, [r.duration_ms for r in results], counts)
            phase = sum(run.duration_s for run in outcome.runs)
            print(f"{'  cases only':<12} {len(results)} cases in {phase:6.2f} s = {len(results) / phase:7.0f} cases/s "
                  "(without loading manifests, reports and the registry)")
    finally:
        stop.set()
        child.join(10)


if __name__ == "__main__":
    main()
