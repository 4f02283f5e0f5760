"""GET /events: Server-Sent Events of what the server does (`reconcile` lines of the hooks' worker and the
watch loop, `test-run` progress of the runs POST /test-suites/{suite}/run started, `health` changes after
POST /resources/services/health-check), and the in-process bus that carries them.

Producers are threads (reconciles, test runs and health rounds run outside the event loop), so `publish`
hands each event to each subscriber's loop with call_soon_threadsafe and never blocks: a subscriber whose
queue is full loses its oldest event, so a slow client cannot hold up a reconcile. An event is what a log
line or an API answer already shows; never a secret value.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from reconciler.core.models import ApiToken
from reconciler.server import answers as a
from reconciler.server.answers import answers
from reconciler.server.auth import require

KEEP_ALIVE = 15.0  # seconds without an event before a comment line, so proxies keep the connection open
QUEUE_SIZE = 256  # events a subscriber may fall behind by before its oldest are dropped
router = APIRouter(tags=["events"])
Reader = Annotated[ApiToken, Depends(require("read"))]


class Subscriber:
    """One client's queue, on the loop that serves it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=size)
        self.dropped = 0

    def put(self, frame: str) -> None:
        """On the subscriber's loop: the frame in, the oldest out first when the queue is full."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(frame)


class EventBus:
    """Subscribers and the events published to them, each with an id one higher than the last."""

    def __init__(self, size: int = QUEUE_SIZE) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._ids = itertools.count(1)

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber(asyncio.get_running_loop(), self.size)
        with self._lock:
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def publish(self, name: str, data: dict[str, Any]) -> None:
        """Send event `name` with `data` (JSON) to every subscriber; from any thread, without waiting."""
        with self._lock:
            frame = f"id: {next(self._ids)}\nevent: {name}\ndata: {json.dumps(data, default=str)}\n\n"
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber.loop.call_soon_threadsafe(subscriber.put, frame)
            except RuntimeError:  # its loop closed (the server is stopping): nobody is left to read it
                self.unsubscribe(subscriber)


def bus(request: Request) -> EventBus:
    found: EventBus = request.app.state.events
    return found


async def _stream(events: EventBus, subscriber: Subscriber) -> AsyncIterator[str]:
    try:
        yield ": subscribed\n\n"  # at once, so a client knows it will see what happens from now on
        while True:
            try:
                yield await asyncio.wait_for(subscriber.queue.get(), KEEP_ALIVE)
            except TimeoutError:
                yield ": keep-alive\n\n"
    finally:  # the client went away (Starlette cancels the stream) or the server stops: free the queue
        events.unsubscribe(subscriber)


class EventStream(StreamingResponse):
    """A stream of Server-Sent Events (its media type is what /openapi.json names for GET /events)."""

    media_type = "text/event-stream"


@router.get("/events", response_class=EventStream,
            response_model=None, responses=answers(media="text/event-stream", errors=a.READ_ERRORS, description=(
    "Server-Sent Events: `id:`, `event:` (reconcile, test-run, health, reset) and `data:` (one JSON object) "
    "lines, then a blank line")))
async def events(request: Request, _: Reader) -> StreamingResponse:
    """Server-Sent Events (text/event-stream): `reconcile` {"line"}, `test-run` {"run_id", "phase": started,
    case or finished, ...}, `health` {"service", "previous", "status", "reason"}; `id:` increases; a
    `: keep-alive` comment every 15 seconds without events."""
    events = bus(request)
    subscriber = events.subscribe()
    return StreamingResponse(_stream(events, subscriber), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/events/subscribers", response_model=None, responses=answers(a.Subscribers, errors=a.READ_ERRORS))
def subscribers(request: Request, _: Reader) -> dict[str, int]:
    """How many clients are subscribed to /events now."""
    return {"subscribers": bus(request).count()}
