"""The names the dashboard's pages listen for on GET /ui/events (server/dashboard/live.py): after a `test-run`
event of run N, `test-run-N` (its run page), and when it finished, `test-run-N-finished` (the run page stops
listening) and `test-run-finished` (the Overview, a suite's page); every other event as the bus sent it. And a
page's subscription from the bus's newest event at its render (`after`): what happened in between reaches it."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest

from reconciler.server.dashboard.live import page_frames
from reconciler.server.events import _frame
from tests.support.api_server import Server


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


def test_a_page_subscribed_after_its_render_gets_what_happened_in_between_with_the_names_it_listens_for(
        suites_served: Server) -> None:
    tokens = suites_served.tokens
    reader = {"Authorization": f"Bearer {tokens['reader']}"}
    writer = {"Authorization": f"Bearer {tokens['writer']}"}
    rendered = suites_served.get("/ui/", headers=reader)
    found = re.search(r'sse-connect="/ui/events\?after=(\d+)"', rendered.text)
    assert rendered.status_code == 200 and found is not None, rendered.text[:2000]
    after = int(found.group(1))
    # between the render and the subscription, a whole run happens
    assert suites_served.request("POST", "/projects/shop/test-suites/generate", headers=writer).status_code == 200
    started = suites_served.request("POST", "/test-suites/shop-auto/run", json={"environment": "dev"}, headers=writer)
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    deadline = time.monotonic() + 120
    while suites_served.get(f"/test-runs/{run_id}", tokens["reader"]).json()["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    text = ""
    with httpx.stream("GET", f"{suites_served.url}/ui/events?after={after}", headers=reader,
                      timeout=httpx.Timeout(30, read=60)) as answer:
        assert answer.status_code == 200
        last = ""
        for line in answer.iter_lines():
            text += line + "\n"
            if line.startswith("event: "):
                last = line
            elif not line and last == "event: test-run-finished":  # that frame's end
                break
    shown = events_of("\n\n".join(block for block in text.split("\n\n") if not block.startswith(":")) + "\n")
    bus = [(int(id_), name, data) for id_, name, data in shown if id_ is not None]
    assert [id_ for id_, _, _ in bus] == list(range(after + 1, after + 1 + len(bus)))  # from the render on, none lost
    ours = [data["phase"] for _, name, data in bus if name == "test-run" and data["run_id"] == run_id]
    assert ours[0] == "started" and ours[-1] == "finished"
    names = [name for _, name, _ in shown]
    assert names.count(f"test-run-{run_id}") == len(ours)
    assert names[-3:] == [f"test-run-{run_id}", f"test-run-{run_id}-finished", "test-run-finished"]
