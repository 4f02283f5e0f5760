"""Benchmark: one health round of 1,000 services on loopback, 100 of which accept and never answer.

Run:  .venv/bin/python bench/health.py [--services N] [--hanging H] [--timeout S] [--concurrency C] [--rounds N]
      [--profile FILE]

A server process (this file with --serve) listens on N ports: N-H answer `GET /health` with 200,
H accept the connection and never answer. The services are registered straight into a fresh
SQLite registry in a temp workspace; then the round runs twice in-process (first round: no
records yet; second: records replaced) and then --rounds times as a fresh `qrm services health` process
(median printed, with its ratio to the timeout). Target: the whole process within 1.5x the timeout, not
H x timeout; the existing Quantum admin tool checks one after another (4 hanging services took 20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Answer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" in self.buffer:
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]
            self.transport.close()


class Hang(asyncio.Protocol):
    """Accepts and reads, never answers."""


async def serve(answering: int, hanging: int) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for protocol, count in ((Answer, answering), (Hang, hanging)):
        for _ in range(count):
            servers.append((protocol, await loop.create_server(protocol, "127.0.0.1", 0, backlog=256)))
    ports: dict[str, list[int]] = {"answering": [], "hanging": []}
    for protocol, server in servers:
        ports["answering" if protocol is Answer else "hanging"].append(server.sockets[0].getsockname()[1])
    print(json.dumps(ports), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the benchmark closes our stdin


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--hanging", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=None, help="default: qrm's (services.DEFAULT_CONCURRENCY)")
    parser.add_argument("--rounds", type=int, default=3, help="`qrm services health` processes to time")
    parser.add_argument("--profile", type=Path, help="also run the process once under cProfile, stats to this file")
    parser.add_argument("--serve", nargs=2, type=int, metavar=("ANSWERING", "HANGING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()
    if args.serve:
        asyncio.run(serve(*args.serve))
        return

    from reconciler.core.state import RecordedService
    from reconciler.edges.registry import Registry, default_url
    from reconciler.flows import services
    from reconciler.flows.workspace import open_workspace

    if args.concurrency is None:
        args.concurrency = services.DEFAULT_CONCURRENCY
    answering = args.services - args.hanging
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(answering), str(args.hanging)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        ports = json.loads(server.stdout.readline())
        # every 10th service hangs, spread through the list as they would be in a real fleet
        order: list[int] = []
        answer, hang = iter(ports["answering"]), iter(ports["hanging"])
        step = max(1, args.services // max(1, args.hanging))
        for i in range(args.services):
            port = next(hang, None) if i % step == step - 1 else None
            order.append(port if port is not None else next(answer, None) or next(hang))
        check = {"path": "/health", "timeout": f"{args.timeout:g}s", "interval": "30s",
                 "success_before_passing": 1, "failures_before_critical": 1}
        fleet = [RecordedService(name=f"svc-{i:04d}", host="localhost", port=port, type="app", protocol="http",
                                 health=check) for i, port in enumerate(order)]
        with tempfile.TemporaryDirectory(prefix="qrm-bench-health-") as folder:
            root = Path(folder)
            (root / "manifests").mkdir()
            registry = Registry(default_url(root))
            registry.write([], fleet, revision=None, summary={}, started_at="2026-01-01T00:00:00.000000Z")
            registry.close()
            ws = open_workspace(root)
            print(f"{args.services} services on 127.0.0.1: {answering} answer 200, {args.hanging} accept and never "
                  f"answer; timeout {args.timeout:g} s, concurrency {args.concurrency}")
            for label in ("round 1 (new records)", "round 2 (records replaced)"):
                start = time.perf_counter()
                outcome = services.check_health(ws, concurrency=args.concurrency)
                total = time.perf_counter() - start
                counts = outcome.counts()
                rate = args.services / outcome.probe_seconds
                print(f"{label}: checks {outcome.probe_seconds:.2f} s wall ({rate:,.0f} checks/s), "
                      f"registry write {outcome.write_seconds * 1000:.0f} ms, report "
                      f"{outcome.timings['report'] * 1000:.0f} ms, whole round {total:.2f} s; "
                      f"{counts['passing']} passing, {counts['critical']} critical")
            print(f"(one after another, the {args.hanging} timeouts alone would take "
                  f"{args.hanging * args.timeout:.0f} s)")
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            walls = []
            for i in range(args.rounds):
                python = [sys.executable, "-m", "cProfile", "-o", str(args.profile)] if args.profile and i == 0 else [
                    sys.executable]
                start = time.perf_counter()
                proc = subprocess.run([*python, "-m", "reconciler", "-C", str(root), "services", "health",
                                       "--concurrency", str(args.concurrency)], capture_output=True, text=True,
                                      env=env, cwd=ROOT)
                wall = time.perf_counter() - start
                if proc.returncode != 0:
                    raise SystemExit(f"qrm services health failed ({proc.returncode}): {proc.stderr[-2000:]}")
                if args.profile and i == 0:
                    print(f"(profiled run, not counted: {wall:.2f} s; stats in {args.profile})")
                    continue
                walls.append(wall)
                print(f"`qrm services health` as a fresh process: {wall:.2f} s "
                      f"({proc.stdout.strip().splitlines()[-1]}); {wall / args.timeout:.2f}x the timeout")
            median = statistics.median(walls)
            print(f"median of {len(walls)}: {median:.2f} s, {median / args.timeout:.2f}x the {args.timeout:g} s "
                  f"timeout ({'meets' if median <= 1.5 * args.timeout else 'misses'} the 1.5x target)")
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
