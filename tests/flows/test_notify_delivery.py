"""flows/notify.deliver_due against real receivers on 127.0.0.1, on SQLite and PostgreSQL registries: every
delivery verified by the `standardwebhooks` package; a receiver that is down then back gets the event exactly
once; 429 with Retry-After is waited out; 410 disables the notifier; 400 is not retried; the sixth failure is
the last. Time is stepped with `now=` through the backoff, never slept through."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from reconciler.core.notifications import Event, Outcome, Target
from reconciler.flows import notify
from reconciler.flows.workspace import Workspace as Ws
from tests.support.notify_receiver import Receiver, black_hole, receiver
from tests.support.notify_workspace import SIGNING_SECRET, hook_url, notifier, notifying_workspace
from tests.support.workspace import Workspace

T0 = 1_800_000_000.0
FAILED = Event("apply.failed", "port 8001 is taken", "shop", "prod", details=("web: 8001",))


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver(SIGNING_SECRET) as found:
        yield found


@pytest.fixture
def ws(workspace: Workspace, monkeypatch: pytest.MonkeyPatch, hook: Receiver, registry_url: str) -> Ws:
    return replace(notifying_workspace(workspace, monkeypatch, hook_url(hook.port)), registry_override=registry_url)


def statuses(results: list[notify.DeliveryResult]) -> list[str]:
    return [r.status for r in results]


def test_a_delivery_is_signed_as_standard_webhooks_says(ws: Ws, hook: Receiver) -> None:
    assert notify.emit(ws, FAILED, now=T0) == 1
    assert statuses(notify.deliver_due(ws, now=T0)) == ["delivered"]
    [delivery] = hook.received
    assert delivery.verified and delivery.path == "/hook"
    assert delivery.payload["type"] == "apply.failed"
    assert delivery.payload["data"]["details"] == ["web: 8001"]
    assert delivery.headers["webhook-id"].startswith("msg_")
    [entry] = notify.notify_log(ws)
    assert (entry.notifier, entry.kind, entry.status, entry.attempts, entry.where) == (
        "ops", "apply.failed", "delivered", 1, "shop/prod")
    assert notify.deliver_due(ws, now=T0 + 3600) == []  # delivered once, never again


def test_a_receiver_that_is_down_and_comes_back_gets_the_event_exactly_once(ws: Ws, hook: Receiver) -> None:
    hook.down()
    notify.emit(ws, FAILED, now=T0)
    first = notify.deliver_due(ws, now=T0)
    assert statuses(first) == ["retry"] and first[0].next_attempt_at == T0 + 1
    assert "cannot connect to http://127.0.0.1:" in first[0].reason
    assert notify.deliver_due(ws, now=T0 + 0.5) == []  # not due yet
    second = notify.deliver_due(ws, now=T0 + 1)
    assert statuses(second) == ["retry"] and second[0].next_attempt_at == T0 + 1 + 5
    hook.up()
    assert statuses(notify.deliver_due(ws, now=T0 + 6)) == ["delivered"]
    assert notify.deliver_due(ws, now=T0 + 3600) == []
    assert len(hook.verified) == 1
    assert len({d.headers["webhook-id"] for d in hook.received}) == 1


def test_after_the_sixth_failure_the_delivery_has_failed(ws: Ws, hook: Receiver) -> None:
    hook.answers = [(503, {})] * 10
    notify.emit(ws, FAILED, now=T0)
    moment, seen = T0, []
    for _ in range(6):
        [result] = notify.deliver_due(ws, now=moment)
        seen.append(result.status)
        moment = result.next_attempt_at or moment
    assert seen == ["retry"] * 5 + ["failed"]
    assert moment == T0 + 1 + 5 + 30 + 120 + 600
    [entry] = notify.notify_log(ws)
    assert entry.status == "failed" and entry.attempts == 6
    assert entry.last_error.startswith("gave up after 6 attempts: http://127.0.0.1:")
    assert len(hook.received) == 6


def test_429_with_retry_after_is_waited_out(ws: Ws, hook: Receiver) -> None:
    hook.answers = [(429, {"Retry-After": "40"})]
    notify.emit(ws, FAILED, now=T0)
    [throttled] = notify.deliver_due(ws, now=T0)
    assert throttled.status == "retry" and throttled.next_attempt_at == T0 + 40
    assert notify.deliver_due(ws, now=T0 + 39) == []
    assert statuses(notify.deliver_due(ws, now=T0 + 40)) == ["delivered"]
    assert [d.answered for d in hook.received] == [429, 200]


def test_410_disables_the_notifier_with_a_warning(ws: Ws, hook: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    hook.answers = [(410, {})]
    notify.emit(ws, FAILED, now=T0)
    notify.emit(ws, Event("drift.detected", "web moved", "shop", "prod"), now=T0 + 100)  # due after the 410
    with caplog.at_level(logging.WARNING):
        assert statuses(notify.deliver_due(ws, now=T0)) == ["gone"]
    assert "notifier ops is disabled" in caplog.text
    [disabled] = notify.disabled_notifiers(ws)
    assert disabled.name == "ops" and "410 Gone" in disabled.reason
    assert [e.status for e in notify.notify_log(ws)] == ["gone", "gone"]
    assert notify.emit(ws, Event("tests.failed", "shop-auto failed", "shop", "prod"), now=T0 + 10) == 0
    assert notify.deliver_due(ws, now=T0 + 3600) == []
    assert len(hook.received) == 1

    assert notify.enable(ws, "ops") is True
    assert notify.disabled_notifiers(ws) == []
    assert notify.emit(ws, Event("tests.failed", "shop-auto failed", "shop", "prod"), now=T0 + 20) == 1
    assert statuses(notify.deliver_due(ws, now=T0 + 20)) == ["delivered"]


def test_a_disabled_notifier_whose_manifest_changes_is_enabled_again(workspace: Workspace, ws: Ws,
                                                                      hook: Receiver) -> None:
    hook.answers = [(410, {})]
    notify.emit(ws, FAILED, now=T0)
    assert statuses(notify.deliver_due(ws, now=T0)) == ["gone"]
    assert notify.emit(ws, FAILED, now=T0 + 600) == 0
    workspace.manifest("notifiers/ops.yaml", notifier(extra="dedupe_window: 10m\n"))
    assert notify.emit(ws, FAILED, now=T0 + 1200) == 1
    assert notify.disabled_notifiers(ws) == []


def test_400_is_a_permanent_failure_and_not_retried(ws: Ws, hook: Receiver) -> None:
    hook.answers = [(400, {})]
    notify.emit(ws, FAILED, now=T0)
    [result] = notify.deliver_due(ws, now=T0)
    assert result.status == "failed" and result.reason.endswith("answered 400")
    assert notify.deliver_due(ws, now=T0 + 3600) == []
    assert len(hook.received) == 1


@pytest.mark.parametrize(("second_at", "deliveries"), [(T0 + 120, 1), (T0 + 301, 2)])
def test_the_same_event_twice_in_the_window_is_delivered_once(ws: Ws, hook: Receiver, second_at: float,
                                                               deliveries: int) -> None:
    event = Event("health.critical", "web is critical", "shop", "prod")
    notify.emit(ws, event, now=T0)
    notify.deliver_due(ws, now=T0)
    notify.emit(ws, event, now=second_at)
    notify.deliver_due(ws, now=second_at)
    assert len(hook.verified) == deliveries


def test_a_recovery_within_the_window_is_delivered(ws: Ws, hook: Receiver) -> None:
    notify.emit(ws, Event("health.critical", "web is critical", "shop", "prod"), now=T0)
    for n in range(2):
        notify.emit(ws, Event("health.recovered", "web is passing", "shop", "prod", recovery=True), now=T0 + n)
    notify.deliver_due(ws, now=T0 + 2)
    assert sorted(d.payload["type"] for d in hook.verified) == ["health.critical", "health.recovered",
                                                                "health.recovered"]


def test_emit_never_waits_on_a_notifier_that_never_answers(workspace: Workspace,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """What keeps an apply or a health round as fast with a black-hole notifier as without: emit only writes
    the outbox. It returns with the row written and no connection made; the send happens in a delivery pass,
    which gives up on the silent receiver at its budget and keeps the row for a retry."""
    with black_hole() as hole:
        ws = notifying_workspace(workspace, monkeypatch, hook_url(hole.port))
        assert notify.emit(ws, FAILED) == 1
        [row] = notify.notify_log(ws)
        assert (row.status, row.attempts, hole.connections) == ("pending", 0, 0)
        [result] = notify.deliver_due(ws, budget=0.5)
        assert hole.connections == 1
        assert result.status == "retry" and "within" in result.reason and "0.5 s" in result.reason


def test_a_one_shot_command_delivers_what_it_emitted_at_its_end(workspace: Workspace, monkeypatch: pytest.MonkeyPatch,
                                                                 hook: Receiver) -> None:
    ws = notifying_workspace(workspace, monkeypatch, hook_url(hook.port))
    notify.emit(ws, FAILED)
    assert "delivered" in statuses(notify.deliver_after_command())  # (with what other tests of this process left)
    assert notify.deliver_after_command() == []  # nothing emitted since
    assert len(hook.verified) == 1


def test_the_delivery_loop_sends_in_its_own_thread(workspace: Workspace, monkeypatch: pytest.MonkeyPatch,
                                                   hook: Receiver) -> None:
    ws = notifying_workspace(workspace, monkeypatch, hook_url(hook.port))
    loop = notify.DeliveryLoop(ws, interval=0.05).start()
    try:
        notify.emit(ws, FAILED)
        for _ in range(400):  # up to 20 s on a loaded machine; usually the first pass
            if hook.received:
                break
            time.sleep(0.05)
    finally:
        loop.stop()
    assert len(hook.verified) == 1


def test_send_test_sends_a_notify_test_event_through_the_outbox(ws: Ws, hook: Receiver) -> None:
    result = notify.send_test(ws, "ops")
    assert result.status == "delivered"
    [delivery] = hook.verified
    assert delivery.payload["type"] == "notify.test"
    assert [e.kind for e in notify.notify_log(ws)] == ["notify.test"]


def test_send_test_of_an_unknown_notifier_names_the_known_ones(ws: Ws) -> None:
    with pytest.raises(notify.QrmError, match="unknown notifier 'pager'; known notifiers: ops"):
        notify.send_test(ws, "pager")


def test_send_test_to_a_receiver_that_is_down_fails_at_once(ws: Ws, hook: Receiver) -> None:
    hook.down()
    result = notify.send_test(ws, "ops")
    assert result.status == "failed" and "cannot connect" in result.reason
    assert notify.deliver_due(ws, now=10 ** 10) == []  # a test is not retried later


def test_two_senders_at_once_deliver_each_event_once(ws: Ws, hook: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two delivery passes running together (two replicas, or a watcher and a command) on one registry; a pass
    takes 3 rows, so the two keep meeting over the same due rows."""
    monkeypatch.setattr(notify, "PASS_LIMIT", 3)
    for n in range(30):
        notify.emit(ws, Event("tests.failed", f"suite {n} failed", "shop", "prod"), now=T0)
    results: list[notify.DeliveryResult] = []

    def sender() -> None:
        while found := notify.deliver_due(ws, now=T0):
            results.extend(found)

    threads = [threading.Thread(target=sender) for _ in range(2)]  # each with its own event loop
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.id for r in results) == sorted(e.id for e in notify.notify_log(ws))  # each once
    assert {r.status for r in results} == {"delivered"}
    assert len(hook.verified) == 30
    assert len({d.headers["webhook-id"] for d in hook.received}) == 30


def test_a_dashboard_link_needs_a_public_url(ws: Ws) -> None:
    assert notify.dashboard_link(ws, "/ui/tests/shop-auto") == ""
    public = replace(ws, settings=ws.settings.model_copy(update={"public_url": "https://qrm.example.com/"}))
    assert notify.dashboard_link(public, "/ui/tests/shop-auto") == "https://qrm.example.com/ui/tests/shop-auto"


def test_a_provider_that_quotes_its_secrets_is_masked(ws: Ws, hook: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """The safety net under the providers' promise: a reason quoting the URL, its query or the signing secret is
    recorded and returned with them masked."""

    async def leaky(target: Target, event: Event, delivery_id: str, timeout: float) -> Outcome:
        query = target.url.split("?", 1)[1]
        return Outcome("failed", f"refused {target.url} ({query}) with {target.signing_secret}")

    monkeypatch.setitem(notify.PROVIDERS, "webhook", leaky)
    notify.emit(ws, FAILED, now=T0)
    [result] = notify.deliver_due(ws, now=T0)
    [entry] = notify.notify_log(ws)
    assert result.reason == entry.last_error == "refused *** (***) with ***"


@pytest.mark.parametrize(("answer", "still_disabled"), [(200, False), (500, True)])
def test_send_test_reaches_a_disabled_notifier_and_enables_it_only_when_delivered(
        ws: Ws, hook: Receiver, answer: int, still_disabled: bool) -> None:
    hook.answers = [(410, {}), (answer, {})]
    notify.emit(ws, FAILED, now=T0)
    assert statuses(notify.deliver_due(ws, now=T0)) == ["gone"]
    assert notify.send_test(ws, "ops").status == ("delivered" if answer == 200 else "failed")
    assert [d.name for d in notify.disabled_notifiers(ws)] == (["ops"] if still_disabled else [])


def test_the_sends_of_a_pass_share_a_keep_alive_connection(ws: Ws, hook: Receiver,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(notify.CONCURRENCY, "webhook", 1)  # one at a time: each can reuse the one before's
    for n in range(5):
        notify.emit(ws, Event("tests.failed", f"suite {n} failed", "shop", "prod"), now=T0)
    assert statuses(notify.deliver_due(ws, now=T0)) == ["delivered"] * 5
    assert len({d.connection for d in hook.received}) == 1


def test_finished_deliveries_are_forgotten_after_30_days_pending_ones_never(ws: Ws, hook: Receiver) -> None:
    hook.answers = [(200, {}), (400, {})]
    notify.emit(ws, Event("tests.failed", "suite 1 failed", "shop", "prod"), now=T0)
    notify.emit(ws, Event("tests.failed", "suite 2 failed", "shop", "prod"), now=T0)
    notify.deliver_due(ws, now=T0)
    hook.down()
    notify.emit(ws, Event("tests.failed", "suite 3 failed", "shop", "prod"), now=T0)
    notify.deliver_due(ws, now=T0)
    assert sorted(e.status for e in notify.notify_log(ws)) == ["delivered", "failed", "pending"]
    assert notify.prune(ws, now=T0 + 29 * 86400) == 0
    assert notify.prune(ws, now=T0 + 31 * 86400) == 2
    assert [e.status for e in notify.notify_log(ws)] == ["pending"]
