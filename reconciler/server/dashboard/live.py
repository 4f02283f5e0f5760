"""What the dashboard's live parts listen to on GET /ui/events: the bus's events as GET /events sends them, each
followed by the names a page can wait for, and where a page starts listening.

htmx's SSE extension triggers a fragment fetch by event name alone (hx-trigger="sse:NAME"), and a page only cares
about some events of a kind: a run page about its own run, the Overview about runs that ended. So after a
`test-run` event of run N the stream adds an event `test-run-N` (which the run page of N refetches on) and, when
the run has finished, `test-run-N-finished` (its run page stops listening: sse-close) and `test-run-finished`
(the Overview and a suite page refetch). The filter is a name the server gives, not script in the page; the
bus and GET /events stay as the API documents them. The added frames have no `id:` line, so a browser's
Last-Event-ID, and with it a reconnect's replay, stays the bus event's.

A page is rendered from the state at one moment and subscribes a moment later: it passes the bus's newest id at
its render (`after`), and the stream starts with the events since (events.EventBus.subscribe), so an event in
between, such as a short run's end, is not lost.
"""

from __future__ import annotations

import json

from fastapi import Request

from reconciler.server.events import bus

RUN_EVENT = "test-run"
FINISHED = "test-run-finished"


def run_event(run_id: int) -> str:
    """The name under which run `run_id`'s events reach its page."""
    return f"{RUN_EVENT}-{run_id}"


def run_finished(run_id: int) -> str:
    return f"{RUN_EVENT}-{run_id}-finished"


def page_frames(frame: str) -> str:
    """`frame` (one event of the bus), and after a `test-run` event the names its pages listen for."""
    lines = frame.split("\n")
    if len(lines) < 3 or lines[1] != f"event: {RUN_EVENT}" or not lines[2].startswith("data: "):
        return frame
    data = lines[2].removeprefix("data: ")
    try:
        found = json.loads(data)
        run_id = int(found["run_id"])
    except (ValueError, KeyError, TypeError):  # not a run's event (never from server/suites.py): as it is
        return frame
    names = [run_event(run_id)]
    if found.get("phase") == "finished":
        names += [run_finished(run_id), FINISHED]
    return frame + "".join(f"event: {name}\ndata: {data}\n\n" for name in names)


def after(request: Request) -> int:
    """The id a page rendered now subscribes after (its sse-connect URL's `after`)."""
    return bus(request).last_id()
