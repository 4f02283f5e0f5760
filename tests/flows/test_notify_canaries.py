"""The canary leak test, for every provider: a notifier's secret values (the token in its URL, the webhook's
signing secret, the SMTP password) never appear in a delivery's reason, `notify log`, the outbox rows, any log
record of ours (caplog at debug), or what the receiver gets in the message: only where the protocol needs the
credential (the URL the request goes to, the SMTP AUTH exchange, the webhook's signature header).

Each provider goes through the whole path against a real receiver on 127.0.0.1: an event emitted to two
notifiers, `live` (its receiver first answers a transient error, then takes the message) and `dead` (nothing
listens), delivery passes stepped through the backoff, and `qrm notify test` of the dead one."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.core.notifications import Event
from reconciler.flows import notify
from reconciler.flows.recorded import open_registry
from reconciler.flows.secrets import set_secret
from reconciler.flows.workspace import Workspace as Ws
from tests.support import notify_receiver as rx
from tests.support.notify_workspace import ALERT, SIGNING_SECRET, URL_TOKEN, notifying_workspace
from tests.support.workspace import Workspace

SMTP_PASSWORD = "canary-smtp-password-c0ffee"
CANARIES = (URL_TOKEN, SIGNING_SECRET, SIGNING_SECRET.removeprefix("whsec_"), "canary-signing-key-5e1f",
            SMTP_PASSWORD)
EVENT = Event("apply.failed", "port 8001 is taken", "shop", "prod", details=("web: 8001 held by pid 4242",),
              link="https://qrm.example.com/ui/history")
T0 = 1_800_000_000.0
# The receivers' own loggers: the other side of the wire, which is given the credential by design.
RECEIVER_LOGGERS = ("mail.log", "aiohttp.access", "aiohttp.server", "aiohttp.web")


@dataclass
class Scenario:
    manifests: str  # the Notifier documents `live` and `dead`
    live_url: str  # the value of the secret LIVE_URL ("" for email)
    dead_url: str
    received: list[bytes]  # what the live receiver got, filled as it gets it


def _http(provider: str, receiver: rx.HttpReceiver, dead_port: int) -> Scenario:
    def url(port: int) -> str:
        if provider == "apprise":
            return f"json://127.0.0.1:{port}/hooks/{URL_TOKEN}"
        if provider == "slack":
            return f"http://127.0.0.1:{port}/services/T0/B0/{URL_TOKEN}"
        return f"http://127.0.0.1:{port}/hook?token={URL_TOKEN}"

    signing = "signing_secret: secret:OPS_HOOK_SECRET\n" if provider == "webhook" else ""
    manifests = "---\n".join(f"kind: Notifier\nname: {name}\nprovider: {provider}\nurl: secret:{name.upper()}_URL\n"
                             f"{signing}" for name in ("live", "dead"))
    return Scenario(manifests, url(receiver.port), url(dead_port), [])


@contextlib.contextmanager
def scenario(provider: str, workspace: Workspace, tmp_path: Path) -> Iterator[Scenario]:
    dead_port = rx.free_port()
    if provider == "email":
        with rx.smtp_server(tmp_path, username="qrm-bot", password=SMTP_PASSWORD,
                            data_replies=("451 4.3.0 try again later",)) as server:
            (workspace.root / "smtp-ca.pem").write_bytes(server.ca_file.read_bytes())
            manifests = "---\n".join(
                f"kind: Notifier\nname: {name}\nprovider: email\nsmtp_host: 127.0.0.1\nsmtp_port: {port}\n"
                "username: qrm-bot\npassword: secret:SMTP_PASSWORD\nsender: qrm@example.com\nto: [ops@example.com]\n"
                "tls_ca_file: smtp-ca.pem\n" for name, port in (("live", server.port), ("dead", dead_port)))
            found = Scenario(manifests, "", "", [])
            yield found
            found.received += [message.as_bytes() for message in server.mailbox.messages]
        return
    answer: rx.Answer = (503, "", {}) if provider != "slack" else rx.SLACK_SERVER_ERROR
    with rx.http_receiver(slack=provider == "slack", answers=[answer]) as receiver:
        found = _http(provider, receiver, dead_port)
        yield found
        found.received += [seen.body for seen in receiver.seen]


def _outbox(ws: Ws) -> list[dict[str, object]]:
    registry = open_registry(ws, create=False)
    assert registry is not None
    try:
        return registry.notification_rows(100)
    finally:
        registry.close()


@pytest.mark.parametrize("provider", ["webhook", "slack", "email", "apprise"])
def test_no_secret_value_leaks_from_any_provider(provider: str, workspace: Workspace, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with scenario(provider, workspace, tmp_path) as found:
        ws = notifying_workspace(workspace, monkeypatch, "unused", notifiers=found.manifests,
                                 alert=ALERT.replace("[ops]", "[live, dead]"))
        for name, value in (("LIVE_URL", found.live_url), ("DEAD_URL", found.dead_url),
                            ("SMTP_PASSWORD", SMTP_PASSWORD)):
            set_secret(ws, name, None, None, value or "unused")
        assert notify.emit(ws, EVENT, now=T0) == 2
        results = notify.deliver_due(ws, now=T0)
        assert sorted((r.notifier, r.status) for r in results) == [("dead", "retry"), ("live", "retry")]
        results += notify.deliver_due(ws, now=T0 + 5)
        assert ("live", "delivered") in [(r.notifier, r.status) for r in results[2:]]
        results.append(notify.send_test(ws, "dead", now=T0 + 6))
        assert results[-1].status == "failed"
        entries = notify.notify_log(ws)
        rows = _outbox(ws)
    assert found.received, "the live receiver got the message"
    seen = {
        "reasons": [r.reason for r in results],
        "notify log": [json.dumps(dataclasses.asdict(entry)) for entry in entries],
        "outbox rows": [json.dumps(row, default=str) for row in rows],
        "log records": [f"{r.name}: {r.getMessage()}" for r in caplog.records
                        if not r.name.startswith(RECEIVER_LOGGERS)],
        "message received": [body.decode("utf-8", "replace") for body in found.received],
    }
    assert all(reason for reason in seen["reasons"])  # every outcome says why, so the check has text to look at
    leaks = {where: [text for text in texts if any(canary in text for canary in CANARIES)]
             for where, texts in seen.items()}
    assert leaks == {where: [] for where in seen}
