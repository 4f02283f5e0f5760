"""Benchmark: the dashboard's Ports page (/ui/ports) of `qrm serve` at 10,000 services, in server time.

Run:  .venv/bin/python bench/pages.py [--services N] [--requests N]
Builds bench/allocate.py's git workspace of N services (one app range 10000-29999) with a Reservation, applies
it, creates a read token and starts the real server (`python -m reconciler serve`, in a process:
tests/support/api_server.py). Then, one request at a time, `--requests` GETs of each kind of Ports page, each
request a different page so the server's kept answers (flows.cached_reads) do not hide the database's work:
page 1..N, a search by name, and a type filter on deep pages. Server time is what the server's access log says
each request took (guard.py's duration_ms: from the request's arrival to its answer, HTML rendered).
Target: every request under 300 ms.

Yardstick, in the same run, the same way: GET /resources/ports?limit=50&offset=K of the API (the JSON of the same
50 rows a page shows, through the same flows.ports.port_page); the ratio is what the page's HTML (filters, range bars,
reservations, the table) costs over the API's JSON.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repository's root, as bench/api.py explains
from bench.allocate import git  # noqa: E402
from bench.served import Served, figures, served, server_timed  # noqa: E402

RESERVATION = "kind: Reservation\nname: legacy\nhost: localhost\nports: [10005, \"20000-20009\"]\nreason: old admin\n"


def reserved(root: Path) -> None:
    """The Reservation, committed."""
    (root / "manifests" / "reservations.yaml").write_text(RESERVATION)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "bench: a reservation")


def measure(at: Served, path: str, query: Callable[[int], str], requests: int) -> list[float]:
    """The server times of `requests` GETs of `path` with query(0..requests-1), sorted; the three slowest printed."""
    found = server_timed(at, path, [query(i) for i in range(requests)])
    slowest = sorted(found, key=lambda f: -f[1])[:3]
    print(f"    slowest: {', '.join(f'{query(i)} {ms:.0f} ms' for i, ms in slowest)}")
    return sorted(ms for _, ms in found)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    with served("qrm-bench-pages-", args.services, log_level="info", prepare=reserved) as at:
        pages = max(1, args.services // 50)
        first = httpx.get(at.server.url + "/ui/ports", headers=at.headers, timeout=60)
        assert f"{args.services:,}".replace(",", "") in first.text, "the page does not count every service"
        print(f"qrm dashboard benchmark: GET /ui/ports at {args.services:,} services, {args.requests} requests "
              "of each, one at a time, each a different page")
        worst = 0.0
        kinds: list[tuple[str, Callable[[int], str]]] = [
            ("page N of all", lambda i: f"page={1 + i % pages}"),
            ("search by name", lambda i: f"q=svc-{(i * 97) % args.services:05d}"),
            ("type filter, deep pages", lambda i: f"type=app&page={pages - i % pages}"),
        ]
        page_p50 = 0.0
        for label, query in kinds:
            times = measure(at, "/ui/ports", query, args.requests)
            p50 = figures(f"/ui/ports, {label}", times)
            page_p50 = page_p50 or p50
            worst = max(worst, times[-1])
        times = measure(at, "/resources/ports", lambda i: f"limit=50&offset={50 * (i % pages)}", args.requests)
        api_p50 = figures("yardstick: GET /resources/ports?limit=50 (the API's JSON of the same rows)", times)
        print(f"ratio: the Ports page takes {page_p50 / api_p50:.1f}x the API page's server time (p50); "
              f"target: every request under 300 ms: {'met' if worst < 300 else 'NOT met'} (max {worst:.1f} ms)")


if __name__ == "__main__":
    main()
