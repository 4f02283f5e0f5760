"""core/notifications and the Notifier and Alert kinds: which alert takes which event, the dedupe key, the
retry schedule, the one-message text, and the fields each provider needs."""

from __future__ import annotations

import asyncio
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from reconciler.core import models
from reconciler.core.models import MANIFEST_KINDS, Alert, Notifier
from reconciler.core.notifications import (
    BACKOFF_SECONDS,
    EVENT_KINDS,
    Event,
    Outcome,
    Target,
    dedupe_key,
    matches,
    never_raising,
    next_attempt_delay,
    text,
)


def alert(**fields: object) -> Alert:
    return Alert.model_validate({"kind": "Alert", "name": "a", "events": ["*"], "notifiers": ["ops"], **fields})


def test_the_alert_event_kinds_are_the_event_kinds() -> None:
    assert set(typing.get_args(models.EventKind)) == {"*", *EVENT_KINDS}
    assert {"Notifier", "Alert"} <= set(MANIFEST_KINDS)


@pytest.mark.parametrize(("fields", "event", "taken"), [
    ({}, Event("apply.failed", "x", "shop", "prod"), True),
    ({}, Event("apply.succeeded", "x", "shop", "prod"), False),  # info, below the default min_severity
    ({"min_severity": "info"}, Event("apply.succeeded", "x", "shop", "prod"), True),
    ({"min_severity": "critical"}, Event("drift.detected", "x", "shop", "prod"), False),
    ({"min_severity": "critical"}, Event("health.recovered", "x", "shop", "prod", recovery=True), True),
    ({"events": ["tests.failed"]}, Event("apply.failed", "x", "shop", "prod"), False),
    ({"events": ["tests.failed"]}, Event("tests.failed", "x", "shop", "prod"), True),
    ({"projects": ["blog"]}, Event("apply.failed", "x", "shop", "prod"), False),
    ({"projects": ["shop"], "environments": ["prod"]}, Event("apply.failed", "x", "shop", "prod"), True),
    ({"environments": ["staging"]}, Event("apply.failed", "x", "shop", "prod"), False),
    ({}, Event("drift.detected", "x", "shop", "prod", severity="info"), False),  # the emitter lowered it
])
def test_which_alert_takes_which_event(fields: dict[str, object], event: Event, taken: bool) -> None:
    assert matches(alert(**fields), event) is taken


def test_an_event_fills_its_default_severity_and_round_trips_through_its_payload() -> None:
    event = Event("tests.failed", "suite shop-auto failed on prod", "shop", "prod", details=("login: 500",),
                  link="https://qrm.example.com/ui/tests/shop-auto", occurred_at="2026-01-01T00:00:00Z")
    assert event.severity == "critical"
    payload = event.as_payload()
    assert payload["type"] == "tests.failed" and payload["data"]["details"] == ["login: 500"]
    assert Event.from_payload(payload) == event


@pytest.mark.parametrize(("kind", "severity", "problem"), [
    ("apply.exploded", "", "unknown event kind 'apply.exploded'"),
    ("apply.failed", "fatal", "unknown severity 'fatal'"),
])
def test_an_event_of_an_unknown_kind_or_severity_is_refused(kind: str, severity: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Event(kind, "x", severity=severity)


def test_the_dedupe_key_is_the_emitters_key_else_kind_project_environment_and_summary() -> None:
    base = Event("health.critical", "web is down", "shop", "prod")
    assert dedupe_key(base) == dedupe_key(Event("health.critical", "web is down", "shop", "prod", details=("a",)))
    assert dedupe_key(base) != dedupe_key(Event("health.critical", "web is down", "shop", "staging"))
    assert dedupe_key(Event("tests.failed", "one", key="k")) == dedupe_key(Event("tests.failed", "two", key="k"))


def test_the_backoff_is_1s_5s_30s_2min_10min_then_the_delivery_fails() -> None:
    assert [next_attempt_delay(n, None) for n in range(1, 7)] == [1, 5, 30, 120, 600, None]
    assert BACKOFF_SECONDS == (1, 5, 30, 120, 600)


@given(attempts=st.integers(1, 5), retry_after=st.floats(0, 1e7, allow_nan=False))
def test_a_retry_waits_at_least_retry_after_up_to_an_hour(attempts: int, retry_after: float) -> None:
    delay = next_attempt_delay(attempts, retry_after)
    assert delay is not None
    assert delay >= min(retry_after, 3600) and delay >= BACKOFF_SECONDS[attempts - 1]


def test_the_text_of_an_event_has_its_headline_details_and_link() -> None:
    event = Event("apply.failed", "port 8001 is taken", "shop", "prod", details=("web: 8001",),
                  link="https://q.example/ui/history")
    assert text(event) == "✖ apply.failed shop/prod: port 8001 is taken\n  web: 8001\nhttps://q.example/ui/history"
    assert text(Event("health.recovered", "web is up", "shop", "prod", recovery=True)).startswith(
        "✔ health.recovered shop/prod: web is up")


def test_a_targets_repr_shows_no_address_or_credential() -> None:
    target = Target("ops", "webhook", url="https://h.example/t0ken", signing_secret="whsec_c2VjcmV0",
                    password="hunter2")
    assert not any(value in repr(target) for value in ("t0ken", "whsec_", "hunter2"))


NOTIFIER_CASES = [
    ({"provider": "webhook", "url": "secret:U", "signing_secret": "secret:S"}, None),
    ({"provider": "webhook", "url": "secret:U"}, ("signing_secret", "webhook notifiers need signing_secret")),
    ({"provider": "slack"}, ("url", "slack notifiers need url")),
    ({"provider": "slack", "url": "secret:U", "signing_secret": "secret:S"},
     ("signing_secret", "signing_secret is for webhook notifiers, not slack")),
    ({"provider": "email", "smtp_host": "mail.example.com", "sender": "qrm@example.com", "to": ["ops@example.com"]},
     None),
    ({"provider": "email", "smtp_host": "mail.example.com", "sender": "qrm@example.com"},
     ("to", "email notifiers need to")),
    ({"provider": "email", "smtp_host": "m.example", "sender": "q@example.com", "to": ["o@example.com"],
      "username": "q"}, ("password", "username and password go together")),
    ({"provider": "apprise", "url": "secret:U", "smtp_port": 25}, ("smtp_port", "smtp_port is for email notifiers")),
]


@pytest.mark.parametrize(("fields", "problem"), NOTIFIER_CASES)
def test_each_provider_says_which_fields_it_needs(fields: dict[str, object], problem: tuple[str, str] | None) -> None:
    document = {"kind": "Notifier", "name": "ops", **fields}
    if problem is None:
        Notifier.model_validate(document)
        return
    with pytest.raises(ValidationError) as error:
        Notifier.model_validate(document)
    assert problem[1] in str(error.value)


def test_an_alert_on_an_event_below_its_min_severity_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"apply\.succeeded has severity info, below min_severity warning"):
        alert(events=["apply.failed", "apply.succeeded"])
    assert alert(events=["health.critical", "health.recovered"]).events == ["health.critical", "health.recovered"]


@given(kind=st.sampled_from(sorted(EVENT_KINDS)), summary=st.text(max_size=80), project=st.text(max_size=20),
       severity=st.sampled_from(["", "info", "warning", "critical"]),
       details=st.lists(st.text(max_size=40), max_size=4), recovery=st.booleans(), link=st.text(max_size=40))
def test_every_event_round_trips_through_its_payload(kind: str, summary: str, project: str, severity: str,
                                                     details: list[str], recovery: bool, link: str) -> None:
    event = Event(kind, summary, project, "prod", severity, tuple(details), link=link, recovery=recovery)
    assert "\n" not in event.summary
    assert Event.from_payload(event.as_payload()) == event


async def _answers(outcome: Outcome) -> Outcome:
    return outcome


async def _raises(error: BaseException) -> Outcome:
    raise error


@pytest.mark.parametrize(("send", "expected"), [
    (lambda: _answers(Outcome("gone", "x answered 410 Gone")), Outcome("gone", "x answered 410 Gone")),
    (lambda: _raises(KeyError("https://hooks.example.com/T/B/sekrit")), Outcome("retry", "https://x: KeyError")),
    (lambda: _raises(RuntimeError("password=hunter2")), Outcome("retry", "https://x: RuntimeError")),
])
def test_a_send_never_raises_and_its_reason_names_only_the_exceptions_type(
        send: typing.Callable[[], typing.Awaitable[Outcome]], expected: Outcome) -> None:
    assert asyncio.run(never_raising(send(), "https://x")) == expected


def test_cancelling_a_send_is_not_turned_into_an_outcome() -> None:
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(never_raising(_raises(asyncio.CancelledError()), "https://x"))
