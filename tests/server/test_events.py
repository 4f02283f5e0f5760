"""GET /events as a client sees it: a real `qrm serve` process, an httpx stream of Server-Sent Events while a
test run (tests/support/suites_api's shop suite, 3 of 5 cases passing) and health rounds happen; the token
matrix; a closed connection frees its subscription.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.server.events import EventBus
from tests.support import api_server, suites_api
from tests.support.api_server import Server
from tests.support.git_repos import services
from tests.support.suites_api import FAILING, PASSING
from tests.support.webhooks import GITHUB_SECRET, hooked


@dataclass
class Event:
    id: int
    name: str
    data: dict[str, Any]


class Stream:
    """An open GET /events: `until` reads events (skipping comments) until one matches."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines
        self.comments: list[str] = []

    def next(self) -> Event:
        fields: dict[str, str] = {}
        for line in self.lines:
            if line.startswith(":"):
                self.comments.append(line)
            elif line:
                key, _, value = line.partition(": ")
                fields[key] = value
            elif fields:
                return Event(int(fields["id"]), fields["event"], json.loads(fields["data"]))
        raise AssertionError("the stream ended")

    def until(self, done: Callable[[Event], bool]) -> list[Event]:
        seen = [self.next()]
        while not done(seen[-1]):
            seen.append(self.next())
        return seen


@contextmanager
def subscribed(server: Server, token: str, last_event_id: str | int | None = None) -> Iterator[Stream]:
    headers = {"Authorization": f"Bearer {token}",
               **({"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {})}
    with httpx.Client(timeout=httpx.Timeout(30, read=60)) as client, client.stream(
            "GET", server.url + "/events", headers=headers) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        lines = answer.iter_lines()
        assert next(lines) == ": subscribed"  # from here on, what happens reaches this client
        yield Stream(lines)


def post(server: Server, path: str, token: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return server.request("POST", path, json=body or {}, headers={"Authorization": f"Bearer {token}"})


def subscribers(server: Server, token: str) -> int:
    count: int = server.get("/events/subscribers", token).json()["subscribers"]
    return count


def test_a_test_run_streams_its_start_each_case_and_its_counts(suites_served: Server) -> None:
    tokens = suites_served.tokens
    assert post(suites_served, "/projects/shop/test-suites/generate", tokens["writer"]).status_code == 200
    with subscribed(suites_served, tokens["reader"]) as stream:
        run_id = post(suites_served, "/test-suites/shop-auto/run", tokens["writer"], {"environment": "dev"}).json()[
            "run_id"]
        events = [e for e in stream.until(lambda e: e.data.get("run_id") == run_id and e.data["phase"] == "finished")
                  if e.data.get("run_id") == run_id]
    assert {e.name for e in events} == {"test-run"}
    assert [e.data["phase"] for e in events] == ["started"] + ["case"] * (PASSING + FAILING) + ["finished"]
    assert events[0].data == {"run_id": run_id, "phase": "started", "suite": "shop-auto", "environment": "dev"}
    cases = [e.data["outcome"] for e in events[1:-1]]
    assert (cases.count("passed"), cases.count("failed")) == (PASSING, FAILING)
    finished = events[-1].data
    assert (finished["status"], finished["passed"], finished["failed"]) == ("failed", PASSING, FAILING)
    ids = [e.id for e in events]
    assert ids == sorted(set(ids))  # increasing, none repeated
    assert finished == {**{k: v for k, v in suites_served.get(f"/test-runs/{run_id}", tokens["reader"]).json()
                           .items() if k != "results"}, "phase": "finished"}


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("qrm_not-a-token", 401), ("writer", 403),
                                               ("reader", 200)])
def test_events_need_a_token_with_the_read_scope(suites_served: Server, token: str | None, status: int) -> None:
    presented = suites_served.tokens.get(token, token) if token is not None else None
    headers = {"Authorization": f"Bearer {presented}"} if presented is not None else {}
    with httpx.stream("GET", suites_served.url + "/events", headers=headers, timeout=30) as answer:
        assert answer.status_code == status
        if status != 200:
            body = json.loads(answer.read())
            assert set(body) == {"error"}
            if presented is not None:
                assert presented not in body["error"]


def test_closing_the_connection_frees_the_subscription(suites_served: Server) -> None:
    reader = suites_served.tokens["reader"]
    before = subscribers(suites_served, reader)
    with subscribed(suites_served, reader):
        assert subscribers(suites_served, reader) == before + 1
    deadline = time.monotonic() + 30
    while subscribers(suites_served, reader) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert subscribers(suites_served, reader) == before


def health_round(server: Server, stream: Stream) -> tuple[list[tuple[str, str | None, str]], list[Event]]:
    """A health round; (service, status before, status after) for each service whose status changed, as GET
    /resources/services and the round's answer show them, and the health events read until the last of them."""
    tokens = server.tokens
    before = {s["name"]: s["status"] for s in server.get("/resources/services", tokens["reader"]).json()["services"]}
    answer = post(server, "/resources/services/health-check", tokens["writer"])
    assert answer.status_code == 200, answer.text
    changed = [(s["name"], before.get(s["name"]), s["status"]) for s in answer.json()["services"]
               if before.get(s["name"]) != s["status"]]
    assert changed
    events = stream.until(lambda e: e.name == "health" and e.data["service"] == changed[-1][0])
    return changed, [e for e in events if e.name == "health"]


def test_a_health_round_streams_each_service_whose_status_changed(writes_served: Server) -> None:
    tokens = writes_served.tokens
    allocate = {"port_type": "app", "host": "forge"}
    with subscribed(writes_served, tokens["reader"]) as stream:
        for new in ("probed", "second"):
            assert post(writes_served, "/resources/ports/allocate", tokens["writer"],
                        {"service_name": new, **allocate}).status_code == 200
            changed, events = health_round(writes_served, stream)
            assert (new, "unknown") in [(name, previous) for name, previous, _ in changed]  # never checked before
            assert [(e.data["service"], e.data["previous"], e.data["status"]) for e in events] == changed
            assert all(set(e.data) == {"service", "previous", "status", "reason"} for e in events)


def test_a_push_hook_streams_its_reconcile_line(tmp_path: Path) -> None:
    push = {"ref": "refs/heads/main", "before": "0" * 40, "after": "1" * 40, "repository": {"full_name": "team/ws"}}
    with hooked(tmp_path) as h, subscribed(h.server, h.token) as stream:
        h.push(services("a", "b"), "add b")
        assert h.github("push", push).status_code == 202
        events = stream.until(lambda e: e.name == "reconcile" and e.data["line"].startswith(
            "reconcile (github push to main)"))
        line = events[-1].data["line"]
        assert ": applied;" in line
        assert line in h.server.log()  # the worker's log line, as it was logged
        assert all(GITHUB_SECRET not in json.dumps(e.data) for e in events)


@pytest.mark.parametrize(("size", "published"), [(3, 5), (3, 3), (1, 4), (8, 20)])
def test_a_subscriber_that_falls_behind_loses_its_oldest_events_and_producers_never_wait(size: int,
                                                                                         published: int) -> None:
    async def scenario() -> tuple[list[int], int]:
        bus = EventBus(size)
        subscriber = bus.subscribe()
        producer = threading.Thread(target=lambda: [bus.publish("n", {"n": n}) for n in range(published)])
        producer.start()
        await asyncio.to_thread(producer.join)  # the thread publishes all while nobody reads
        await asyncio.sleep(0)  # the loop runs the hand-overs the thread scheduled
        frames = [subscriber.queue.get_nowait() for _ in range(subscriber.queue.qsize())]
        return [json.loads(f.split("data: ", 1)[1])["n"] for f in frames], subscriber.dropped

    kept, dropped = asyncio.run(scenario())
    assert kept == list(range(published))[-size:]
    assert dropped == max(0, published - size)


# --- reconnecting with Last-Event-ID ------------------------------------------------------------------------

def a_run(server: Server) -> int:
    """Start the shop suite on dev (7 events: started, 5 cases, finished); its run id."""
    answer = post(server, "/test-suites/shop-auto/run", server.tokens["writer"], {"environment": "dev"})
    assert answer.status_code == 202, answer.text
    run_id: int = answer.json()["run_id"]
    return run_id


def finished(server: Server, run_id: int) -> None:
    """Wait until the run is over (all its events are published by then)."""
    deadline = time.monotonic() + 120
    while server.get(f"/test-runs/{run_id}", server.tokens["reader"]).json()["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def run_over(run_id: int) -> Callable[[Event], bool]:
    return lambda e: e.data.get("run_id") == run_id and e.data.get("phase") == "finished"


def test_a_client_that_reconnects_with_last_event_id_gets_what_it_missed_then_what_follows(
        suites_served: Server) -> None:
    tokens = suites_served.tokens
    assert post(suites_served, "/projects/shop/test-suites/generate", tokens["writer"]).status_code == 200
    with subscribed(suites_served, tokens["reader"]) as stream:
        first = a_run(suites_served)
        seen = stream.until(run_over(first))
    # disconnected: a second run happens meanwhile, all its events published while nobody listens
    second = a_run(suites_served)
    finished(suites_served, second)
    resume_after = seen[2]  # as if the connection broke after the third event of the first run
    with subscribed(suites_served, tokens["reader"], resume_after.id) as stream:
        missed = stream.until(run_over(second))
        third = a_run(suites_served)
        live = stream.until(run_over(third))
    assert [(e.id, e.name, e.data) for e in missed[:len(seen) - 3]] == [(e.id, e.name, e.data) for e in seen[3:]]
    of_second = missed[len(seen) - 3:]
    assert [e.data["phase"] for e in of_second] == ["started"] + ["case"] * (PASSING + FAILING) + ["finished"]
    assert {e.data["run_id"] for e in of_second} == {second}
    ids = [e.id for e in missed + live]
    assert ids == list(range(resume_after.id + 1, resume_after.id + 1 + len(ids)))  # none lost, none twice
    assert {e.data["run_id"] for e in live} == {third}


@pytest.mark.parametrize("last_event_id", ["1", "0", "not-an-id", "99999999999999999"],
                         ids=["before-this-server", "zero", "not-a-number", "from-the-future"])
def test_an_id_this_server_does_not_have_gets_a_reset_then_the_events_that_follow(
        suites_served: Server, last_event_id: str) -> None:
    tokens = suites_served.tokens
    assert post(suites_served, "/projects/shop/test-suites/generate", tokens["writer"]).status_code == 200
    with subscribed(suites_served, tokens["reader"], last_event_id) as stream:
        reset = stream.next()
        run_id = a_run(suites_served)
        after = stream.until(run_over(run_id))
    assert reset.name == "reset"
    assert reset.data["last_event_id"] == last_event_id and "some events were missed" in reset.data["reason"]
    assert ("is from before this server started" if last_event_id.isdigit() and int(last_event_id) < 10**13
            else "is not one of this server's") in reset.data["reason"]
    assert after[0].id == reset.id + 1 and after[0].data["phase"] == "started"  # the reset's id: the newest one


def test_a_restarted_server_answers_an_id_of_the_one_before_with_a_reset(tmp_path: Path) -> None:
    with suites_api.served(tmp_path) as before:
        assert post(before, "/projects/shop/test-suites/generate", before.tokens["writer"]).status_code == 200
        with subscribed(before, before.tokens["reader"]) as stream:
            last = stream.until(run_over(a_run(before)))[-1]
        assert before.stop() == 0
        after = api_server.start(before.root, api_server.environment(tmp_path / "home"))
        after.tokens = before.tokens
        try:
            with subscribed(after, after.tokens["reader"], last.id) as stream:
                reset = stream.next()
                run_id = a_run(after)  # the new server's run 1 again: the run ids are per server
                following = stream.until(run_over(run_id))
        finally:
            after.stop()
    assert reset.name == "reset" and reset.data["oldest"] > last.id  # the new server's ids start after the old's
    assert f"event {last.id} is from before this server started" in reset.data["reason"]
    assert [e.id for e in following] == list(range(reset.id + 1, reset.id + 1 + len(following)))
    assert following[0].id > last.id


@pytest.mark.parametrize(("history", "published", "last", "replayed"), [
    (5, 3, None, []),  # no Last-Event-ID: from now on only
    (5, 3, 0, [1, 2]),
    (5, 3, 2, []),  # up to date
    (3, 5, 1, [2, 3, 4]),  # the oldest kept is 2: the next one it wants
    (3, 5, 0, "reset"),  # 1 was dropped from the ring
    (3, 5, 4, []),
    (3, 5, 5, "reset"),  # never issued
])
def test_the_ring_replays_what_it_still_has_and_resets_otherwise(history: int, published: int, last: int | None,
                                                                 replayed: list[int] | str) -> None:
    async def scenario() -> list[str]:
        bus = EventBus(history=history, start=0)
        for n in range(published):
            bus.publish("n", {"n": n})
        return bus.subscribe(None if last is None else str(last)).backlog

    backlog = asyncio.run(scenario())
    if replayed == "reset":
        assert len(backlog) == 1 and "event: reset" in backlog[0] and f"id: {published - 1}\n" in backlog[0]
    else:
        assert [int(f.split("\n")[0].removeprefix("id: ")) for f in backlog] == replayed
