"""Webhook receivers on 127.0.0.1 for the notification tests: a real aiohttp.web server in a thread of its own.

Every delivery is verified with the `standardwebhooks` package (an implementation independent of qrm's) and
recorded in `Receiver.received`; `answers` scripts what the next requests get (status, headers), then 200.
`down()` and `up()` stop and start the server on the same port (a receiver that is down, then comes back).
`black_hole()` accepts connections and never answers, counting them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook


@dataclass(frozen=True)
class Delivery:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    verified: bool  # the standardwebhooks package accepted the signature
    answered: int
    arrived: float  # time.monotonic() when it arrived

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    secret: str
    port: int = 0
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Delivery] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def verified(self) -> list[Delivery]:
        return [d for d in self.received if d.verified and d.answered == 200]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            Webhook(self.secret).verify(body, headers)
            verified = True
        except Exception:  # the package's WebhookVerificationError, or a header missing
            verified = False
        status, extra = self.answers.pop(0) if self.answers else (200, {})
        self.received.append(Delivery(request.path, request.query_string, headers, body, verified, status,
                                      time.monotonic()))
        return web.Response(status=status, headers=extra, text="ok" if status == 200 else "no")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def up(self) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def down(self) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)


@contextlib.contextmanager
def receiver(secret: str) -> Iterator[Receiver]:
    """A receiver verifying with `secret` (whsec_...), up on a free port of 127.0.0.1."""
    found = Receiver(secret)
    loop = asyncio.new_event_loop()
    found._loop = loop
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        found.up()
        yield found
    finally:
        found.down()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@dataclass
class BlackHole:
    port: int = 0
    connections: int = 0


@contextlib.contextmanager
def black_hole() -> Iterator[BlackHole]:
    """A TCP server on 127.0.0.1 that accepts every connection, reads, and never answers."""
    hole = BlackHole()
    loop = asyncio.new_event_loop()
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hole.connections += 1
        held.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass

    async def start() -> asyncio.Server:
        server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        hole.port = server.sockets[0].getsockname()[1]
        return server

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)

    async def stop() -> None:
        server.close()
        for writer in held:
            writer.close()

    try:
        yield hole
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
