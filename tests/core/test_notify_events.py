"""core/notify_events: the health events of any sequence of check results, as a property. Whatever the results
and the damping, the events alternate critical, recovered, critical, ... starting with critical; a critical comes
only after failures_before_critical failures in a row, a recovered only after success_before_passing successes.
A round in which many services of one project and environment go down (or come back) is one event."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.health import CRITICAL, PASSING, CheckResult, HealthRecord, check_spec, transition
from reconciler.core.notifications import Event
from reconciler.core.notify_events import MAX_DETAILS, MAX_SEPARATE, health_transitions
from reconciler.core.state import RecordedService


def service(failures: int, successes: int) -> RecordedService:
    return RecordedService(name="shop-prod-web", host="localhost", port=8001, type="app", protocol="http",
                           health={"path": "/health", "failures_before_critical": failures,
                                   "success_before_passing": successes}, project="shop", environment="prod")


def events_of(results: list[bool], failures: int, successes: int) -> list[tuple[str, int]]:
    """(kind, round) of each event over the rounds: True a passing result, False a critical one."""
    svc = service(failures, successes)
    spec = check_spec(svc, "127.0.0.1")
    record: HealthRecord | None = None
    announced: dict[str, str] = {}
    found: list[tuple[str, int]] = []
    for number, up in enumerate(results):
        result = CheckResult(svc.name, PASSING if up else CRITICAL, "HTTP 200" if up else "HTTP 500", 1.0, 0.0)
        record = transition(record, spec, result, f"round {number}")
        events, announced = health_transitions(announced, [record], {svc.name: spec}, {svc.name: svc}, None)
        found += [(event.kind, number) for event in events]
    return found


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 4), st.integers(1, 4))
def test_health_events_alternate_and_follow_the_damping(results: list[bool], failures: int, successes: int) -> None:
    found = events_of(results, failures, successes)
    kinds = [kind for kind, _ in found]
    assert kinds == ["health.critical", "health.recovered"] * (len(kinds) // 2) + ["health.critical"] * (len(kinds) % 2)
    for kind, number in found:
        streak = failures if kind == "health.critical" else successes
        assert number + 1 >= streak
        assert results[number + 1 - streak:number + 1] == [kind == "health.recovered"] * streak


def test_a_service_that_is_down_then_up_makes_one_pair_and_flapping_inside_the_damping_none() -> None:
    up, down = True, False
    assert events_of([down, up, down, up, down, down, up, down, down, up], 3, 1) == []
    assert events_of([up, down, down, down, down, down, up, down, up, up], 3, 2) == [
        ("health.critical", 3), ("health.recovered", 9)]


def round_of(count: int, up: bool) -> list[Event]:
    """The events of one round in which `count` services of shop/prod, announced critical when `up`, all
    answer `up`."""
    services = {f"web{i:03d}": RecordedService(name=f"web{i:03d}", host="localhost", port=8000 + i, type="app",
                                                protocol="http", health={"path": "/health"}, project="shop",
                                                environment="prod") for i in range(count)}
    specs = {name: check_spec(svc, "127.0.0.1") for name, svc in services.items()}
    result = PASSING if up else CRITICAL
    records = [transition(None, spec, CheckResult(name, result, "HTTP 500", 1.0, 0.0), "now")
               for name, spec in specs.items()]
    if up:
        records = [transition(r, specs[r.service], CheckResult(r.service, PASSING, "HTTP 200", 1.0, 0.0), "later")
                   for r in records]
    announced = {name: spec.target for name, spec in specs.items()} if up else {}
    events, _ = health_transitions(announced, records, specs, services, None)
    return events


@pytest.mark.parametrize(("count", "up", "summaries"), [
    (3, False, ["web000 is critical: HTTP 500", "web001 is critical: HTTP 500", "web002 is critical: HTTP 500"]),
    (MAX_SEPARATE, False, [f"web{i:03d} is critical: HTTP 500" for i in range(MAX_SEPARATE)]),
    (300, False, ["300 services are critical: web000, web001, web002, web003, web004, ..."]),
    (12, True, ["12 services are passing again: web000, web001, web002, web003, web004, ..."]),
])
def test_a_mass_transition_is_one_event_naming_the_services(count: int, up: bool, summaries: list[str]) -> None:
    events = round_of(count, up)
    assert [event.summary for event in events] == summaries
    assert {(event.project, event.environment, event.recovery) for event in events} == {("shop", "prod", up)}
    if count > MAX_SEPARATE:
        [event] = events
        assert len(event.details) == min(count, MAX_DETAILS) and event.details[0].startswith("web000 is ")
