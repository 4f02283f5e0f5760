"""Benchmark: the dashboard's Services page (GET /ui/services, its first page of 100 rows, and the table
fragment the live updates fetch) of `qrm serve` at 10,000 services, one request at a time.

Run:  .venv/bin/python bench/services_page.py [--services N] [--requests N]
Builds bench/allocate.py's workspace of N services, applies it, creates a read token and starts the real
server (tests/support/api_server.py); the token goes in a header (the pages take it as a session). Prints
p50 and p99 of each path as the client times it (one at a time: the server's own time plus a local hop).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # as bench/api.py: the repository's root, not bench/
from bench.served import served  # noqa: E402

PATHS = ("/ui/services", "/ui/services/table?type=app", "/ui/services?offset=9900")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    with served("qrm-bench-services-", args.services) as at:
        print(f"dashboard Services page: {args.services:,} services, {args.requests} requests a path, one at a time")
        with httpx.Client(base_url=at.server.url, headers=at.headers, timeout=60) as client:
            for path in PATHS:
                answer = client.get(path)
                if answer.status_code != 200 or answer.text.count("<tr data-service=") != 100:
                    raise SystemExit(f"wrong: GET {path} answered {answer.status_code} without 100 rows")
                times = []
                for _ in range(args.requests):
                    start = time.perf_counter()
                    client.get(path).raise_for_status()
                    times.append((time.perf_counter() - start) * 1000)
                times.sort()
                print(f"  GET {path}: {len(answer.content):,} bytes; p50 {statistics.median(times):.1f} ms, "
                      f"p99 {times[int(len(times) * 0.99) - 1]:.1f} ms")


if __name__ == "__main__":
    main()
