"""Benchmark: how long another replica takes to lead, and to apply a pushed change, when the leader of three
`qrm serve --watch` replicas is killed with SIGKILL.

Run:  .venv/bin/python bench/replicas.py [--backend postgresql|sqlite] [--interval S] [--rounds N]
Builds tests/server/test_replicas.py's set-up in a temp folder (a bare origin, a developer's clone, one clone
per replica; tests/support/replicas.py) against one registry: a throwaway PostgreSQL server
(tests/support/pgserver.py) or a SQLite file the clones share. Then, --rounds times: SIGKILL the replica that
leads, push a new service from the developer's clone at once, and time from the kill until (a) a survivor's
GET /hooks/status says it leads and (b) the new service's allocation is in reports/allocations.yaml on the
origin (applied, committed and pushed by the new leader); the killed clone then gets a fresh replica, so
three run again. Reports each round and the median and maximum, against the watch interval.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# bench/ is not a path to import from (bench/tests.py and bench/secrets.py would shadow the tests package and
# the stdlib's secrets): the repository's root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
from tests.support import pgserver  # noqa: E402
from tests.support.git_repos import services  # noqa: E402
from tests.support.watch_replicas import Replicas, kill, replicas  # noqa: E402


def takeover(group: Replicas, names: list[str]) -> tuple[float, float]:
    """Kill the leader, push a service; seconds until another leads, and until the service is on origin."""
    leader = group.one_leader()
    survivors = [server for server in group.alive() if server is not leader]
    started = time.monotonic()
    kill(leader)
    group.push(services(*names), f"add {names[-1]}")
    led = applied = None
    deadline = started + 120
    while (led is None or applied is None) and time.monotonic() < deadline:
        if led is None and any((group.role(server) or {}).get("leader") for server in survivors):
            led = time.monotonic() - started
        if applied is None and f'"name": "{names[-1]}"' in group.allocated():
            applied = time.monotonic() - started
        time.sleep(0.02)
    if led is None or applied is None:
        raise SystemExit(f"no takeover within 120 s:\n{group.logs()}")
    group.restart(leader)
    return led, applied


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    server = pgserver.start() if args.backend == "postgresql" else None
    try:
        with tempfile.TemporaryDirectory() as folder:
            if server is not None:
                url, env = server.url(server.create_database()), {"PGPASSWORD": server.password}
                os.environ["PGPASSWORD"] = server.password
            else:
                url, env = f"sqlite:///{Path(folder) / 'shared' / 'registry.db'}", {}
            with replicas(Path(folder), url, env, interval=args.interval) as group:
                names = ["a"]
                led_times, applied_times = [], []
                for number in range(1, args.rounds + 1):
                    names.append(f"s{number}")
                    led, applied = takeover(group, names)
                    led_times.append(led)
                    applied_times.append(applied)
                    print(f"round {number}: another replica leads {led:.2f} s after the SIGKILL; the service pushed "
                          f"after the kill is applied and on origin {applied:.2f} s after it", flush=True)
        print(f"{args.backend}, interval {args.interval:g} s, {args.rounds} rounds: leads after median "
              f"{statistics.median(led_times):.2f} s (max {max(led_times):.2f} s); applied after median "
              f"{statistics.median(applied_times):.2f} s (max {max(applied_times):.2f} s)")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
