"""GET /events: Server-Sent Events of what the server does (`reconcile` lines of the hooks' worker and the
watch loop, `test-run` progress of the runs POST /test-suites/{suite}/run started, `health` changes after
POST /resources/services/health-check), and the in-process bus that carries them.

Producers are threads (reconciles, test runs and health rounds run outside the event loop), so `publish`
hands each event to each subscriber's loop with call_soon_threadsafe and never blocks: a subscriber whose
queue is full loses its oldest event, so a slow client cannot hold up a reconcile. An event is what a log
line or an API answer already shows; never a secret value.

Reconnecting (the SSE spec's Last-Event-ID): every event has an id, one higher than the one before, starting
at the server's start time in milliseconds (so ids increase across restarts too); the bus keeps the last
HISTORY events in a ring, and a client that comes back with a Last-Event-ID gets the events after it first,
or one `reset` event when some are no longer kept or the id is not this server's (it then reads the state
again).
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse

from reconciler.core.models import ApiToken
from reconciler.server import answers as a
from reconciler.server.answers import answers
from reconciler.server.auth import require

KEEP_ALIVE = 15.0  # seconds without an event before a comment line, so proxies keep the connection open
QUEUE_SIZE = 256  # events a subscriber may fall behind by before its oldest are dropped
HISTORY = 1000  # events kept for a client that reconnects with Last-Event-ID (a few hundred bytes each)
router = APIRouter(tags=["events"])
Reader = Annotated[ApiToken, Depends(require("read"))]


class Subscriber:
    """One client's queue, on the loop that serves it; `backlog`: the frames it missed, sent before the queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int, backlog: list[str] | None = None) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=size)
        self.dropped = 0
        self.backlog = backlog or []

    def put(self, frame: str) -> None:
        """On the subscriber's loop: the frame in, the oldest out first when the queue is full."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(frame)


def first_id() -> int:
    """The first event id of a server: its start in milliseconds, so ids keep increasing across restarts and a
    Last-Event-ID of an earlier server is older than anything this one has (a `reset`), never taken for one of
    its own events."""
    return time.time_ns() // 1_000_000


class EventBus:
    """Subscribers and the events published to them, each with an id one higher than the last; the last
    `history` events are kept for clients that reconnect with a Last-Event-ID."""

    def __init__(self, size: int = QUEUE_SIZE, history: int = HISTORY, start: int | None = None) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._first = self._next = first_id() if start is None else start
        self._ring: collections.deque[tuple[int, str]] = collections.deque(maxlen=history)

    def subscribe(self, last_event_id: str | None = None) -> Subscriber:
        """A new subscriber; with the Last-Event-ID a reconnecting client sent, the events it missed since, or a
        `reset` event when some of them are no longer kept (or the id is not one of this server's)."""
        loop = asyncio.get_running_loop()
        with self._lock:  # with publish's lock: no event is both in the backlog and the queue, none in neither
            subscriber = Subscriber(loop, self.size, self._missed(last_event_id))
            self._subscribers.add(subscriber)
        return subscriber

    def _missed(self, last_event_id: str | None) -> list[str]:
        if last_event_id is None:
            return []
        oldest = self._ring[0][0] if self._ring else self._next
        last = int(last_event_id) if last_event_id.strip().isdigit() else None
        if last is not None and oldest <= last + 1 and last < self._next:
            return [frame for id_, frame in self._ring if id_ > last]
        if last is None or last >= self._next:
            why = f"event {last_event_id.strip()[:40]!r} is not one of this server's"
        elif last < self._first:
            why = f"event {last} is from before this server started (its first event is {self._first})"
        else:
            why = (f"the events after {last} are no longer kept (this server keeps the last {self._ring.maxlen}; "
                   f"the oldest kept is {oldest})")
        data = {"last_event_id": last_event_id.strip()[:40], "oldest": oldest,
                "reason": f"{why}: some events were missed; read the state again (GET /resources/services, "
                          "/test-runs/{id}, /hooks/status)"}
        # the reset's id is the newest event's: the client is at the head now, so a later reconnect goes on from here
        return [_frame(self._next - 1, "reset", data)]

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def last_id(self) -> int:
        """The id of the newest event published (one less than the first before any): a page rendered now
        subscribes with it as its Last-Event-ID, so what happens between its render and its subscription reaches
        it too."""
        with self._lock:
            return self._next - 1

    def publish(self, name: str, data: dict[str, Any]) -> None:
        """Send event `name` with `data` (JSON) to every subscriber; from any thread, without waiting."""
        with self._lock:
            id_, self._next = self._next, self._next + 1
            frame = _frame(id_, name, data)
            self._ring.append((id_, frame))
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber.loop.call_soon_threadsafe(subscriber.put, frame)
            except RuntimeError:  # its loop closed (the server is stopping): nobody is left to read it
                self.unsubscribe(subscriber)


def _frame(id_: int, name: str, data: dict[str, Any]) -> str:
    return f"id: {id_}\nevent: {name}\ndata: {json.dumps(data, default=str)}\n\n"


def bus(request: Request) -> EventBus:
    found: EventBus = request.app.state.events
    return found


async def _stream(events: EventBus, subscriber: Subscriber, shown: Callable[[str], str]) -> AsyncIterator[str]:
    try:
        yield ": subscribed\n\n"  # at once, so a client knows it will see what happens from now on
        for frame in subscriber.backlog:  # what it missed since its Last-Event-ID, or a reset
            yield shown(frame)
        subscriber.backlog = []
        while True:
            try:
                yield shown(await asyncio.wait_for(subscriber.queue.get(), KEEP_ALIVE))
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
async def events(request: Request, _: Reader,
                 last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", description=(
                     "the id of the last event received: the events since are sent first (a browser's "
                     "EventSource sends it when it reconnects)"))] = None) -> StreamingResponse:
    """Server-Sent Events (text/event-stream): `reconcile` {"line"}, `test-run` {"run_id", "phase": started,
    case or finished, ...}, `health` {"service", "previous", "status", "reason"}; `id:` increases; a
    `: keep-alive` comment every 15 seconds without events. With Last-Event-ID the missed events come first,
    or `reset` {"last_event_id", "oldest", "reason"} when they are no longer kept (the last 1,000 are)."""
    return stream(request, last_event_id)


def stream(request: Request, last_event_id: str | None,
           shown: Callable[[str], str] = lambda frame: frame) -> StreamingResponse:
    """The bus as a text/event-stream answer (GET /events, and the dashboard's GET /ui/events with its session);
    `shown` may add frames after each event (the dashboard's names for it: server/dashboard/live.py)."""
    events = bus(request)
    subscriber = events.subscribe(last_event_id)
    return StreamingResponse(_stream(events, subscriber, shown), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/events/subscribers", response_model=None, responses=answers(a.Subscribers, errors=a.READ_ERRORS))
def subscribers(request: Request, _: Reader) -> dict[str, int]:
    """How many clients are subscribed to /events now."""
    return {"subscribers": bus(request).count()}
