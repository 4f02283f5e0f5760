"""What the dashboard benchmarks (bench/pages.py, bench/overview_page.py, bench/services_page.py) share: a served
workspace (bench/allocate.py's git workspace of N services, applied, a read token, the real `qrm serve` of
tests/support/api_server.py, all removed at the end), and the server times of a run of requests read from its
access log (guard.py's duration_ms: from the request's arrival to its answer)."""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repository's root, as bench/api.py explains
from bench.allocate import build  # noqa: E402
from tests.support import api_server  # noqa: E402


@dataclass
class Served:
    server: api_server.Server
    reader: str  # a read token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.reader}"}


@contextmanager
def served(prefix: str, services: int, *, log_level: str = "warning",
           prepare: Callable[[Path], None] | None = None) -> Iterator[Served]:
    """bench/allocate.py's workspace of `services` services in a new temporary folder (`prefix`), `prepare`d
    (more manifests, committed) before it is applied, and served with a read token; `log_level="info"` for
    the access log the server times are read from."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    root = base / "ws"
    server = None
    try:
        env = api_server.environment(base / "home")
        build(root, services)
        if prepare is not None:
            prepare(root)
        api_server.qrm(root, env, "apply", "--yes", "--no-refresh", "--no-tests")
        reader = api_server.qrm(root, env, "token", "create", "reader", "--scope", "read").strip()
        server = api_server.start(root, env, log_level=log_level)
        yield Served(server, reader)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


def logged(log: str, since: int, path: str) -> list[tuple[int, float]]:
    """(position in the log, duration_ms) of the access log's lines for `path` after character `since`."""
    times: list[tuple[int, float]] = []
    for line in log[since:].splitlines():
        start = line.find("{")
        if "reconciler.server.access" not in line or start < 0:
            continue
        entry = json.loads(line[start:])
        if entry["path"] == path and entry["status"] == 200:
            times.append((len(times), float(entry["duration_ms"])))
    return times


def server_timed(served: Served, path: str, queries: list[str], *, pause: float = 0.0, timeout: float = 60
                 ) -> list[tuple[int, float]]:
    """GET `path` once with each of `queries` (`""`: none), one at a time, `pause` seconds apart; (the request's
    index, its duration_ms) of each, from the access log."""
    server = served.server
    since = len(server.log())
    with httpx.Client(headers=served.headers, timeout=timeout) as client:
        for query in queries:
            client.get(server.url + path + (f"?{query}" if query else "")).raise_for_status()
            time.sleep(pause)
    time.sleep(0.5)  # the log line of the last request
    found = logged(server.log(), since, path)
    if len(found) != len(queries):
        raise SystemExit(f"the access log has {len(found)} lines for {path}, not {len(queries)}")
    return found


def figures(label: str, times: list[float]) -> float:
    """Print p50, p99 and max of `times` (sorted); p50."""
    p50, p99 = statistics.median(times), times[max(0, int(len(times) * 0.99) - 1)]
    print(f"  {label}: server time p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {times[-1]:.1f} ms")
    return p50
