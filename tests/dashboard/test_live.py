"""The names the dashboard's pages listen for on GET /ui/events (server/dashboard/live.py): after a `test-run`
event of run N, `test-run-N` (its run page), and when it finished, `test-run-N-finished` (the run page stops
listening) and `test-run-finished` (the Overview, a suite's page); every other event as the bus sent it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reconciler.server.dashboard.live import page_frames
from reconciler.server.events import _frame


def events_of(text: str) -> list[tuple[str | None, str, dict[str, Any]]]:
    """(id, event, data) of each frame of an SSE text."""
    found = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        found.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
    return found


@pytest.mark.parametrize(("name", "data", "added"), [
    ("test-run", {"run_id": 7, "phase": "started", "suite": "s"}, ["test-run-7"]),
    ("test-run", {"run_id": 7, "phase": "case", "id": "home"}, ["test-run-7"]),
    ("test-run", {"run_id": 12, "phase": "finished", "status": "failed"},
     ["test-run-12", "test-run-12-finished", "test-run-finished"]),
    ("health", {"service": "web", "previous": "passing", "status": "critical"}, []),
    ("reconcile", {"line": "applied 2 changes"}, []),
    ("reset", {"last_event_id": "3", "oldest": 9, "reason": "missed"}, []),
    ("test-run", {"phase": "case"}, []),  # no run id: nothing to name it by
])
def test_a_run_event_is_followed_by_the_names_its_pages_listen_for(name: str, data: dict[str, Any],
                                                                  added: list[str]) -> None:
    shown = events_of(page_frames(_frame(41, name, data)))
    assert shown[0] == ("41", name, data)  # the bus's event first, as GET /events sends it
    assert [event for _, event, _ in shown[1:]] == added
    assert all(id_ is None and same == data for id_, _, same in shown[1:])  # no id: Last-Event-ID stays the bus's
