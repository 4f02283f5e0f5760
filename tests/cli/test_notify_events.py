"""Every notification event kind, caused by what a user runs (`qrm apply`, `qrm tests run`, `qrm services
health`, `qrm secrets rotate`, a `qrm watch` process) in a real workspace, and received by a real webhook
receiver on 127.0.0.1 (signatures verified by the `standardwebhooks` package) through the command's own
delivery pass at its end (or the watcher's delivery thread): each arrives with its project, environment,
severity, one-line summary, details and dashboard link, and no secret value (the canary)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from reconciler.core.notifications import BACKOFF_SECONDS, EVENT_KINDS
from reconciler.flows import notify
from tests.support.healthservers import Servers, Switch
from tests.support.notify_events import (
    PUBLIC,
    Notified,
    assert_no_secret,
    gated,
    notified_workspace,
)
from tests.support.notify_receiver import Receiver
from tests.support.quantum_server import Running
from tests.support.watcher import Watcher, wait_for
from tests.support.workspace import Workspace


@dataclass
class World:
    """What a scenario may use besides its workspace."""

    quantum: Running
    servers: Servers


# --- the causes --------------------------------------------------------------------------------------------

def failed_apply(n: Notified, _: World) -> None:
    n.workspace.write("generated", "a file where apply makes the generated/ folder\n")
    n.qrm("apply", "--yes", code=1)


def invalid_manifests(n: Notified, _: World) -> None:
    n.workspace.write("manifests/broken.yaml", "kind: Service\nname: api\ntype: app\ncolour: red\n")
    n.qrm("apply", "--yes", code=1)


def conflicting_plan(n: Notified, _: World) -> None:
    n.workspace.manifest("shop.yaml", n.workspace.root.joinpath("manifests", "shop.yaml").read_text().replace(
        "prod: {host: localhost", f"prod: {{host: localhost, ports: {{web: {n.hook.port}}}"))  # the receiver's port
    n.qrm("apply", "--yes", code=1)


def applied(n: Notified, _: World) -> None:
    n.qrm("apply", "--yes")


def gate(n: Notified, _: World) -> None:
    n.qrm("apply", "--yes", code=3)  # the blocking suite failed after the apply: what was applied stays applied


def suite_run(n: Notified, _: World) -> None:
    n.qrm("tests", "run", "gate", code=3)


def service_down(n: Notified, _: World) -> None:
    n.qrm("apply", "--yes")
    n.qrm("services", "health")  # nothing listens on web's port: critical at its first failure


def service_back(n: Notified, world: World) -> None:
    service_down(n, world)
    port = next(int(line.split()[1].split(":")[1]) for line in n.qrm("services", "list").splitlines()
                if line.startswith("shop-prod-web "))
    world.servers.status(Switch(200), port=port)
    n.qrm("services", "health")


def drift_seen_by_a_watcher(n: Notified, _: World) -> None:
    n.qrm("apply", "--yes")
    env = n.workspace.root / "generated" / "shop" / "prod" / ".env"
    env.write_text(env.read_text() + "DEBUG=1\n")
    watcher = Watcher(n.workspace.root, "--no-commit", "--interval", "60")  # plan only: it reports, not repairs
    try:
        wait_for("drift.detected at the receiver", lambda: bool(n.received("drift.detected")), watcher)
    finally:
        assert watcher.stop() == 0, watcher.output


def rotation(n: Notified, _: World) -> None:
    assert "re-encrypted 3 secret(s)" in n.qrm("secrets", "rotate")


@dataclass(frozen=True)
class Scenario:
    id: str
    cause: Callable[[Notified, World], None]
    kind: str
    severity: str
    environment: str
    summary: str  # a substring of the one-line summary
    details: str  # a substring of one details line
    page: str  # the link is PUBLIC + page (a prefix for a test run's page, whose id is the registry's)
    web: str = ""  # the web service's extra manifest fields
    suite: bool = False  # with the suite `gate` against the Quantum stand-in
    about: str = ""  # only the events whose summary names it (shop-prod-db has no server either: critical too)


HEALTH = ", protocol: http, health: {path: /health, timeout: 2s}"
SCENARIOS = [
    Scenario("apply.failed", failed_apply, "apply.failed", "critical", "prod", "apply of ws failed: ",
             "generated", "/ui/history"),
    Scenario("apply.failed-invalid-manifests", invalid_manifests, "apply.failed", "critical", "",
             "invalid manifests (1 problem(s)); nothing was applied", "manifests/broken.yaml:4", "/ui/history"),
    Scenario("apply.succeeded", applied, "apply.succeeded", "info", "prod", "created", "+ service.shop-prod-web",
             "/ui/history"),
    Scenario("deploy.blocked-conflict", conflicting_plan, "deploy.blocked", "critical", "prod",
             "the plan has 1 conflict(s); nothing was applied", "another process is listening", "/ui/plan"),
    Scenario("deploy.blocked-gate", gate, "deploy.blocked", "critical", "prod",
             "blocking suite gate failed after apply #1 on prod", "stays applied", "/ui/tests/gate", suite=True),
    Scenario("tests.failed", suite_run, "tests.failed", "critical", "prod",
             "blocking suite gate failed on prod: 1 of 3 case(s) failed", "broken (broken page): ",
             "/ui/test-runs/", suite=True),
    Scenario("tests.flaky", suite_run, "tests.flaky", "warning", "prod",
             "suite gate on prod: 1 case(s) passed only on a retry", "flaky (flaky page): passed on attempt 2",
             "/ui/test-runs/", suite=True),
    Scenario("health.critical", service_down, "health.critical", "critical", "prod",
             "shop-prod-web is critical: ", "check: 127.0.0.1:", "/ui/services", web=HEALTH,
             about="shop-prod-web"),
    Scenario("health.recovered", service_back, "health.recovered", "info", "prod",
             "shop-prod-web is passing again", "1 consecutive success(es)", "/ui/services", web=HEALTH,
             about="shop-prod-web"),
    Scenario("drift.detected", drift_seen_by_a_watcher, "drift.detected", "warning", "prod",
             "1 thing(s) drifted in ws: not repaired", "! file.generated/shop/prod/.env: edited by hand",
             "/ui/plan"),
    Scenario("secret.rotated", rotation, "secret.rotated", "info", "", "3 value(s) re-encrypted",
             "recipient: age1", "/ui/secrets"),
]


def test_every_event_kind_has_a_scenario() -> None:
    assert {s.kind for s in SCENARIOS} == set(EVENT_KINDS) - {"notify.test"}  # notify.test: `qrm notify test`


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_the_event_arrives_with_its_fields_and_no_secret_value(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch, hook: Receiver, quantum: Running, servers: Servers,
        scenario: Scenario) -> None:
    quantum.state.hits.pop("/flaky", None)  # its first answer is the 500
    n = notified_workspace(workspace, monkeypatch, hook, web=scenario.web,
                           prod=f', url: "{quantum.url}"' if scenario.suite else "",
                           extra=gated(quantum.url) if scenario.suite else "")

    scenario.cause(n, World(quantum, servers))

    # delivered by the command itself (or the watcher's delivery thread), no pass of ours
    found = [event for event in n.received(scenario.kind) if scenario.about in event["data"]["summary"]]
    assert len(found) == 1, [d.payload for d in hook.verified]
    data = found[0]["data"]
    assert (data["project"], data["environment"], data["severity"]) == ("shop", scenario.environment,
                                                                        scenario.severity)
    assert scenario.summary in data["summary"] and "\n" not in data["summary"]
    assert any(scenario.details in line for line in data["details"]), data["details"]
    assert data["link"].startswith(PUBLIC + scenario.page) and "//ui" not in data["link"]
    assert data["recovery"] is (scenario.kind == "health.recovered")
    assert found[0]["timestamp"].endswith("Z")
    assert_no_secret(hook.verified)


def test_a_receiver_that_is_down_never_fails_the_command_and_gets_the_event_from_the_next(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch, hook: Receiver) -> None:
    n = notified_workspace(workspace, monkeypatch, hook)
    hook.down()
    n.workspace.write("generated", "a file\n")
    result = workspace.qrm("apply", "--yes")
    assert result.exit_code == 1 and "generated" in result.output  # its own failure, nothing about notifying
    hook.up()
    [row] = [r for r in n.qrm("notify", "log").splitlines() if "apply.failed" in r]
    assert "pending" in row

    notify.deliver_due(n.ws, now=time.time() + BACKOFF_SECONDS[0])  # the next pass, after the first backoff
    assert [d.payload["type"] for d in hook.verified] == ["apply.failed"]


def test_a_watcher_whose_blocking_suite_fails_sends_tests_failed_with_the_failing_cases(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch, hook: Receiver, quantum: Running) -> None:
    """A real `qrm watch --apply` process: its reconcile applies, the gate suite fails against the Quantum
    stand-in, and its delivery thread sends tests.failed (and the gate's deploy.blocked) to the receiver."""
    quantum.state.hits.pop("/flaky", None)
    n = notified_workspace(workspace, monkeypatch, hook, prod=f', url: "{quantum.url}"', extra=gated(quantum.url))
    watcher = Watcher(workspace.root, "--apply", "--no-commit", "--interval", "60")
    try:
        wait_for("tests.failed at the receiver", lambda: bool(n.received("tests.failed")), watcher)
        wait_for("deploy.blocked at the receiver", lambda: bool(n.received("deploy.blocked")), watcher)
    finally:
        assert watcher.stop() == 0, watcher.output
    assert "blocking suite(s) failed: gate" in watcher.output
    [failed] = n.received("tests.failed")
    assert (failed["data"]["project"], failed["data"]["environment"]) == ("shop", "prod")
    assert [line.split(":")[0] for line in failed["data"]["details"]] == ["broken (broken page)"]
    assert_no_secret(hook.verified)
