"""Benchmark: `qrm tests run` of 1,000 cases on one environment as a whole process, beside a bare aiohttp
client process (bench/bare_client.py) doing the same requests and checks at the same concurrency, and
the ratio qrm/bare. Target: at most 1.5.

Run:  .venv/bin/python bench/tests.py [--cases N] [--concurrency N] [--rounds N] [--profile FILE]
The server is bench/fast_quantum_server.py (raw asyncio, backlog 1024, precomputed responses) in a
subprocess of its own, so that it does not share a GIL with the clients. The workspace has one Project
(an environment with a `url:`) and one TestSuite of N cases (smoke pages, a JSON endpoint, the auth
redirect, valid actions with their success flash, invalid actions with their error flash); the bare
client reads the same cases from a JSON file. After a warm-up of each, the two processes alternate for
--rounds rounds; the medians and their ratio are printed. --profile FILE runs one more `qrm tests run`
under cProfile and writes its stats to FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"PYTHONPATH": str(REPO)}
SUITE = "bench-suite"
FAST_SERVER = REPO / "bench" / "fast_quantum_server.py"
BARE_CLIENT = REPO / "bench" / "bare_client.py"


@contextmanager
def fast_server() -> Iterator[str]:
    """The fast server in its own process; its base URL."""
    proc = subprocess.Popen([sys.executable, str(FAST_SERVER), "--variant", "v1"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("http://"):
            sys.exit(f"the fast server did not start: {line!r}")
        yield line
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the server stops when its stdin closes
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


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


def cases(count: int) -> list[dict[str, Any]]:
    forms = templates()
    return [{"id": f"case-{i:04d}", "name": f"case {i}", **forms[i % len(forms)]} for i in range(count)]


def write_workspace(root: Path, url: str, count: int) -> None:
    project = {"kind": "Project", "name": "bench", "services": {"web": {"type": "app"}},
               "environments": {"dev": {"url": url}}}
    suite = {"kind": "TestSuite", "name": SUITE, "project": "bench", "environments": ["dev"], "cases": cases(count)}
    (root / "manifests").mkdir(parents=True, exist_ok=True)
    (root / "manifests" / "bench.yaml").write_text(yaml.dump_all([project, suite], Dumper=yaml.CSafeDumper))


def write_bare_cases(path: Path, count: int) -> None:
    plain = [{"method": c["request"].get("method", "GET"), "path": c["request"]["path"],
              "form": c["request"].get("form"), "expect": c["expect"]} for c in cases(count)]
    path.write_text(json.dumps(plain))


@dataclass
class Timing:
    wall: float  # seconds, the whole process
    cpu: float  # user + system seconds of the process (less sensitive than wall to other load on the machine)
    counts: str


def timed(command: list[str]) -> tuple[subprocess.CompletedProcess[str], float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_qrm(root: Path, concurrency: int, profile: Path | None = None) -> Timing:
    """A fresh `qrm tests run` process in the workspace (its cache, registry and reports kept from the
    warm-up, as a user's workspace has them); the outcome counts of its report."""
    python = [sys.executable, "-m", "cProfile", "-o", str(profile)] if profile else [sys.executable]
    proc, wall, cpu = timed([*python, "-m", "reconciler", "-C", str(root), "tests", "run", SUITE,
                             "--concurrency", str(concurrency)])
    if proc.returncode not in (0, 3):
        sys.exit(f"qrm tests run failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    report = yaml.load((root / "reports" / "tests" / SUITE / "dev.yaml").read_text(), Loader=yaml.CSafeLoader)
    return Timing(wall, cpu, ", ".join(f"{k} {v}" for k, v in report["counts"].items() if v))


def run_bare(cases_file: Path, url: str, concurrency: int) -> Timing:
    proc, wall, cpu = timed([sys.executable, str(BARE_CLIENT), str(cases_file), url, str(concurrency)])
    if proc.returncode != 0:
        sys.exit(f"the bare client failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return Timing(wall, cpu, proc.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", type=Path, help="also run qrm once under cProfile, stats to this file")
    args = parser.parse_args()
    print(f"{args.cases} cases, one environment, concurrency {args.concurrency}, {os.cpu_count()} CPUs; "
          "server: bench/fast_quantum_server.py in its own process")
    with tempfile.TemporaryDirectory(prefix="qrm-bench-tests-") as tmp, fast_server() as url:
        root, cases_file = Path(tmp) / "ws", Path(tmp) / "cases.json"
        write_workspace(root, url, args.cases)
        write_bare_cases(cases_file, args.cases)
        run_qrm(root, args.concurrency)  # warm-up: .pyc files, the page cache, the server's response cache
        run_bare(cases_file, url, args.concurrency)
        qrm: list[Timing] = []
        bare: list[Timing] = []
        for i in range(args.rounds):
            qrm.append(run_qrm(root, args.concurrency))
            bare.append(run_bare(cases_file, url, args.concurrency))
            print(f"round {i + 1}: qrm tests run {qrm[-1].wall:5.2f} s (cpu {qrm[-1].cpu:4.2f} s; {qrm[-1].counts}); "
                  f"bare aiohttp client {bare[-1].wall:5.2f} s (cpu {bare[-1].cpu:4.2f} s; {bare[-1].counts}); "
                  f"ratio {qrm[-1].wall / bare[-1].wall:.2f}")
        qrm_wall, bare_wall = statistics.median(t.wall for t in qrm), statistics.median(t.wall for t in bare)
        qrm_cpu, bare_cpu = statistics.median(t.cpu for t in qrm), statistics.median(t.cpu for t in bare)
        ratio = qrm_wall / bare_wall
        print(f"median: qrm tests run {qrm_wall:.2f} s ({args.cases / qrm_wall:.0f} cases/s, cpu {qrm_cpu:.2f} s), "
              f"bare aiohttp client {bare_wall:.2f} s ({args.cases / bare_wall:.0f} cases/s, cpu {bare_cpu:.2f} s)")
        print(f"ratio qrm/bare: {ratio:.2f} wall ({'meets' if ratio <= 1.5 else 'misses'} the 1.5 target), "
              f"{qrm_cpu / bare_cpu:.2f} cpu")
        if args.profile:
            run_qrm(root, args.concurrency, args.profile)
            print(f"profile of one qrm tests run: {args.profile} (python -m pstats {args.profile})")


if __name__ == "__main__":
    main()
