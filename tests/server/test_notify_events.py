"""`qrm serve` emits through the same path as the CLI and delivers in its own background loop: a health round
(POST /resources/services/health-check) sends health.critical when a service goes down and health.recovered
when it is back; a test run (POST /test-suites/{suite}/run) of a blocking suite that fails sends tests.failed
with a link to that run's dashboard page, and so do the post-deploy tests a deployment webhook starts. A real
`qrm serve` process, a real webhook receiver on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import api_server
from tests.support.gated_suite import gated_manifests
from tests.support.healthservers import Servers, Switch
from tests.support.notify_events import PUBLIC, Notified, assert_no_secret, gated, notified_workspace
from tests.support.notify_receiver import Receiver
from tests.support.notify_workspace import SIGNING_SECRET, hook_url, notifier
from tests.support.quantum_server import Running
from tests.support.webhooks import hooked
from tests.support.workspace import Workspace

DEADLINE = 60.0



def serve(n: Notified, tmp_path: Path) -> tuple[api_server.Server, str]:
    """The workspace applied, a writer token, and `qrm serve` on it; the server and the token."""
    env = api_server.environment(tmp_path / "home")
    api_server.qrm(n.workspace.root, env, "apply", "--yes", "--no-tests")
    token = api_server.qrm(n.workspace.root, env, "token", "create", "writer", "--scope", "write",
                           "--scope", "read").strip()
    return api_server.start(n.workspace.root, env), token


def post(server: api_server.Server, path: str, token: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return server.request("POST", path, json=body or {}, headers={"Authorization": f"Bearer {token}"})


def arrives(n: Notified, server: api_server.Server, what: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first delivery the receiver got that `what` accepts, waiting for the server's delivery loop."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = [d.payload for d in n.hook.verified if what(d.payload)]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"nothing arrived; received {[d.payload for d in n.hook.verified]}; serve said:\n"
                         f"{server.log()}")


def about(kind: str, service: str) -> Callable[[dict[str, Any]], bool]:
    return lambda payload: payload["type"] == kind and payload["data"]["summary"].startswith(service)


def test_the_servers_health_rounds_send_critical_then_recovered(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch, hook: Receiver, servers: Servers,
        tmp_path: Path) -> None:
    n = notified_workspace(workspace, monkeypatch, hook, web=", protocol: http, health: {path: /health, timeout: 2s}")
    server, token = serve(n, tmp_path)
    try:
        down = post(server, "/resources/services/health-check", token)
        assert down.status_code == 200, down.text
        web = next(s for s in down.json()["services"] if s["name"] == "shop-prod-web")
        assert web["status"] == "critical"
        critical = arrives(n, server, about("health.critical", "shop-prod-web"))

        servers.status(Switch(200), port=web["port"])
        assert post(server, "/resources/services/health-check", token).status_code == 200
        recovered = arrives(n, server, about("health.recovered", "shop-prod-web"))
    finally:
        server.stop()
    assert critical["data"]["link"] == recovered["data"]["link"] == PUBLIC + "/ui/services"
    assert recovered["data"]["recovery"] is True
    assert len([d for d in hook.verified if d.payload["type"].startswith("health.")
                and "shop-prod-web" in d.payload["data"]["summary"]]) == 2
    assert_no_secret(hook.verified)


def test_a_server_run_of_a_failing_blocking_suite_sends_tests_failed_linking_the_run(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch, hook: Receiver, quantum: Running,
        tmp_path: Path) -> None:
    quantum.state.hits.pop("/flaky", None)
    n = notified_workspace(workspace, monkeypatch, hook, prod=f', url: "{quantum.url}"', extra=gated(quantum.url))
    server, token = serve(n, tmp_path)
    try:
        started = post(server, "/test-suites/gate/run", token, {"environment": "prod"})
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        failed = arrives(n, server, lambda payload: payload["type"] == "tests.failed")
    finally:
        server.stop()
    assert failed["data"]["link"] == f"{PUBLIC}/ui/test-runs/{run_id}"
    assert [line.split(":")[0] for line in failed["data"]["details"]] == ["broken (broken page)"]
    assert_no_secret(hook.verified)


def test_a_deployment_webhook_whose_blocking_suite_fails_sends_tests_failed(hook: Receiver, quantum: Running,
                                                                           tmp_path: Path) -> None:
    """GitHub says a deployment of `development` succeeded: the server runs the auto_run suites on dev (the
    post-deploy tests), the blocking suite fails, and tests.failed reaches the receiver."""
    alert = "---\nkind: Alert\nname: failing\nevents: [tests.failed]\nnotifiers: [ops]\n"
    manifests = gated_manifests(quantum.url, blocking=True) + "---\n" + notifier() + alert
    secrets = {"OPS_HOOK_URL": hook_url(hook.port), "OPS_HOOK_SECRET": SIGNING_SECRET}
    with hooked(tmp_path, extra_manifests=manifests, extra_secrets=secrets) as h:
        h.settled()
        answer = h.github("deployment_status", {"deployment_status": {"state": "success", "environment": "development"},
                                                "deployment": {"environment": "development", "sha": "1" * 40}})
        assert answer.status_code == 202, answer.text
        failed = arrives(Notified(Workspace(h.server.root), hook), h.server,
                         lambda payload: payload["type"] == "tests.failed")
    assert (failed["data"]["project"], failed["data"]["environment"]) == ("shop", "dev")
    assert failed["data"]["summary"] == "blocking suite gate failed on dev: 1 of 2 case(s) failed"
    assert [line.split(":")[0] for line in failed["data"]["details"]] == ["broken"]
    assert_no_secret(hook.verified)
