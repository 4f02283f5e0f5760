"""core/notify_events: the health events of any sequence of check results, as a property. Whatever the results
and the damping, the events alternate critical, recovered, critical, ... starting with critical; a critical comes
only after failures_before_critical failures in a row, a recovered only after success_before_passing successes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.health import CRITICAL, PASSING, CheckResult, HealthRecord, check_spec, transition
from reconciler.core.notify_events import health_transitions
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
