"""flows/notify_events through the flows a watcher, a server and a library user call (apply_workspace,
reconcile_once, run_tests, check_health): what each emits into the outbox and what a real webhook receiver on
127.0.0.1 then gets. Drift is sent once per dedupe window and a new drift again; a watcher that applies says it
repaired it; a blocked plan is deploy.blocked and nothing else; a suite that does not block sends no
tests.failed; a flapping service one critical and one recovered; a secret value is masked out of every event."""

from __future__ import annotations

import json

import pytest

from reconciler.core.errors import QrmError
from reconciler.core.notifications import Event
from reconciler.flows import notify, notify_events
from reconciler.flows.apply import apply_workspace
from reconciler.flows.reconcile import reconcile_once
from reconciler.flows.services import check_health
from reconciler.flows.test_runs import last_run_id
from reconciler.flows.tests_run import run_tests
from tests.support.healthservers import Servers, Switch
from tests.support.notify_events import (
    DAMPED,
    EVERYTHING,
    PROJECT_SECRET,
    PUBLIC,
    Notified,
    assert_no_secret,
    gated,
    notified_workspace,
)
from tests.support.notify_receiver import Receiver
from tests.support.quantum_server import Running
from tests.support.workspace import Workspace


@pytest.fixture
def notified(workspace: Workspace, monkeypatch: pytest.MonkeyPatch, hook: Receiver) -> Notified:
    return notified_workspace(workspace, monkeypatch, hook)


def kinds(n: Notified) -> list[str]:
    return [event["type"] for event in n.events()]


# --- apply ---------------------------------------------------------------------------------------------------

def test_a_failed_apply_is_one_apply_failed_with_the_error(notified: Notified) -> None:
    notified.workspace.write("generated", "a file where apply makes the generated/ folder\n")
    with pytest.raises((QrmError, OSError)) as raised:
        apply_workspace(notified.ws)
    [row] = notify.notify_log(notified.ws)
    assert (row.kind, row.severity, row.where, row.status) == ("apply.failed", "critical", "shop/prod", "pending")
    [event] = notified.events()
    assert str(raised.value).splitlines()[0] in event["data"]["summary"]
    assert event["data"]["details"][0] == str(raised.value).splitlines()[0]


def test_a_plan_with_conflicts_is_deploy_blocked_and_not_apply_failed(notified: Notified) -> None:
    notified.workspace.manifest("shop.yaml", notified.workspace.root.joinpath("manifests", "shop.yaml").read_text()
                                .replace("prod: {host: localhost", f"prod: {{host: localhost, ports: {{web: "
                                                                   f"{notified.hook.port}}}"))
    with pytest.raises(QrmError, match="nothing was applied"):
        apply_workspace(notified.ws)
    assert kinds(notified) == ["deploy.blocked"]


def test_apply_succeeded_is_opt_in(workspace: Workspace, monkeypatch: pytest.MonkeyPatch, hook: Receiver) -> None:
    """An Alert of every event from warning up does not get it; one that names it (from info up) does."""
    n = notified_workspace(workspace, monkeypatch, hook, alert=EVERYTHING.replace("min_severity: info\n", ""))
    assert apply_workspace(n.ws).applied
    assert kinds(n) == []

    workspace.manifest("alerts/all.yaml", EVERYTHING.replace('["*"]', "[apply.succeeded]"))
    workspace.manifest("api.yaml", "kind: Service\nname: api\ntype: app\n")
    outcome = apply_workspace(n.ws)
    [event] = n.events()
    assert event["type"] == "apply.succeeded"
    assert event["data"]["summary"] == f"apply #{outcome.apply_id} of ws: 1 created, 0 updated, 0 deleted"
    assert event["data"]["details"] == ["+ service.api"]
    assert event["data"]["project"] == ""  # a standalone Service belongs to no project


# --- drift -----------------------------------------------------------------------------------------------------

def plan_round(n: Notified) -> str:
    return reconcile_once(n.ws, trigger="interval", apply=False, commit=False, scan=False).outcome


def test_the_same_drift_is_sent_once_per_window_and_a_new_drift_again(notified: Notified) -> None:
    apply_workspace(notified.ws)
    env = notified.workspace.root / "generated" / "shop" / "prod" / ".env"
    env.write_text(env.read_text() + "DEBUG=1\n")
    assert [plan_round(notified) for _ in range(4)] == ["pending"] * 4  # a watcher's intervals
    [drift] = notified.events("drift.detected")
    assert drift["data"]["details"] == ["! file.generated/shop/prod/.env: edited by hand since the last apply; "
                                        "apply rewrites it"]

    lock = notified.workspace.root / "reports" / "allocations.yaml"
    lock.write_text(lock.read_text() + "# edited\n")
    plan_round(notified)
    first, second = notified.events("drift.detected")  # the .env: the same drift; the lock file: a new one
    assert first == drift
    assert (second["data"]["project"], second["data"]["environment"]) == ("shop", "")
    assert second["data"]["details"] == ["! file.reports/allocations.yaml: reports/allocations.yaml is edited "
                                         "since the last apply; it is rewritten"]
    assert_no_secret(notified.hook.verified)


def test_a_watcher_that_applies_repairs_the_drift_and_says_so(notified: Notified) -> None:
    apply_workspace(notified.ws)
    env = notified.workspace.root / "generated" / "shop" / "prod" / ".env"
    env.write_text("DEBUG=1\n")

    result = reconcile_once(notified.ws, trigger="interval", apply=True, commit=False, scan=False)

    assert result.outcome == "applied"
    [drift] = notified.events("drift.detected")
    assert "repaired by the apply" in drift["data"]["summary"]
    assert drift["data"]["link"] == PUBLIC + "/ui/history"
    assert "DEBUG" not in json.dumps(drift)


# --- tests ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("blocking", "expected"), [
    (True, ["tests.failed", "tests.flaky"]),
    (False, ["tests.flaky"]),  # a failing suite that does not block is in its report, not a notification
])
def test_a_run_sends_tests_failed_only_for_a_blocking_suite_with_a_link_to_the_run(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch, hook: Receiver, quantum: Running, blocking: bool,
        expected: list[str]) -> None:
    quantum.state.hits.pop("/flaky", None)
    n = notified_workspace(workspace, monkeypatch, hook, prod=f', url: "{quantum.url}"',
                           extra=gated(quantum.url, blocking=blocking))
    run_tests(n.ws, "gate", ())
    events = n.events()
    assert [event["type"] for event in events] == expected
    run_id = last_run_id(n.ws)
    assert {event["data"]["link"] for event in events} == {f"{PUBLIC}/ui/test-runs/{run_id}"}


# --- health --------------------------------------------------------------------------------------------------

# U: the health endpoint answers 200 in that round, D: 500. Only DDDDD reaches failures_before_critical, and only
# the UUU after them success_before_passing: one critical, one recovered, whatever the flapping around them.
FLAPPING = "UDUDUDUDDDDDUDUDUUUDUDUDU"


def test_a_flapping_service_sends_one_critical_and_one_recovered_not_twenty(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch, hook: Receiver, servers: Servers) -> None:
    """failures_before_critical: 3 and success_before_passing: 2 absorb the flapping. Its first round (before
    its server is up) is the critical a new check starts with: not announced, so its coming up is no recovery."""
    n = notified_workspace(workspace, monkeypatch, hook, web=DAMPED)
    apply_workspace(n.ws)
    port = next(s.service.port for s in check_health(n.ws).services if s.name == "shop-prod-web")
    switch = Switch(200)
    servers.status(switch, port=port)
    statuses = []
    for state in "UU" + FLAPPING:
        switch.status = 200 if state == "U" else 500
        web = next(s for s in check_health(n.ws).services if s.name == "shop-prod-web")
        statuses.append(web.status)

    assert statuses.count("critical") >= 5 and statuses[-1] == "passing"
    events = [e for e in n.events() if e["type"].startswith("health.") and "shop-prod-web" in e["data"]["summary"]]
    assert [(e["type"], e["data"]["summary"]) for e in events] == [
        ("health.critical", "shop-prod-web is critical: HTTP 500"),
        ("health.recovered", "shop-prod-web is passing again")]
    critical, recovered = events
    assert recovered["data"]["recovery"] is True and recovered["data"]["severity"] == "info"
    assert critical["data"]["link"] == PUBLIC + "/ui/services"
    assert critical["data"]["details"] == [f"check: 127.0.0.1:{port} (GET http://127.0.0.1:{port}/health)",
                                           "3 consecutive failure(s)"]


# --- the one path: masking, and no Alert -------------------------------------------------------------------------

def test_every_secret_value_is_masked_out_of_an_event_before_it_is_enqueued(notified: Notified) -> None:
    """A test's failure reason may quote a page that shows a secret: the outbox never holds it."""
    leaky = Event("tests.failed", f"page shows {PROJECT_SECRET}", "shop", "prod",
                  details=(f"home: body was 'password={PROJECT_SECRET}'",))
    assert notify_events.emit_all(notified.ws, [leaky]) == 1
    [row] = notify.notify_log(notified.ws)
    assert row.summary == "page shows ***"
    [event] = notified.events()
    assert event["data"]["details"] == ["home: body was 'password=***'"]
    assert_no_secret(notified.hook.verified)


def test_a_workspace_without_alerts_emits_nothing(notified: Notified) -> None:
    (notified.workspace.root / "manifests" / "alerts" / "all.yaml").unlink()
    notified.workspace.write("generated", "a file\n")
    with pytest.raises((QrmError, OSError)):
        apply_workspace(notified.ws)
    assert notify.notify_log(notified.ws) == [] and notified.hook.received == []
