"""A workspace whose events reach a real webhook receiver, for the tests of every event kind (tests/flows,
tests/cli, tests/server test_notify_events.py): project shop (prod) whose .env holds a project secret, the
webhook notifier `ops` (tests/support/notify_workspace.py), an Alert of every event from info up, and
qrm.yaml's public_url; the suite `gate` against the Quantum stand-in; the canary check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from reconciler.flows import notify
from reconciler.flows.secrets import set_secret
from reconciler.flows.workspace import Workspace as Ws
from reconciler.flows.workspace import open_workspace
from tests.support.notify_receiver import Delivery, Receiver, receiver
from tests.support.notify_workspace import SIGNING_SECRET, URL_TOKEN, hook_url, notifying_workspace
from tests.support.workspace import Workspace

PUBLIC = "https://qrm.example.com"
PROJECT_SECRET = "canary-db-password-77c1"  # a project secret that lands in generated/shop/prod/.env
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
# The web service's health check: three failures in a row make it critical, two successes passing.
DAMPED = (", protocol: http, "
          "health: {path: /health, timeout: 2s, failures_before_critical: 3, success_before_passing: 2}")


def gated(url: str, *, blocking: bool = True, retries: int = 1) -> str:
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

    def received(self, kind: str) -> list[dict[str, Any]]:
        """What the receiver got of `kind`, without a delivery pass of this process."""
        return [d.payload for d in self.hook.verified if d.payload["type"] == kind]

    def qrm(self, *args: str, code: int = 0) -> str:
        result = self.workspace.qrm(*args)
        assert result.exit_code == code, result.output
        return result.output


def notified_workspace(workspace: Workspace, monkeypatch: pytest.MonkeyPatch, hook: Receiver, *, prod: str = "",
                       web: str = "", alert: str = EVERYTHING, extra: str = "") -> Notified:
    """The workspace written (manifests, qrm.yaml, secrets.enc with the canaries); nothing applied yet."""
    workspace.write("qrm.yaml", f"public_url: {PUBLIC}/\n")
    notifying_workspace(workspace, monkeypatch, hook_url(hook.port), alert=alert)
    workspace.manifest("shop.yaml", SHOP.format(prod=prod, web=web) + extra)
    set_secret(open_workspace(workspace.root), "DB_PASSWORD", "shop", None, PROJECT_SECRET)
    return Notified(workspace, hook)


def assert_no_secret(deliveries: list[Delivery]) -> None:
    """The canary: no secret value of the workspace in any delivery's body or headers (the URL token is in the
    query of the URL it was sent to, which is where it belongs)."""
    for delivery in deliveries:
        sent = delivery.body.decode() + json.dumps(delivery.headers)
        for secret in SECRETS:
            assert secret not in sent, f"a secret value leaked into {delivery.payload['type']}"


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A receiver that verifies the workspace's signing secret (tests/conftest.py's `hook`). What a test emitted
    through flows (not a command, which delivers at its end) is this process's to deliver: delivered on the way
    out, while the receiver is up, it is not left to a later test's one-shot pass."""
    with receiver(SIGNING_SECRET) as found:
        yield found
        notify.deliver_after_command()
