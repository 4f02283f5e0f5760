"""Benchmark: the dashboard's Overview (GET /ui/ and the cards its live updates fetch, /ui/overview/cards) of
`qrm serve`, in server time, beside the API's GET /plan.

Run:  .venv/bin/python bench/overview_page.py [--services N] [--requests N]
Builds bench/allocate.py's git workspace of N services (default 1,000), applies it, creates a read token and
starts the real server (tests/support/api_server.py) with its access log. Then, one request at a time,
`--requests` GETs (`--pause` seconds apart) of the Overview, of its cards, and of the yardstick GET /plan (the
plan the Overview's workspace card is made of, with live listeners: what the page cost on every load before it
was kept), each request's server time taken from the access log's duration_ms (bench/served.py). The workspace
does not change during the run, so the Overview is planned again once every flows.overview.FRESH_FOR seconds
(3 or 4 times in 100 requests 0.1 s apart) and answered from what was kept in between: p50 is a kept answer,
p99 and max a fresh plan.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repository's root, as bench/api.py explains
from bench.served import Served, figures, served, server_timed  # noqa: E402


def measure(at: Served, path: str, requests: int, pause: float) -> list[float]:
    """The server times of `requests` GETs of `path`, one at a time, `pause` seconds apart, sorted."""
    return sorted(ms for _, ms in server_timed(at, path, [""] * requests, pause=pause, timeout=120))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--services", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between two requests (a person's pace "
                        "is slower: this makes the kept overview's lifetime end a few times a path)")
    args = parser.parse_args()
    with served("qrm-bench-overview-", args.services, log_level="info") as at:
        server = at.server
        first = httpx.get(server.url + "/ui/", headers=at.headers, timeout=120)
        if first.status_code != 200 or "in sync" not in first.text:
            raise SystemExit(f"wrong: GET /ui/ answered {first.status_code} without 'in sync'")
        time.sleep(0.5)  # its access log line, before measure() starts counting
        print(f"qrm dashboard benchmark: the Overview at {args.services:,} services, {args.requests} requests of "
              "each, one at a time, in server time (the access log's duration_ms)")
        page = figures("GET /ui/ (the Overview)", measure(at, "/ui/", args.requests, args.pause))
        cards = server.get("/ui/overview/cards", at.reader)
        time.sleep(0.5)
        if cards.status_code == 200:  # (before the Overview was live it had no cards of its own)
            figures("GET /ui/overview/cards (what a live update fetches)",
                    measure(at, "/ui/overview/cards", args.requests, args.pause))
        plan = figures("yardstick: GET /plan (the API's plan, listeners read live)",
                       measure(at, "/plan", args.requests, args.pause))
        print(f"ratio: the Overview takes {page / plan:.2f}x the plan's server time (p50)")


if __name__ == "__main__":
    main()
