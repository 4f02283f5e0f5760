"""Benchmark: GET /resources/ports?limit=100 of `qrm serve` at 10,000 services, 50 requests at once.

Run:  .venv/bin/python bench/api.py [--services N] [--requests N] [--concurrency N] [--allocations N]
Builds bench/allocate.py's git workspace of N services, applies it, creates a read token and starts the
real server (`python -m reconciler serve`, uvicorn, in a process: tests/support/api_server.py). Then
`--requests` GETs of the first page, `--concurrency` at a time from one httpx.AsyncClient: requests/s,
p50, p99 (target: p99 under 50 ms).

Yardstick, in the same run and with the same client: a bare uvicorn + Starlette process answering the same
page (the bytes qrm answered) from memory. The ratio is qrm's own cost per request (token check, the
registry's revision, the kept page: routes and flows.cached_reads). At `--concurrency` N a request waits for
the N-1 ahead of it, so p50 is about N / (requests/s) for both: `--concurrency 1` shows a request's own cost.

With `--allocations N` (0 to skip) it also sends N concurrent POST /resources/ports/allocate with a write
token (each writes a Service document, validates, commits and applies: bench/allocate.py end to end).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

# bench/ is not a path to import from (bench/tests.py and bench/secrets.py would shadow the tests package and
# the stdlib's secrets): the repository's root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
from bench.allocate import build, git  # noqa: E402
from tests.support import api_server  # noqa: E402

PAGE = "/resources/ports?limit=100"

BARE_APP = textwrap.dedent("""
    import sys
    from pathlib import Path
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    body = Path(sys.argv[1]).read_bytes()

    async def page(request):
        return Response(body, media_type="application/json")

    app = Starlette(routes=[Route("/resources/ports", page), Route("/health", page)])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
""")


async def load(url: str, headers: dict[str, str], requests: int, concurrency: int) -> tuple[float, list[float]]:
    """`requests` GETs of `url`, `concurrency` at a time: wall seconds and each request's ms, sorted."""
    times: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=60) as client:
        for _ in range(concurrency):  # warm: open the connections
            (await client.get(url)).raise_for_status()
        left = iter(range(requests))

        async def worker() -> None:
            for _ in left:
                began = time.perf_counter()
                answer = await client.get(url)
                times.append((time.perf_counter() - began) * 1000)
                answer.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return wall, sorted(times)


def figures(label: str, requests: int, wall: float, times: list[float]) -> float:
    p50, p99 = statistics.median(times), times[max(0, int(len(times) * 0.99) - 1)]
    print(f"{label}: {requests / wall:,.0f} requests/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return p99


async def allocate(url: str, token: str, calls: int) -> tuple[float, list[int]]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=3600,
                                 limits=httpx.Limits(max_connections=calls)) as client:
        async def call(i: int) -> int:
            answer = await client.post(url + "/resources/ports/allocate",
                                       json={"service_name": f"api-{i:03d}", "port_type": "app", "host": "localhost"})
            if answer.status_code != 200:
                raise SystemExit(f"POST allocate answered {answer.status_code}: {answer.text}")
            port: int = answer.json()["port"]
            return port

        start = time.perf_counter()
        ports = await asyncio.gather(*(call(i) for i in range(calls)))
        return time.perf_counter() - start, list(ports)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--allocations", type=int, default=100, help="concurrent POST allocate calls; 0 skips")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="qrm-bench-api-"))
    root = base / "ws"
    server = bare = None
    try:
        env = api_server.environment(base / "home")
        build(root, args.services)
        start = time.perf_counter()
        api_server.qrm(root, env, "apply", "--yes", "--no-refresh", "--no-tests")
        print(f"qrm API benchmark: {args.services:,} services; first apply {time.perf_counter() - start:.1f} s")
        reader = api_server.qrm(root, env, "token", "create", "reader", "--scope", "read").strip()
        writer = api_server.qrm(root, env, "token", "create", "writer", "--scope", "write").strip()
        git(root, "add", "-A")  # the reports and the tokens' hashes: the write endpoints refuse uncommitted changes
        git(root, "commit", "-qm", "bench: first apply, tokens")
        server = api_server.start(root, env)
        headers = {"Authorization": f"Bearer {reader}"}
        body = httpx.get(server.url + PAGE, headers=headers, timeout=60).content
        (base / "page.json").write_bytes(body)

        port = api_server.free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(base / "page.json"), str(port)], env=env)
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        print(f"GET {PAGE}: {len(body):,} bytes; {args.requests:,} requests, {args.concurrency} at a time")
        wall, times = asyncio.run(load(server.url + PAGE, headers, args.requests, args.concurrency))
        p99 = figures("  qrm serve", args.requests, wall, times)
        qrm_rate = args.requests / wall
        wall, times = asyncio.run(load(f"http://127.0.0.1:{port}{PAGE}", {}, args.requests, args.concurrency))
        figures("  yardstick, bare uvicorn + Starlette, the same page from memory", args.requests, wall, times)
        print(f"ratio: {(args.requests / wall) / qrm_rate:.1f}x the yardstick's time per request; "
              f"target p99 < 50 ms {'met' if p99 < 50 else 'NOT met'}")

        if args.allocations:
            wall, ports = asyncio.run(allocate(server.url, writer, args.allocations))
            if len(set(ports)) != args.allocations:
                raise SystemExit(f"wrong: {len(set(ports))} distinct ports for {args.allocations} calls")
            print(f"{args.allocations} concurrent POST /resources/ports/allocate: {wall:.1f} s, "
                  f"{args.allocations / wall:.2f} calls/s, {len(set(ports))} distinct ports")
    finally:
        for process in (bare, server.process if server else None):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
