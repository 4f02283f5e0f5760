"""Benchmark: emit N notification events and deliver them to a local webhook receiver, beside a bare aiohttp client.

Run:  .venv/bin/python bench/notify.py [--events N] [--registry URL]
Builds a workspace with a project, a webhook Notifier (URL and signing secret in a real secrets.enc under the
example's demo age key) and an Alert taking every event; starts an aiohttp receiver on 127.0.0.1 that answers
200 to each POST. Then times flows.notify.emit of N distinct events (each one registry transaction: the cost an
apply or a health round pays per event) and deliver_due passes until every row is delivered (signing, sending
8 at a time, recording each outcome).

Yardstick, in the same run against the same receiver: a bare aiohttp ClientSession POSTing the same N bodies,
signed the same way, 8 at a time. The ratio says what the outbox costs beyond the HTTP itself (claiming each
row, reading the notifier and its secrets, recording the outcome).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import ClientSession, web

from reconciler.core.notifications import Event
from reconciler.edges import notify_http
from reconciler.flows import notify
from reconciler.flows.secrets import set_secret
from reconciler.flows.workspace import open_workspace

REPO = Path(__file__).resolve().parents[1]
SECRET = "whsec_YmVuY2gtc2lnbmluZy1rZXktMDEyMzQ1Njc4OQ=="
CONCURRENCY = notify.DEFAULT_CONCURRENCY


class Receiver:
    def __init__(self) -> None:
        self.count = 0
        self.port = 0
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.count += 1
        return web.Response(text="ok")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.port = runner.addresses[0][1]


def workspace(root: Path, url: str, registry: str | None) -> notify.Workspace:
    (root / "manifests").mkdir(parents=True)
    shutil.copy(REPO / ".sops.yaml", root / ".sops.yaml")
    (root / "manifests" / "shop.yaml").write_text(
        "kind: Project\nname: shop\nenvironments:\n  prod: {host: localhost}\nservices:\n  web: {type: app}\n")
    (root / "manifests" / "notify.yaml").write_text(
        "kind: Notifier\nname: ops\nprovider: webhook\nurl: secret:HOOK_URL\nsigning_secret: secret:HOOK_SECRET\n"
        "---\nkind: Alert\nname: all\nevents: ['*']\nnotifiers: [ops]\n")
    ws = open_workspace(root, registry)
    set_secret(ws, "HOOK_URL", None, None, url)
    set_secret(ws, "HOOK_SECRET", None, None, SECRET)
    return ws


def events(n: int) -> list[Event]:
    return [Event("apply.failed", f"apply {i} failed: port {8000 + i % 1000} is taken", "shop", "prod",
                  details=(f"web: {8000 + i % 1000}", "db: 5432")) for i in range(n)]


async def yardstick(url: str, bodies: list[tuple[bytes, dict[str, str]]]) -> float:
    limit = asyncio.Semaphore(CONCURRENCY)
    async with ClientSession() as session:
        async def post(body: bytes, headers: dict[str, str]) -> None:
            async with limit, session.post(url, data=body, headers=headers) as response:
                await response.read()
                assert response.status == 200

        started = time.perf_counter()
        await asyncio.gather(*(post(b, h) for b, h in bodies))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--registry", help="registry URL (default: the workspace's SQLite file)")
    args = parser.parse_args()
    os.environ["SOPS_AGE_KEY_FILE"] = str(REPO / "examples" / "demo-age-key.txt")
    receiver = Receiver()
    url = f"http://127.0.0.1:{receiver.port}/hook"
    with tempfile.TemporaryDirectory() as tmp:
        ws = workspace(Path(tmp) / "ws", url, args.registry)
        desired = notify._state(ws)
        batch = events(args.events)
        notify.emit(ws, Event("notify.test", "warm-up"), desired=desired)  # opens the registry once

        started = time.perf_counter()
        emitted = sum(notify.emit(ws, event, desired=desired) for event in batch)
        emit_s = time.perf_counter() - started
        assert emitted == args.events, emitted

        started = time.perf_counter()
        delivered = 0
        while delivered < args.events:
            results = notify.deliver_due(ws, budget=60)
            assert results and all(r.status == "delivered" for r in results), results[:3]
            delivered += len(results)
        deliver_s = time.perf_counter() - started
        sent = receiver.count

        key = notify_http.signing_key(SECRET)
        bodies = []
        for i, event in enumerate(batch):
            body = notify_http.body_of(event)
            bodies.append((body, notify_http.headers(key, f"msg_bench_{i}", body)))
        bare_s = asyncio.run(yardstick(url, bodies))

    n = args.events
    print(f"{n} events, one webhook notifier, {CONCURRENCY} sends at a time, registry "
          f"{'given' if args.registry else 'SQLite'}")
    print(f"emit:        {emit_s:7.2f} s  ({emit_s / n * 1000:6.2f} ms per event)")
    print(f"deliver_due: {deliver_s:7.2f} s  ({n / deliver_s:7.0f} deliveries/s; {sent} received)")
    print(f"yardstick:   {bare_s:7.2f} s  ({n / bare_s:7.0f} POSTs/s, bare aiohttp, same signed bodies)")
    print(f"ratio deliver_due / yardstick: {deliver_s / bare_s:.1f}x; emit + deliver / yardstick: "
          f"{(emit_s + deliver_s) / bare_s:.1f}x")


if __name__ == "__main__":
    main()
