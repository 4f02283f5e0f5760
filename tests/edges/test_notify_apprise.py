"""The apprise notifier through the real apprise library to a real receiver on 127.0.0.1 (apprise's json:// and
form:// services post to any HTTP endpoint): what apprise posts, how its yes/no becomes an outcome, an URL it
does not understand, and reasons and logs that never show the URL's credential parts."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs

import pytest

from reconciler.core.notifications import Event, Outcome, Target, text
from reconciler.edges import notify_apprise
from tests.support import notify_receiver as rx

TOKEN = "canary-apprise-token-1f9d"
EVENT = Event("deploy.blocked", "the gate stopped the apply of shop/prod: smoke failed", "shop", "prod",
              details=("smoke: 2 of 14 cases failed",), link="https://qrm.example.com/ui/plan")


def send(url: str, event: Event = EVENT) -> Outcome:
    return asyncio.run(notify_apprise.send(Target("chat", "apprise", url=url), event, "msg_1", 10.0))


@pytest.mark.parametrize(("event", "notify_type"), [
    (EVENT, "failure"),
    (Event("tests.flaky", "2 cases flaky", "shop", "prod"), "warning"),
    (Event("secret.rotated", "DB_PASSWORD rotated"), "info"),
    (Event("health.recovered", "web answers again", "shop", "prod", recovery=True), "success"),
])
def test_apprise_posts_the_headline_the_text_and_a_type_by_severity(event: Event, notify_type: str) -> None:
    with rx.http_receiver() as receiver:
        outcome = send(f"json://127.0.0.1:{receiver.port}/hooks/{TOKEN}", event)
    assert outcome == Outcome("delivered", f"apprise delivered to json://127.0.0.1:{receiver.port}")
    [request] = receiver.seen
    assert request.path == f"/hooks/{TOKEN}"
    body = request.json()
    assert (body["title"], body["message"], body["type"]) == (text(event).splitlines()[0], text(event), notify_type)


def test_the_form_scheme_posts_the_same_as_form_fields() -> None:
    with rx.http_receiver() as receiver:
        assert send(f"form://127.0.0.1:{receiver.port}/in/{TOKEN}").status == "delivered"
    fields = {key: values[0] for key, values in parse_qs(receiver.seen[0].body.decode()).items()}
    assert fields["title"] == "✖ deploy.blocked shop/prod: the gate stopped the apply of shop/prod: smoke failed"
    assert fields["message"] == text(EVENT)


@pytest.mark.parametrize(("answer", "status", "reason"), [
    ((500, "", {}), "retry", "apprise could not deliver to json://127.0.0.1:{port}"),
    ((404, "", {}), "retry", "apprise could not deliver to json://127.0.0.1:{port}"),  # apprise says only no
])
def test_a_no_from_apprise_is_retried(answer: rx.Answer, status: str, reason: str) -> None:
    with rx.http_receiver(answers=[answer]) as receiver:
        outcome = send(f"json://127.0.0.1:{receiver.port}/hooks/{TOKEN}")
    assert (outcome.status, outcome.reason) == (status, reason.format(port=receiver.port))


def test_a_receiver_that_is_down_is_retried() -> None:
    port = rx.free_port()
    assert send(f"json://127.0.0.1:{port}/hooks/{TOKEN}") == Outcome(
        "retry", f"apprise could not deliver to json://127.0.0.1:{port}")


@pytest.mark.parametrize("url", [f"nosuchservice://{TOKEN}@example.com/x", f"{TOKEN}", "json://"])
def test_an_url_apprise_does_not_understand_fails_at_once(url: str) -> None:
    outcome = send(url)
    assert outcome.status == "failed"
    assert outcome.reason.startswith("apprise does not understand the URL")
    assert TOKEN not in outcome.reason


@pytest.mark.parametrize(("url", "service", "shown"), [
    ("json://hooks.example.com:8443/path/t0ken", "JSON", "json://hooks.example.com:8443"),
    ("tgram://123456789:AAbbCCddEEff/-100123", "Telegram", "tgram:// (Telegram)"),  # the host is the bot token
    ("discord://1234567890/webhooktoken", "Discord", "discord:// (Discord)"),
    ("mailto://user:pass@example.com", "", "mailto://"),
    ("no scheme at all", "", "the notifier's URL"),
])
def test_a_reason_names_the_scheme_and_service_and_only_an_address_host(url: str, service: str, shown: str) -> None:
    assert notify_apprise.shown(url, service) == shown


def test_apprise_and_urllib3_log_no_part_of_the_url(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with rx.http_receiver(answers=[(500, "", {})]) as receiver:
        send(f"json://user:canary-pass-77@127.0.0.1:{receiver.port}/hooks/{TOKEN}?:extra={TOKEN}x")
        send(f"json://127.0.0.1:{receiver.port}/hooks/{TOKEN}")
    send(f"nosuchservice://{TOKEN}/x")  # apprise logs an unparseable URL on its error level
    ours = [r for r in caplog.records if r.name.split(".")[0] in ("apprise", "urllib3")]
    assert any("JSON" in r.getMessage() for r in ours)  # apprise did log (at debug) what it did
    assert [r.getMessage() for r in ours if TOKEN in r.getMessage() or "canary-pass-77" in r.getMessage()] == []
