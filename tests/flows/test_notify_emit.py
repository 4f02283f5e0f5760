"""flows/notify.emit: an event becomes one outbox row per notifier of each Alert that takes it, in a real registry
of a real workspace; nothing is sent (emit never touches a network); the same event within the notifier's dedupe
window is enqueued once, a recovery always."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest

from reconciler.core.notifications import Event
from reconciler.flows import notify
from reconciler.flows.recorded import open_registry
from reconciler.flows.workspace import Workspace as Ws
from reconciler.flows.workspace import open_workspace
from tests.support.notify_workspace import ALERT, hook_url, notifier, notifying_workspace
from tests.support.workspace import Workspace

T0 = 1_800_000_000.0
# Nothing listens on port 9 of 127.0.0.1: a send would fail at once, and emit must not even try.
UNREACHABLE = hook_url(9)


def outbox(ws: Ws) -> list[dict[str, object]]:
    registry = open_registry(ws, create=False)
    if registry is None:  # emit made none: it had nothing to enqueue
        return []
    try:
        return registry.notification_rows(100)
    finally:
        registry.close()


def test_emit_writes_one_pending_row_per_notifier_and_sends_nothing(workspace: Workspace,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ws = notifying_workspace(workspace, monkeypatch, UNREACHABLE, notifiers=notifier("ops") + "---\n" +
                             notifier("pager"), alert=ALERT.replace("[ops]", "[ops, pager]"))
    event = Event("apply.failed", "port 8001 is taken", "shop", "prod", details=("web: 8001",))
    assert notify.emit(ws, event, now=T0) == 2
    rows = outbox(ws)
    assert sorted(r["notifier"] for r in rows) == ["ops", "pager"]
    assert {r["status"] for r in rows} == {"pending"} and {r["attempts"] for r in rows} == {0}
    payload = json.loads(str(rows[0]["payload"]))
    assert payload["type"] == "apply.failed" and payload["data"]["details"] == ["web: 8001"]
    assert payload["timestamp"].endswith("Z")


@pytest.mark.parametrize(("event", "rows"), [
    (Event("apply.succeeded", "applied 3 changes", "shop", "prod"), 0),  # info: below the alert's warning
    (Event("drift.detected", "2 services drifted", "shop", "prod"), 1),
])
def test_emit_enqueues_only_what_an_alert_takes(workspace: Workspace, monkeypatch: pytest.MonkeyPatch,
                                                event: Event, rows: int) -> None:
    ws = notifying_workspace(workspace, monkeypatch, UNREACHABLE)
    assert notify.emit(ws, event, now=T0) == rows
    assert len(outbox(ws)) == rows


@pytest.mark.parametrize(("window", "second_at", "enqueued"), [
    ("", T0 + 60, 0),  # the default window is 5 minutes
    ("", T0 + 301, 1),
    ("dedupe_window: 30s\n", T0 + 60, 1),
    ("dedupe_window: 1h\n", T0 + 3000, 0),
])
def test_the_same_event_within_the_dedupe_window_is_enqueued_once(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch, window: str, second_at: float, enqueued: int) -> None:
    ws = notifying_workspace(workspace, monkeypatch, UNREACHABLE, notifiers=notifier(extra=window))
    event = Event("health.critical", "web is critical", "shop", "prod")
    assert notify.emit(ws, event, now=T0) == 1
    assert notify.emit(ws, event, now=second_at) == enqueued


def test_a_recovery_is_always_enqueued(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = notifying_workspace(workspace, monkeypatch, UNREACHABLE)
    recovered = Event("health.recovered", "web is passing", "shop", "prod", recovery=True)
    assert [notify.emit(ws, recovered, now=T0 + n) for n in range(3)] == [1, 1, 1]


def test_a_workspace_without_alerts_enqueues_nothing_and_makes_no_registry(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", "kind: Service\nname: web\ntype: app\n")
    ws = open_workspace(workspace.root)
    assert notify.emit(ws, Event("apply.failed", "boom")) == 0
    assert not (workspace.root / ".qrm" / "registry.db").exists()


def test_emit_never_raises_when_the_registry_is_away(workspace: Workspace, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A notification must not fail what it reports on: a registry that cannot be reached is a warning."""
    ws = replace(notifying_workspace(workspace, monkeypatch, UNREACHABLE),
                 registry_override="postgresql+psycopg://qrm@127.0.0.1:9/qrm")
    with caplog.at_level(logging.WARNING):
        assert notify.emit(ws, Event("apply.failed", "boom", "shop", "prod")) == 0
    assert "notification apply.failed not enqueued: registry postgresql+psycopg://qrm@127.0.0.1:9/qrm" in caplog.text
