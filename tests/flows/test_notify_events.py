"""Every notification event, caused for real in a real workspace and delivered to a real webhook receiver on
127.0.0.1 (its signature verified by the `standardwebhooks` package): an apply that fails, one refused for
its plan's conflicts, one that succeeds (opt-in), a hand-edited generated file (drift), a blocking suite that
fails against the Quantum stand-in (tests.failed and the gate's deploy.blocked), a case that passes only on a
retry (tests.flaky), a service that goes down and comes back (health), `qrm secrets rotate`. Each arrives with
its project, environment, severity, summary, details and dashboard link, and without any secret value."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from reconciler.core.notifications import Event
from reconciler.flows import notify, notify_events
from reconciler.flows.reconcile import reconcile_once
from reconciler.flows.secrets import set_secret
from reconciler.flows.workspace import Workspace as Ws
from reconciler.flows.workspace import open_workspace
from tests.support.healthservers import Servers, Switch, running
from tests.support.notify_receiver import Delivery, Receiver, receiver
from tests.support.notify_workspace import SIGNING_SECRET, URL_TOKEN, hook_url, notifying_workspace
from tests.support.quantum_server import Running, quantum_server
from tests.support.workspace import Workspace

PUBLIC = "https://qrm.example.com"
PROJECT_SECRET = "canary-db-password-77c1"  # a project secret that lands in generated/shop/*/.env
SECRETS = (URL_TOKEN, SIGNING_SECRET, SIGNING_SECRET.removeprefix("whsec_"), PROJECT_SECRET)

SHOP = """\
kind: Project
name: shop
environments:
  prod: {{host: localhost{prod}}}
services:
  web: {{type: app{web}}}
  db: {{type: database}}
datasources:
  main: {{driver: postgresql, service: db, database: shop, username: shop, password: "secret:DB_PASSWORD"}}
"""
EVERYTHING = """\
kind: Alert
name: all
events: ["*"]
min_severity: info
notifiers: [ops]
"""


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver(SIGNING_SECRET) as found:
        yield found
        # What a test emitted through flows (not a command, which delivers at its end) is this process's to
        # deliver: delivered here, while the receiver is up, it is not left to a later test's one-shot pass.
        notify.deliver_after_command()


@pytest.fixture(scope="module")
def quantum() -> Iterator[Running]:
    with quantum_server("v1") as server:
        yield server


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with running() as started:
        yield started


@dataclass
class Notified:
    workspace: Workspace
    hook: Receiver

    @property
    def ws(self) -> Ws:
        return open_workspace(self.workspace.root)

    def deliver(self) -> list[Delivery]:
        """Deliver what is due; every verified delivery so far."""
        notify.deliver_due(self.ws)
        return self.hook.verified

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [d.payload for d in self.deliver() if kind is None or d.payload["type"] == kind]

    def qrm(self, *args: str, code: int = 0) -> str:
        result = self.workspace.qrm(*args)
        assert result.exit_code == code, result.output
        return result.output


def make(workspace: Workspace, monkeypatch: pytest.MonkeyPatch, hook: Receiver, *, prod: str = "", web: str = "",
         alert: str = EVERYTHING, extra: str = "") -> Notified:
    """Project shop (prod) whose .env holds a project secret, the webhook notifier `ops` and an Alert."""
    workspace.write("qrm.yaml", f"public_url: {PUBLIC}/\n")
    notifying_workspace(workspace, monkeypatch, hook_url(hook.port), alert=alert)
    workspace.manifest("shop.yaml", SHOP.format(prod=prod, web=web) + extra)
    set_secret(open_workspace(workspace.root), "DB_PASSWORD", "shop", None, PROJECT_SECRET)
    return Notified(workspace, hook)


@pytest.fixture
def notified(workspace: Workspace, monkeypatch: pytest.MonkeyPatch, hook: Receiver) -> Notified:
    return make(workspace, monkeypatch, hook)


def assert_no_secret(deliveries: list[Delivery]) -> None:
    for delivery in deliveries:
        text = delivery.body.decode() + json.dumps(delivery.headers) + delivery.query
        for secret in SECRETS:
            assert secret not in delivery.body.decode(), f"{secret} leaked into {delivery.payload['type']}"
        assert PROJECT_SECRET not in text


# --- the events, one scenario each: cause it for real, and say what must arrive --------------------------

def failed_apply(n: Notified) -> None:
    """generated/ is a file: apply cannot write the project's files."""
    n.workspace.write("generated", "not a folder\n")
    n.qrm("apply", "--yes", code=1)


def invalid_manifests(n: Notified) -> None:
    n.workspace.write("manifests/broken.yaml", "kind: Service\nname: api\ntype: app\ncolour: red\n")
    n.qrm("apply", "--yes", code=1)


def conflicting_plan(n: Notified) -> None:
    port = n.hook.port  # the receiver listens there: a pinned port another process holds is a conflict
    n.workspace.manifest("shop.yaml", SHOP.format(prod=f", ports: {{web: {port}}}", web=""))
    n.qrm("apply", "--yes", code=1)


def successful_apply(n: Notified) -> None:
    n.qrm("apply", "--yes")


def hand_edited_env(n: Notified) -> None:
    n.qrm("apply", "--yes")
    env = n.workspace.root / "generated" / "shop" / "prod" / ".env"
    env.write_text(env.read_text() + "DEBUG=1\n")
    result = reconcile_once(n.ws, trigger="interval", apply=False, commit=False, scan=False)
    assert result.outcome == "pending"


def rotation(n: Notified) -> None:
    assert "re-encrypted 3 secret(s)" in n.qrm("secrets", "rotate")


@dataclass(frozen=True)
class Scenario:
    id: str
    cause: Callable[[Notified], None]
    kind: str
    severity: str
    project: str
    environment: str
    summary: str  # a substring
    details: str  # a substring of one detail line
    page: str


SCENARIOS = [
    Scenario("apply.failed", failed_apply, "apply.failed", "critical", "shop", "prod", "failed: ", "generated",
             "/ui/history"),
    Scenario("apply.failed-invalid", invalid_manifests, "apply.failed", "critical", "shop", "",
             "invalid manifests (1 problem(s))", "manifests/broken.yaml:4", "/ui/history"),
    Scenario("deploy.blocked-conflict", conflicting_plan, "deploy.blocked", "critical", "shop", "prod",
             "the plan has 1 conflict(s); nothing was applied", "another process is listening", "/ui/plan"),
    Scenario("apply.succeeded", successful_apply, "apply.succeeded", "info", "shop", "prod", "created",
             "+ service.shop-prod-web", "/ui/history"),
    Scenario("drift.detected", hand_edited_env, "drift.detected", "warning", "shop", "prod",
             "1 thing(s) drifted", "! file.generated/shop/prod/.env: edited by hand", "/ui/plan"),
    Scenario("secret.rotated", rotation, "secret.rotated", "info", "shop", "", "3 value(s) re-encrypted",
             "recipient: age1", "/ui/secrets"),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_the_event_arrives_with_its_fields_and_no_secret(notified: Notified, scenario: Scenario) -> None:
    scenario.cause(notified)

    deliveries = notified.deliver()
    found = [d.payload for d in deliveries if d.payload["type"] == scenario.kind]
    assert len(found) == 1, [d.payload for d in deliveries]
    data = found[0]["data"]
    assert (data["severity"], data["project"], data["environment"]) == (
        scenario.severity, scenario.project, scenario.environment)
    assert scenario.summary in data["summary"] and "\n" not in data["summary"]
    assert any(scenario.details in line for line in data["details"]), data["details"]
    assert data["link"] == PUBLIC + scenario.page
    assert found[0]["timestamp"].endswith("Z")
    assert_no_secret(deliveries)


def test_apply_failed_says_why_in_its_summary(notified: Notified) -> None:
    failed_apply(notified)
    [event] = notified.events("apply.failed")
    assert "generated" in event["data"]["summary"]


def test_apply_succeeded_is_opt_in(workspace: Workspace, monkeypatch: pytest.MonkeyPatch, hook: Receiver) -> None:
    """An Alert of every event from warning up does not get it; one that names it does (severity info)."""
    quiet = make(workspace, monkeypatch, hook, alert=EVERYTHING.replace("min_severity: info\n", ""))
    successful_apply(quiet)
    assert quiet.events() == []

    workspace.manifest("alerts/all.yaml", EVERYTHING.replace('["*"]', "[apply.succeeded]"))
    workspace.manifest("shop.yaml", SHOP.format(prod="", web="") + "---\nkind: Service\nname: api\ntype: app\n")
    quiet.qrm("apply", "--yes")
    [event] = quiet.events("apply.succeeded")
    assert event["data"]["summary"].endswith("1 created, 0 updated, 0 deleted")


def test_the_same_drift_is_sent_once_per_window_and_a_new_drift_again(notified: Notified) -> None:
    hand_edited_env(notified)
    for _ in range(3):  # a watcher's next intervals find the same drift
        reconcile_once(notified.ws, trigger="interval", apply=False, commit=False, scan=False)
    assert len(notified.events("drift.detected")) == 1

    lock = notified.workspace.root / "reports" / "allocations.yaml"
    lock.write_text(lock.read_text() + "# edited\n")
    reconcile_once(notified.ws, trigger="interval", apply=False, commit=False, scan=False)
    first, second = notified.events("drift.detected")  # the .env is the same drift; the lock file a new one
    assert first["data"]["details"][0].startswith("! file.generated/shop/prod/.env: edited by hand")
    assert (second["data"]["project"], second["data"]["environment"]) == ("shop", "")
    assert second["data"]["details"] == ["! file.reports/allocations.yaml: reports/allocations.yaml is edited "
                                         "since the last apply; it is rewritten"]


def test_a_watcher_that_applies_repairs_the_drift_and_says_so(notified: Notified) -> None:
    notified.qrm("apply", "--yes")
    env = notified.workspace.root / "generated" / "shop" / "prod" / ".env"
    env.write_text("DEBUG=1\n")

    result = reconcile_once(notified.ws, trigger="interval", apply=True, commit=False, scan=False)

    assert result.outcome == "applied"
    [drift] = notified.events("drift.detected")
    assert "repaired by the apply" in drift["data"]["summary"] and drift["data"]["link"] == PUBLIC + "/ui/history"
    assert "DEBUG" not in json.dumps(drift)


def test_a_receiver_that_is_down_never_fails_the_apply_and_gets_the_event_later(notified: Notified) -> None:
    notified.hook.down()
    failed_apply(notified)  # exits 1 for its own failure, and its delivery pass fails quietly
    [row] = notify.notify_log(notified.ws)
    assert (row.kind, row.status, row.attempts) == ("apply.failed", "pending", 1)

    notified.hook.up()
    notify.deliver_due(notified.ws, now=notify.time.time() + 2)  # after the first backoff (1 s)
    assert [d.payload["type"] for d in notified.hook.verified] == ["apply.failed"]


def test_every_secret_value_is_masked_out_of_an_event_before_it_is_enqueued(notified: Notified) -> None:
    """A test's failure reason may quote a page that shows a secret: the outbox never holds it."""
    leaky = Event("tests.failed", f"page shows {PROJECT_SECRET}", "shop", "prod",
                  details=(f"home: body was 'password={PROJECT_SECRET}'",))
    assert notify_events.emit_all(notified.ws, [leaky]) == 1
    [row] = notify.notify_log(notified.ws)
    assert PROJECT_SECRET not in row.summary and "***" in row.summary
    [delivery] = notified.deliver()
    assert PROJECT_SECRET not in delivery.body.decode()
    assert delivery.payload["data"]["details"] == ["home: body was 'password=***'"]


def test_a_workspace_without_alerts_emits_nothing(workspace: Workspace, monkeypatch: pytest.MonkeyPatch,
                                                  hook: Receiver) -> None:
    n = make(workspace, monkeypatch, hook)
    (workspace.root / "manifests" / "alerts" / "all.yaml").unlink()
    failed_apply(n)
    assert notify.notify_log(n.ws) == [] and hook.received == []


# --- tests.failed, tests.flaky and the gate ------------------------------------------------------------

def gated(url: str, *, blocking: bool = True, retries: int = 0) -> str:
    """Suite `gate` on shop/prod against the Quantum stand-in: `home` passes, `broken` fails, `flaky` passes
    on its second attempt (the stand-in answers /flaky with a 500 every other time)."""
    return f"""---
kind: TestSuite
name: gate
project: shop
auto_run: true
block_on_failure: {str(blocking).lower()}
environments: [prod]
cases:
  - {{id: home, name: home page, type: smoke, request: {{path: /}}, expect: [{{status: 200}}]}}
  - {{id: broken, name: broken page, type: smoke, request: {{path: /broken}}, expect: [{{no_errors: true}}]}}
  - {{id: flaky, name: flaky page, type: smoke, retries: {retries}, request: {{path: /flaky}},
     expect: [{{status: 200}}]}}
"""


@pytest.fixture
def suite_ws(workspace: Workspace, monkeypatch: pytest.MonkeyPatch, hook: Receiver, quantum: Running) -> Notified:
    quantum.state.hits.pop("/flaky", None)
    return make(workspace, monkeypatch, hook, prod=f', url: "{quantum.url}"', extra=gated(quantum.url, retries=1))


def test_a_failing_blocking_suite_after_apply_sends_tests_failed_and_deploy_blocked(suite_ws: Notified) -> None:
    suite_ws.qrm("apply", "--yes", code=3)  # the gate: what was applied stays applied

    [failed] = suite_ws.events("tests.failed")
    data = failed["data"]
    assert (data["project"], data["environment"], data["severity"]) == ("shop", "prod", "critical")
    assert data["summary"] == "blocking suite gate failed on prod: 1 of 3 case(s) failed"
    assert len(data["details"]) == 1 and data["details"][0].startswith("broken (broken page): ")
    assert failed["data"]["link"].startswith(PUBLIC + "/ui/test-runs/")
    [blocked] = suite_ws.events("deploy.blocked")
    assert "blocking suite gate failed after apply #1 on prod" in blocked["data"]["summary"]
    assert blocked["data"]["link"] == PUBLIC + "/ui/tests/gate"
    assert_no_secret(suite_ws.hook.verified)


def test_a_case_that_passes_only_on_a_retry_is_tests_flaky(suite_ws: Notified) -> None:
    suite_ws.qrm("tests", "run", "gate", code=3)

    [flaky] = suite_ws.events("tests.flaky")
    assert flaky["data"]["severity"] == "warning"
    assert flaky["data"]["summary"] == "suite gate on prod: 1 case(s) passed only on a retry"
    [line] = flaky["data"]["details"]
    assert line.startswith("flaky (flaky page): passed on attempt 2 after: ")


def test_a_suite_that_does_not_block_sends_no_tests_failed(workspace: Workspace, monkeypatch: pytest.MonkeyPatch,
                                                           hook: Receiver, quantum: Running) -> None:
    n = make(workspace, monkeypatch, hook, prod=f', url: "{quantum.url}"', extra=gated(quantum.url, blocking=False))
    n.qrm("tests", "run", "gate")
    assert n.events("tests.failed") == [] and n.events("deploy.blocked") == []


# --- health: transitions only, after the damping ----------------------------------------------------------

# U: the health endpoint answers 200 in that round, D: 500. Only DDDDD reaches failures_before_critical, and only
# the UUU after them success_before_passing: one critical, one recovered, whatever the flapping around them.
FLAPPING = "UDUDUDUDDDDDUDUDUUUDUDUDU"


def test_a_flapping_service_sends_one_critical_and_one_recovered_not_twenty(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch, hook: Receiver, servers: Servers) -> None:
    """failures_before_critical: 3 and success_before_passing: 2 absorb the flapping; three failures in a row make
    it critical once, two successes in a row passing once. Its first round (before its server is up) is the
    critical a new check starts with: not announced, so its coming up is not a recovery either."""
    from reconciler.flows.services import check_health

    health = ", health: {path: /health, timeout: 2s, failures_before_critical: 3, success_before_passing: 2}"
    n = make(workspace, monkeypatch, hook, web=", protocol: http" + health)
    n.qrm("apply", "--yes")
    port = next(s.service.port for s in check_health(n.ws).services if s.name == "shop-prod-web")
    switch = Switch(200)
    servers.status(switch, port=port)
    statuses = []
    for state in "UU" + FLAPPING:
        switch.status = 200 if state == "U" else 500
        web = next(s for s in check_health(n.ws).services if s.name == "shop-prod-web")
        statuses.append(web.status)

    assert "critical" in statuses and statuses[-1] == "passing"
    events = [e for e in n.events() if e["type"].startswith("health.") and "shop-prod-web" in e["data"]["summary"]]
    assert [(e["type"], e["data"]["summary"]) for e in events] == [
        ("health.critical", "shop-prod-web is critical: HTTP 500"),
        ("health.recovered", "shop-prod-web is passing again")]
    critical, recovered = events
    assert recovered["data"]["recovery"] is True and recovered["data"]["severity"] == "info"
    assert critical["data"]["link"] == PUBLIC + "/ui/services"
    assert critical["data"]["details"][0].startswith(f"check: 127.0.0.1:{port} (GET http://127.0.0.1:{port}/health)")


# --- the watcher -------------------------------------------------------------------------------------------

def test_a_watcher_whose_blocking_suite_fails_sends_tests_failed_with_the_failing_cases(suite_ws: Notified) -> None:
    """A real `qrm watch --apply` process: its reconcile applies, the gate suite fails against the Quantum
    stand-in, and its delivery thread sends tests.failed (and the gate's deploy.blocked) to the receiver."""
    from tests.support.watcher import Watcher, wait_for

    watcher = Watcher(suite_ws.workspace.root, "--apply", "--no-commit", "--interval", "60")
    try:
        wait_for("tests.failed at the receiver",
                 lambda: any(d.payload["type"] == "tests.failed" for d in suite_ws.hook.verified), watcher)
        wait_for("deploy.blocked at the receiver",
                 lambda: any(d.payload["type"] == "deploy.blocked" for d in suite_ws.hook.verified), watcher)
    finally:
        assert watcher.stop() == 0, watcher.output
    assert "blocking suite(s) failed: gate" in watcher.output
    [failed] = [d.payload for d in suite_ws.hook.verified if d.payload["type"] == "tests.failed"]
    assert (failed["data"]["project"], failed["data"]["environment"]) == ("shop", "prod")
    assert [line.split(":")[0] for line in failed["data"]["details"]] == ["broken (broken page)"]
    assert_no_secret(suite_ws.hook.verified)
