"""`qrm watch` and `qrm serve` deliver notifications in the background: an event emitted into the workspace's
outbox (here by the test, as any command of the workspace would) reaches a real receiver while they run, without
any command of theirs being asked to."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.core.notifications import Event
from reconciler.flows import notify
from tests.support import api_server
from tests.support.notify_receiver import Receiver, receiver
from tests.support.notify_workspace import SIGNING_SECRET, hook_url, notifying_workspace
from tests.support.watcher import Watcher
from tests.support.workspace import Workspace

DEADLINE = 40.0


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver(SIGNING_SECRET) as found:
        yield found


def wait_until(what: str, condition: Callable[[], bool], log: Callable[[], str]) -> None:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}:\n{log()}")


def test_qrm_watch_delivers_what_is_emitted_while_it_runs(workspace: Workspace, monkeypatch: pytest.MonkeyPatch,
                                                           hook: Receiver) -> None:
    ws = notifying_workspace(workspace, monkeypatch, hook_url(hook.port))
    watcher = Watcher(workspace.root, "--no-commit", "--interval", "3600")
    try:
        notify.emit(ws, Event("drift.detected", "web moved to 8002", "shop", "prod"))
        wait_until("the watcher's delivery", lambda: bool(hook.verified), lambda: watcher.output)
    finally:
        assert watcher.stop() == 0, watcher.output
    assert [d.payload["type"] for d in hook.received] == ["drift.detected"]
    assert [e.status for e in notify.notify_log(ws)] == ["delivered"]


def test_qrm_serve_delivers_what_is_emitted_while_it_runs(workspace: Workspace, monkeypatch: pytest.MonkeyPatch,
                                                           hook: Receiver, tmp_path: Path) -> None:
    ws = notifying_workspace(workspace, monkeypatch, hook_url(hook.port))
    env = api_server.environment(tmp_path / "home")  # with the demo age key the workspace's secrets use
    server = api_server.start(workspace.root, env)
    try:
        notify.emit(ws, Event("tests.failed", "shop-auto failed on prod", "shop", "prod", details=("login: 500",)))
        wait_until("the server's delivery", lambda: bool(hook.verified), server.log)
    finally:
        assert server.stop() == 0, server.log()
    [delivery] = hook.verified
    assert delivery.payload["data"]["details"] == ["login: 500"]
