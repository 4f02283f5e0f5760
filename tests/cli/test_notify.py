"""`qrm notify test|log|deliver|enable` and `qrm validate` of Notifier and Alert manifests, against a real webhook
receiver on 127.0.0.1 verifying with the `standardwebhooks` package; and the canary: the notifier's URL token
and signing secret never appear in any output, JSON, log line, registry row or delivered payload."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator

import pytest
from click.testing import Result

from reconciler.core.notifications import Event
from reconciler.flows import notify
from reconciler.flows.secrets import set_secret
from reconciler.flows.workspace import Workspace as Ws
from tests.support.notify_receiver import Receiver, black_hole, receiver
from tests.support.notify_workspace import (
    SIGNING_SECRET,
    URL_TOKEN,
    hook_url,
    notifier,
    notifying_workspace,
)
from tests.support.workspace import Workspace

FAILED = Event("apply.failed", "port 8001 is taken", "shop", "prod", details=("web: 8001",))
CANARIES = [URL_TOKEN, SIGNING_SECRET, SIGNING_SECRET.removeprefix("whsec_"),
            base64.b64decode(SIGNING_SECRET.removeprefix("whsec_")).decode()]


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver(SIGNING_SECRET) as found:
        yield found


@pytest.fixture
def ws(workspace: Workspace, monkeypatch: pytest.MonkeyPatch, hook: Receiver) -> Ws:
    return notifying_workspace(workspace, monkeypatch, hook_url(hook.port))


def out(result: Result) -> str:
    return result.stdout + result.stderr


def test_notify_test_sends_a_verified_test_event(workspace: Workspace, ws: Ws, hook: Receiver) -> None:
    result = workspace.qrm("notify", "test", "ops")
    assert result.exit_code == 0, out(result)
    assert result.stdout.startswith(f"notifier ops: delivered (http://127.0.0.1:{hook.port} answered 200)")
    [delivery] = hook.verified
    assert delivery.payload["type"] == "notify.test"


@pytest.mark.parametrize(("answer", "message"), [
    ((404, {}), "error: notifier ops: failed: http://127.0.0.1:{port} answered 404"),
    ((503, {}), "error: notifier ops: failed: http://127.0.0.1:{port} answered 503"),
    ((410, {}), "error: notifier ops: gone: http://127.0.0.1:{port} answered 410 Gone; it is disabled until its "
                "manifest changes or `qrm notify enable ops`"),
])
def test_notify_test_that_is_not_delivered_exits_1_with_the_reason(workspace: Workspace, ws: Ws, hook: Receiver,
                                                                   answer: tuple[int, dict[str, str]],
                                                                   message: str) -> None:
    hook.answers = [answer]
    result = workspace.qrm("notify", "test", "ops")
    assert result.exit_code == 1
    assert result.stderr.strip() == message.format(port=hook.port)


def test_notify_test_of_an_unknown_notifier(workspace: Workspace, ws: Ws) -> None:
    result = workspace.qrm("notify", "test", "pager")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: unknown notifier 'pager'; known notifiers: ops"


def test_notify_log_shows_deliveries_failures_and_disabled_notifiers(workspace: Workspace, ws: Ws,
                                                                      hook: Receiver) -> None:
    assert workspace.qrm("notify", "log").stdout.strip() == "No notifications yet."
    assert not (workspace.root / ".qrm" / "registry.db").exists()  # reading the log makes no registry
    notify.emit(ws, FAILED)
    assert workspace.qrm("notify", "deliver").stdout.strip() == "1 delivered."
    hook.answers = [(410, {})]
    notify.emit(ws, Event("drift.detected", "web moved to 8002", "shop", "prod"))
    delivered = workspace.qrm("notify", "deliver")
    assert delivered.exit_code == 1
    assert delivered.stdout.splitlines() == [
        f"drift.detected to ops: gone: http://127.0.0.1:{hook.port} answered 410 Gone", "1 gone."]

    shown = workspace.qrm("notify", "log")
    assert shown.exit_code == 0
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["ID", "CREATED", "NOTIFIER", "EVENT", "WHERE", "STATUS", "ATTEMPTS", "NEXT",
                                "LAST", "ERROR"]
    assert lines[2].split()[2:7] == ["ops", "drift.detected", "shop/prod", "gone", "1"]
    assert lines[3].split()[2:7] == ["ops", "apply.failed", "shop/prod", "delivered", "1"]
    assert lines[4].startswith("notifier ops is disabled since ")
    assert lines[4].endswith("(enable it with: qrm notify enable ops)")

    as_json = json.loads(workspace.qrm("notify", "log", "--json").stdout)
    assert [(d["kind"], d["status"]) for d in as_json["deliveries"]] == [("drift.detected", "gone"),
                                                                         ("apply.failed", "delivered")]
    assert [d["name"] for d in as_json["disabled"]] == ["ops"]

    assert workspace.qrm("notify", "enable", "ops").stdout.strip() == "notifier ops is enabled."
    assert workspace.qrm("notify", "enable", "ops").stdout.strip() == "notifier ops was not disabled."
    assert json.loads(workspace.qrm("notify", "log", "--json").stdout)["disabled"] == []


def test_notify_deliver_with_nothing_due(workspace: Workspace, ws: Ws) -> None:
    result = workspace.qrm("notify", "deliver")
    assert (result.exit_code, result.stdout.strip()) == (0, "Nothing to deliver.")


def test_a_command_that_emitted_delivers_at_its_end(workspace: Workspace, ws: Ws, hook: Receiver) -> None:
    notify.emit(ws, FAILED)
    assert workspace.qrm("notify", "log").exit_code == 0  # any command: its end makes the one bounded pass
    assert len(hook.verified) == 1


def test_the_pass_at_a_commands_end_gives_up_on_a_black_hole(workspace: Workspace,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A notifier that never answers costs a command at most the one bounded pass at its end, after its output:
    the command still succeeds, and the event waits in the outbox for a retry."""
    with black_hole() as hole:
        ws = notifying_workspace(workspace, monkeypatch, hook_url(hole.port))
        notify.emit(ws, FAILED)
        result = workspace.qrm("validate")
        assert result.exit_code == 0, out(result)
        assert hole.connections == 1
        [entry] = notify.notify_log(ws)
        assert (entry.status, entry.attempts) == ("pending", 1)
        assert entry.last_error == f"no answer within the delivery pass's {notify.ONE_SHOT_BUDGET:g} s"


@pytest.mark.parametrize(("manifest", "field", "line", "message"), [
    ("kind: Alert\nname: a\nevents: ['*']\nnotifiers: [ops, pager]\n", "notifiers.1", 4,
     "unknown notifier 'pager'; known notifiers: ops"),
    ("kind: Alert\nname: a\nevents: ['*']\nprojects: [blog]\nnotifiers: [ops]\n", "projects.0", 4,
     "unknown project 'blog'; known projects: shop"),
    ("kind: Alert\nname: a\nevents: ['*']\nenvironments: [prod, qa]\nnotifiers: [ops]\n", "environments.1", 4,
     "no project has an environment 'qa'; known environments: prod, staging"),
    ("kind: Alert\nname: a\nevents: [apply.succeeded]\nnotifiers: [ops]\n", "events.0", 3,
     "apply.succeeded has severity info, below min_severity warning, so it would never be sent; "
     "set min_severity: info"),
    ("kind: Alert\nname: a\nevents: [apply.exploded]\nnotifiers: [ops]\n", "events.0", 3, "apply.failed"),
    ("kind: Notifier\nname: pager\nprovider: webhook\nurl: secret:PAGER_URL\nsigning_secret: secret:OPS_HOOK_SECRET\n",
     "url", 4, "secret PAGER_URL is not set (secrets.enc has no global PAGER_URL); a notifier's secrets are global: "
     "set it with: qrm secrets set PAGER_URL"),
    ("kind: Notifier\nname: pager\nprovider: slack\nurl: https://hooks.slack.com/services/T0/B0/x\n", "url", 4,
     "secret:NAME"),
    ("kind: Notifier\nname: pager\nprovider: email\nsmtp_host: mail.example.com\nsender: q@example.com\n"
     "to: [ops]\n", "to.0", 6, "an email address"),
    ("kind: Notifier\nname: pager\nprovider: webhook\nurl: secret:OPS_HOOK_URL\n", "signing_secret", 1,
     "webhook notifiers need signing_secret"),
])
def test_validate_names_the_file_line_and_field_of_a_notification_mistake(
        workspace: Workspace, ws: Ws, manifest: str, field: str, line: int, message: str) -> None:
    workspace.manifest("alerts/bad.yaml", manifest)
    result = workspace.qrm("validate", "--json")
    assert result.exit_code == 1
    [error] = json.loads(result.stdout)["errors"]
    assert (error["file"], error["field"], error["line"]) == ("manifests/alerts/bad.yaml", field, line)
    assert message in error["message"]


def test_the_canary_secrets_appear_nowhere(workspace: Workspace, ws: Ws, hook: Receiver,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """The URL's token and the signing secret (its text, its base64 and its key bytes) through deliveries that
    succeed, retry, fail, are refused and disable the notifier; a URL that is not one; then every output."""
    seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        hook.answers = [(500, {}), (400, {})]
        for n, summary in enumerate(["first", "second", "third"]):
            notify.emit(ws, Event("apply.failed", summary, "shop", "prod"), now=1000.0 + n)
        for result in notify.deliver_due(ws, now=2000.0):
            seen.append(repr(result))
        seen.append(out(workspace.qrm("notify", "test", "ops")))
        hook.answers = [(410, {})]
        seen.append(out(workspace.qrm("notify", "test", "ops")))
        hook.down()
        seen.append(out(workspace.qrm("notify", "enable", "ops")))
        seen.append(out(workspace.qrm("notify", "test", "ops")))
        set_secret(ws, "OPS_HOOK_URL", None, None, f"http://[::1/{URL_TOKEN}")  # not a URL
        seen.append(out(workspace.qrm("notify", "test", "ops")))
        set_secret(ws, "OPS_HOOK_URL", None, None, f"ftp://127.0.0.1/{URL_TOKEN}")
        seen.append(out(workspace.qrm("notify", "test", "ops")))
        workspace.manifest("notifiers/ops.yaml", notifier(url_secret="MISSING_URL"))
        seen.append(out(workspace.qrm("notify", "test", "ops")))
        seen.append(out(workspace.qrm("notify", "log")))
        seen.append(out(workspace.qrm("notify", "log", "--json")))
        seen.append(out(workspace.qrm("notify", "deliver")))
        seen.append(out(workspace.qrm("validate", "--json")))
    seen.append(caplog.text)
    for delivery in hook.received:
        seen.append(delivery.body.decode())
        seen.append(json.dumps({k: v for k, v in delivery.headers.items() if k != "webhook-signature"}))
    registry = (workspace.root / ".qrm" / "registry.db").read_bytes()
    assert len(hook.received) >= 4
    assert "cannot connect to http://127.0.0.1" in "".join(seen)
    for canary in CANARIES:
        assert canary.encode() not in registry
        for text in seen:
            assert canary not in text
