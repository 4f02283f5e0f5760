"""Benchmark: `qrm tests run` of 1,000 cases against a fast local server, and the same suite against
three environments at once (issue 6 item 7). Target: at least 500 cases/s on 2 cores.

Run:  .venv/bin/python bench/tests.py [--cases N] [--concurrency N ...] [--no-threaded]
The servers are bench/fast_quantum_server.py (raw asyncio, backlog 1024, precomputed responses), one
subprocess per environment (variants v1, v2, v3), so that they do not share a GIL with the client. The
workspace has one Project (environments with a `url:`) and one TestSuite of N cases (smoke pages, a JSON
endpoint, the auth redirect, valid actions with their success flash, invalid actions with their error
flash). Each scenario runs as a fresh `qrm tests run` process (as a user runs it) and in-process
(tests_run.run_tests, without Python start-up and imports), at each --concurrency (default 20, 50 and
100); prints wall time, cases/s and the p50/p95 of the case durations, then the best concurrency. A last
line, for comparison, runs the one-environment suite (at most 500 cases) against tests/support/quantum_server.py
(the threaded http.server of the test suite, listen backlog 5).
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reconciler.flows import tests_run  # noqa: E402
from reconciler.flows.workspace import open_workspace  # noqa: E402

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
SUITE = "bench-suite"
FAST_SERVER = REPO / "bench" / "fast_quantum_server.py"
ENVIRONMENTS = ("dev", "staging", "prod")


@contextmanager
def fast_servers(count: int) -> Iterator[list[str]]:
    """`count` fast servers, each its own process; their base URLs."""
    procs = [subprocess.Popen([sys.executable, str(FAST_SERVER), "--variant", f"v{i + 1}"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=ENV) for i in range(count)]
    try:
        urls = []
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if not line.startswith("http://"):
                sys.exit(f"the fast server did not start: {line!r}")
            urls.append(line)
        yield urls
    finally:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()  # the server stops when its stdin closes
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


def serve_threaded(ports: Any, stop: Any) -> None:
    """The child process of the comparison: one tests/support/quantum_server.py until `stop` is set."""
    from tests.support.quantum_server import quantum_server

    with quantum_server("v1") as dev:
        ports.put(dev.url)
        stop.wait()


@contextmanager
def threaded_server() -> Iterator[list[str]]:
    context = multiprocessing.get_context("spawn")
    ports, stop = context.Queue(), context.Event()
    child = context.Process(target=serve_threaded, args=(ports, stop), daemon=True)
    child.start()
    try:
        yield [ports.get(timeout=30)]
    finally:
        stop.set()
        child.join(10)


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


def write_workspace(root: Path, urls: list[str], count: int) -> list[str]:
    forms = templates()
    envs = list(ENVIRONMENTS[:len(urls)])
    cases = [{"id": f"case-{i:04d}", "name": f"case {i}", **forms[i % len(forms)]} for i in range(count)]
    project = {"kind": "Project", "name": "bench", "services": {"web": {"type": "app"}},
               "environments": {env: {"url": url} for env, url in zip(envs, urls, strict=True)}}
    suite = {"kind": "TestSuite", "name": SUITE, "project": "bench", "environments": envs, "cases": cases}
    (root / "manifests").mkdir(parents=True, exist_ok=True)
    (root / "manifests" / "bench.yaml").write_text(yaml.dump_all([project, suite], Dumper=yaml.CSafeDumper))
    return envs


def report_durations(root: Path, envs: list[str]) -> tuple[list[float], dict[str, int]]:
    durations: list[float] = []
    outcomes: dict[str, int] = {}
    for env in envs:
        report = yaml.load((root / "reports" / "tests" / SUITE / f"{env}.yaml").read_text(), Loader=yaml.CSafeLoader)
        for r in report["results"]:
            durations.append(float(r.get("duration_ms", 0.0)))
            outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    return durations, outcomes


def percentile(values: list[float], p: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def show(label: str, wall: float, durations: list[float], outcomes: dict[str, int]) -> float:
    n = len(durations)
    rate = n / wall
    print(f"{label:<36} {n:5d} cases {wall:6.2f} s {rate:7.0f} cases/s  p50 {percentile(durations, 50):5.1f} ms"
          f"  p95 {percentile(durations, 95):5.1f} ms  " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    return rate


def run_process(label: str, urls: list[str], count: int, concurrency: int) -> float:
    """A fresh `qrm tests run` process in a fresh workspace; cases/s."""
    with tempfile.TemporaryDirectory(prefix="qrm-bench-tests-") as tmp:
        root = Path(tmp)
        envs = write_workspace(root, urls, count)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "reconciler", "-C", str(root), "tests", "run", SUITE,
                               "--concurrency", str(concurrency)], capture_output=True, text=True, env=ENV)
        wall = time.perf_counter() - start
        if proc.returncode not in (0, 3):
            sys.exit(f"qrm tests run failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return show(label, wall, *report_durations(root, envs))


def run_in_process(label: str, urls: list[str], count: int, concurrency: int) -> float:
    """tests_run.run_tests in this process, in a fresh workspace; cases/s."""
    with tempfile.TemporaryDirectory(prefix="qrm-bench-tests-") as tmp:
        root = Path(tmp)
        write_workspace(root, urls, count)
        start = time.perf_counter()
        outcome = tests_run.run_tests(open_workspace(root, None), SUITE, [], concurrency=concurrency)
        wall = time.perf_counter() - start
        results = [r for run in outcome.runs for r in run.results]
        counts: dict[str, int] = {}
        for r in results:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        return show(label, wall, [r.duration_ms for r in results], counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--no-threaded", action="store_true", help="skip the threaded-server comparison line")
    args = parser.parse_args()
    print(f"{args.cases} cases per environment, concurrency {', '.join(map(str, args.concurrency))}, "
          f"{os.cpu_count()} CPUs; fast servers: bench/fast_quantum_server.py, one process each")
    best: dict[str, tuple[float, int]] = {}
    with fast_servers(len(ENVIRONMENTS)) as urls:
        run_in_process("warm-up (in-process, not counted)", urls[:1], min(args.cases, 200), args.concurrency[0])
        for scenario, targets in (("1 env", urls[:1]), ("3 envs", urls)):
            for concurrency in args.concurrency:
                for mode, run in (("process", run_process), ("in-process", run_in_process)):
                    label = f"{scenario}, {mode}, c={concurrency}"
                    rate = run(label, targets, args.cases, concurrency)
                    key = f"{scenario}, {mode}"
                    if rate > best.get(key, (0.0, 0))[0]:
                        best[key] = (rate, concurrency)
    if not args.no_threaded:
        with threaded_server() as urls:
            run_process("1 env, process, c=20 (threaded srv)", urls, min(args.cases, 500), 20)
    print("best:")
    for key, (rate, concurrency) in best.items():
        verdict = "meets" if rate >= 500 else "misses"
        print(f"  {key:<20} {rate:7.0f} cases/s at --concurrency {concurrency} ({verdict} the 500 cases/s target)")


if __name__ == "__main__":
    main()
