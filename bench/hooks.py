"""Benchmark: how fast `qrm serve` answers webhooks, how many reconciles a stream of pushes costs, and how
long a GitHub push takes from the delivery to the report commit on the origin.

Run:  .venv/bin/python bench/hooks.py [--deliveries N] [--changes N]
Builds the workspace of tests/server/test_hooks.py (a bare origin, a developer clone, the served clone
with its webhook secrets; tests/support/webhooks.py) in a temp folder and starts the real server. Then:
N signed `ping` and N signed `push` deliveries one after another on one keep-alive connection (answer
times, p50/p99; target well under a second), and the reconciles those N pushes cost (the worker
coalesces what arrives while a reconcile runs); then, --changes times, a developer push of a new service
followed by one delivery, timed until that service's allocation is in reports/allocations.yaml on the
origin (median).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

# bench/ is not a path to import from (bench/tests.py and bench/secrets.py would shadow the tests package and
# the stdlib's secrets): the repository's root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
from tests.support.git_repos import services  # noqa: E402
from tests.support.webhooks import GITHUB_SECRET, hooked, shown  # noqa: E402


def answer_times(client: httpx.Client, url: str, event: str, payload: dict[str, str], count: int) -> list[float]:
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        answer = client.post(url, content=body, headers={"X-GitHub-Event": event, "X-Hub-Signature-256": signature,
                                                         "X-GitHub-Delivery": str(uuid.uuid4())})
        times.append((time.perf_counter() - start) * 1000)
        assert answer.status_code in (200, 202), answer.text
    return sorted(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--changes", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, hooked(Path(folder)) as h, httpx.Client(timeout=30) as client:
        url = h.server.url + "/hooks/github"
        h.github("push", {"ref": "refs/heads/main"})
        h.settled(reconciles=1)
        for event, payload in (("ping", {"zen": "x"}), ("push", {"ref": "refs/heads/main"})):
            before = h.settled()["reconciles"]
            times = answer_times(client, url, event, payload, args.deliveries)
            after = h.settled()["reconciles"]
            print(f"{args.deliveries} {event} deliveries: answer p50 {times[len(times) // 2]:.1f} ms, "
                  f"p99 {times[int(len(times) * 0.99) - 1]:.1f} ms; reconciles {after - before}")
        latencies = []
        names = ["a"]
        for i in range(args.changes):
            names.append(f"s{i}")
            h.push(services(*names), f"add s{i}")
            start = time.perf_counter()
            h.github("push", {"ref": "refs/heads/main"})
            while f'"name": "s{i}"' not in shown(h.origin, "reports/allocations.yaml"):
                time.sleep(0.005)
            latencies.append(time.perf_counter() - start)
        print(f"delivery to report commit on origin: median {statistics.median(latencies):.2f} s "
              f"over {args.changes} pushes (max {max(latencies):.2f} s)")


if __name__ == "__main__":
    main()
