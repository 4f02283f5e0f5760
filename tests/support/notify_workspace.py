"""A workspace that notifies: a project `shop` (prod, staging), a webhook Notifier `ops` whose URL and signing
secret are global secrets (set in a real secrets.enc under the example's demo age key), and an Alert `all`
sending every event of warning and up to it. The values are canaries: tests assert they never leak."""

from __future__ import annotations

import base64
import shutil

import pytest

from reconciler.flows.secrets import set_secret
from reconciler.flows.workspace import Workspace as Ws
from reconciler.flows.workspace import open_workspace
from tests.support.paths import REPO
from tests.support.workspace import Workspace

DEMO_KEY = REPO / "examples" / "demo-age-key.txt"
# A Standard Webhooks secret whose key bytes are themselves a recognisable canary.
SIGNING_SECRET = "whsec_" + base64.b64encode(b"canary-signing-key-5e1f").decode()
URL_TOKEN = "canary-url-token-93ab"

PROJECT = """\
kind: Project
name: shop
environments:
  prod: {host: localhost}
  staging: {host: localhost}
services:
  web: {type: app}
"""


def notifier(name: str = "ops", url_secret: str = "OPS_HOOK_URL", extra: str = "") -> str:
    return (f"kind: Notifier\nname: {name}\nprovider: webhook\nurl: secret:{url_secret}\n"
            f"signing_secret: secret:OPS_HOOK_SECRET\n{extra}")


ALERT = """\
kind: Alert
name: all
events: ["*"]
notifiers: [ops]
"""


def hook_url(port: int, path: str = "/hook") -> str:
    """The receiver's URL with the canary token in its query (a URL is a credential)."""
    return f"http://127.0.0.1:{port}{path}?token={URL_TOKEN}"


def notifying_workspace(workspace: Workspace, monkeypatch: pytest.MonkeyPatch, url: str,
                        notifiers: str | None = None, alert: str = ALERT) -> Ws:
    """The workspace with its manifests and secrets written; the opened flows Workspace."""
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(DEMO_KEY))
    shutil.copy(REPO / ".sops.yaml", workspace.root / ".sops.yaml")
    workspace.manifest("shop.yaml", PROJECT)
    workspace.manifest("notifiers/ops.yaml", notifiers if notifiers is not None else notifier())
    workspace.manifest("alerts/all.yaml", alert)
    ws = open_workspace(workspace.root)
    set_secret(ws, "OPS_HOOK_URL", None, None, url)
    set_secret(ws, "OPS_HOOK_SECRET", None, None, SIGNING_SECRET)
    return ws
