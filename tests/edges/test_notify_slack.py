"""The slack notifier against a real receiver on 127.0.0.1 that answers as Slack's incoming webhooks document
(body "ok", 429 with Retry-After, invalid_payload, no_service, channel_is_archived...) and rejects a message
that is not valid Block Kit as Slack does; the message stays within Slack's limits whatever the details; and at
most one message a second reaches one webhook, as the receiver's own clock sees it."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core import slack_message
from reconciler.core.notifications import Event, Outcome, Target, text
from reconciler.edges import notify_http
from reconciler.flows import notify
from tests.support import notify_receiver as rx
from tests.support.notify_workspace import ALERT, notifying_workspace
from tests.support.workspace import Workspace

EVENT = Event("tests.failed", "2 of 14 cases failed in suite smoke", "shop", "prod",
              details=("login: expected 200, got 500", "cart <total> & tax: 3 != 4"),
              link="https://qrm.example.com/ui/tests/smoke", occurred_at="2026-12-02T07:00:00Z")
TOKEN_PATH = "/services/T0CANARY/B0CANARY/canary-slack-token-77c1"
T0 = 1_800_000_000.0


def target(receiver: rx.HttpReceiver) -> Target:
    return Target(notifier="team", provider="slack", url=receiver.url(TOKEN_PATH))


def send(receiver: rx.HttpReceiver, event: Event = EVENT) -> Outcome:
    return asyncio.run(notify_http.send_slack(target(receiver), event, "msg_1", 5.0))


def test_slack_receives_a_fallback_line_and_valid_blocks_with_everything_a_reader_needs() -> None:
    with rx.http_receiver(slack=True) as receiver:
        outcome = send(receiver)
    assert outcome.status == "delivered", outcome.reason
    [request] = receiver.seen
    assert request.path == TOKEN_PATH
    assert request.headers["Content-Type"].startswith("application/json")
    payload = request.json()
    assert rx.block_kit_problems(payload) == []
    assert payload["text"] == text(EVENT).splitlines()[0]
    assert payload["text"] == "✖ tests.failed shop/prod: 2 of 14 cases failed in suite smoke"
    header, summary, fields, *rest = payload["blocks"]
    assert header["text"]["text"] == "✖ tests.failed shop/prod"
    assert summary["text"]["text"] == "2 of 14 cases failed in suite smoke"
    assert [f["text"] for f in fields["fields"]] == ["*Project*\nshop", "*Environment*\nprod", "*Severity*\n✖ critical"]
    details = [b for b in rest if b["type"] == "section"]
    # mrkdwn reads <...> as a link and & as an entity: a case name shows as written
    assert details[0]["text"]["text"] == "• login: expected 200, got 500\n• cart &lt;total&gt; &amp; tax: 3 != 4"
    [button] = next(b for b in rest if b["type"] == "actions")["elements"]
    assert button["url"] == EVENT.link


@pytest.mark.parametrize(("event", "headline", "severity"), [
    (Event("health.recovered", "web answers again", "shop", "prod", recovery=True), "✔ health.recovered shop/prod",
     "✔ recovered"),
    (Event("drift.detected", "2 services drifted", "shop"), "⚠ drift.detected shop", "⚠ warning"),
    (Event("secret.rotated", "DB_PASSWORD rotated"), "ℹ secret.rotated", "ℹ info"),
])
def test_the_headline_and_severity_say_what_kind_of_news_it_is(event: Event, headline: str, severity: str) -> None:
    payload = slack_message.message(event)
    assert rx.block_kit_problems(payload) == []
    assert payload["blocks"][0]["text"]["text"] == headline
    assert payload["blocks"][2]["fields"][-1]["text"] == f"*Severity*\n{severity}"
    assert not any(block["type"] == "actions" for block in payload["blocks"])  # no link, no button


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_characters="•…"), min_size=1, max_size=4000), max_size=400))
def test_any_details_fit_slacks_limits_and_every_line_is_shown_or_counted(details: list[str]) -> None:
    payload = slack_message.message(Event("tests.failed", "many cases failed", "shop", "prod",
                                         details=tuple(details), link="https://qrm.example.com/ui"))
    assert rx.block_kit_problems(payload) == []
    body = "\n".join(block["text"]["text"] for block in payload["blocks"][3:] if block["type"] == "section")
    shown = body.count("• ")  # a bullet per line shown (escaping turns no text into "• ")
    more = int(body.rsplit("… and ", 1)[1].split()[0]) if "… and " in body and shown < len(details) else 0
    assert shown + more == len(details)


def test_many_failing_cases_end_in_and_n_more() -> None:
    details = tuple(f"case {n}: " + "x" * 200 for n in range(2000))
    payload = slack_message.message(Event("tests.failed", "2000 cases failed", "shop", "prod", details=details))
    assert len(payload["blocks"]) == slack_message.MAX_BLOCKS
    shown = sum(block["text"]["text"].count("• ") for block in payload["blocks"][3:])
    assert 500 < shown < 2000
    assert payload["blocks"][-1]["text"]["text"].endswith(f"• case {shown - 1}: {'x' * 200}\n… and {2000 - shown} more")


@pytest.mark.parametrize(("answer", "status", "words", "retry_after"), [
    (rx.SLACK_OK, "delivered", "answered 200 ok", None),
    (rx.SLACK_RATE_LIMITED, "retry", "answered 429 rate_limited", 7.0),
    (rx.SLACK_SERVER_ERROR, "retry", "answered 500", None),
    (rx.SLACK_INVALID_PAYLOAD, "failed", "answered 400 invalid_payload", None),
    (rx.SLACK_ACTION_PROHIBITED, "failed", "answered 403 action_prohibited", None),  # an admin rule: not gone
    (rx.SLACK_NO_SERVICE, "gone", "answered 404 no_service", None),
    (rx.SLACK_CHANNEL_ARCHIVED, "gone", "answered 410 channel_is_archived", None),
    (rx.SLACK_INVALID_TOKEN, "gone", "answered 403 invalid_token", None),
])
def test_each_slack_answer_becomes_its_outcome(answer: rx.Answer, status: str, words: str,
                                                retry_after: float | None) -> None:
    with rx.http_receiver(answers=[answer]) as receiver:
        outcome = send(receiver)
    assert (outcome.status, outcome.retry_after) == (status, retry_after)
    assert outcome.reason == f"http://127.0.0.1:{receiver.port} {words}" + (
        ": the incoming webhook is no longer there" if status == "gone" else "")


def test_a_webhook_nobody_listens_on_is_retried_and_a_non_http_url_is_not() -> None:
    refused = asyncio.run(notify_http.send_slack(Target("team", "slack", url=f"http://127.0.0.1:{rx.free_port()}/x"),
                                            EVENT, "msg_1", 5.0))
    assert refused.status == "retry" and "cannot connect to http://127.0.0.1:" in refused.reason
    wrong = asyncio.run(notify_http.send_slack(Target("team", "slack", url="hooks.slack.com/services/T/B/x"),
                                          EVENT, "msg_1", 5.0))
    assert wrong == Outcome("failed", "the notifier's URL is not an http(s) URL")


def test_messages_sent_at_once_reach_one_webhook_a_second_apart() -> None:
    async def burst(receiver: rx.HttpReceiver, other: rx.HttpReceiver) -> list[Outcome]:
        sends = [notify_http.send_slack(target(receiver), EVENT, f"msg_{n}", 10.0) for n in range(3)]
        sends.append(notify_http.send_slack(target(other), EVENT, "msg_other", 10.0))
        return list(await asyncio.gather(*sends))

    with rx.http_receiver(slack=True) as receiver, rx.http_receiver(slack=True) as other:
        outcomes = asyncio.run(burst(receiver, other))
    assert [o.status for o in outcomes] == ["delivered"] * 4
    arrivals = [seen.at for seen in receiver.seen]
    # the receiver's own clock (a little less than 1 s allows for the jitter of a loaded machine; unpaced, the
    # three arrive within milliseconds)
    assert all(later - earlier >= 0.8 for earlier, later in itertools.pairwise(arrivals))
    # another webhook has a pace of its own: sharing one, the fourth send would have waited for the third slot (3 s)
    assert abs(other.seen[0].at - arrivals[0]) < 2.0


SLACK_NOTIFIER = "kind: Notifier\nname: ops\nprovider: slack\nurl: secret:OPS_HOOK_URL\n"


def test_the_pace_holds_across_delivery_passes_and_429_is_retried_after_slacks_retry_after(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    with rx.http_receiver(slack=True, answers=[rx.SLACK_OK, rx.SLACK_RATE_LIMITED]) as receiver:
        ws = notifying_workspace(workspace, monkeypatch, receiver.url(TOKEN_PATH), notifiers=SLACK_NOTIFIER,
                                 alert=ALERT)
        notify.emit(ws, Event("apply.failed", "port 8001 is taken", "shop", "prod"), now=T0)
        assert [r.status for r in notify.deliver_due(ws, now=T0)] == ["delivered"]
        notify.emit(ws, Event("drift.detected", "web drifted", "shop", "prod"), now=T0)
        [limited] = notify.deliver_due(ws, now=T0)  # the next pass: its send waits for the webhook's slot
        assert (limited.status, limited.next_attempt_at) == ("retry", T0 + 7)  # Retry-After 7 > backoff 1
        assert notify.deliver_due(ws, now=T0 + 6) == []
        assert [r.status for r in notify.deliver_due(ws, now=T0 + 7)] == ["delivered"]
    arrivals = [seen.at for seen in receiver.seen]
    assert len(arrivals) == 3
    assert all(later - earlier >= 0.8 for earlier, later in itertools.pairwise(arrivals))
    assert [seen.json()["text"] for seen in receiver.seen] == [
        "✖ apply.failed shop/prod: port 8001 is taken", "⚠ drift.detected shop/prod: web drifted",
        "⚠ drift.detected shop/prod: web drifted"]
