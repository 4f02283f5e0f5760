"""flows/hooks.hook_secret: a webhook's secret read from a real secrets.enc (the example's demo age key), again
when the file changes, and a reason naming the secret (never a value) when it cannot be read."""

from __future__ import annotations

import os
import shutil

import pytest

from reconciler.core.webhooks import GITHUB_SECRET, GITLAB_SECRET
from reconciler.flows.hooks import HookSecretMissing, hook_secret
from reconciler.flows.secrets import set_secret
from reconciler.flows.workspace import open_workspace
from tests.support.paths import REPO
from tests.support.workspace import Workspace

DEMO_KEY = REPO / "examples" / "demo-age-key.txt"


def test_the_secret_is_read_and_read_again_when_secrets_enc_changes(workspace: Workspace,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(DEMO_KEY))
    shutil.copy(REPO / ".sops.yaml", workspace.root / ".sops.yaml")
    ws = open_workspace(workspace.root)
    set_secret(ws, GITHUB_SECRET, None, None, "first-value")
    assert hook_secret(ws, GITHUB_SECRET) == "first-value"
    set_secret(ws, GITHUB_SECRET, None, None, "second-value-longer")
    assert hook_secret(ws, GITHUB_SECRET) == "second-value-longer"

    with pytest.raises(HookSecretMissing) as missing:
        hook_secret(ws, GITLAB_SECRET)
    assert str(missing.value) == ("secrets.enc has no secret GITLAB_WEBHOOK_TOKEN (the hook's secret is "
                                  "GITLAB_WEBHOOK_TOKEN: qrm secrets set GITLAB_WEBHOOK_TOKEN)")

    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    stamp = (workspace.root / "secrets.enc").stat().st_mtime_ns + 1_000_000
    os.utime(workspace.root / "secrets.enc", ns=(stamp, stamp))  # a new version of the file: read again, without a key
    with pytest.raises(HookSecretMissing) as no_key:
        hook_secret(ws, GITHUB_SECRET)
    assert "GITHUB_WEBHOOK_SECRET" in str(no_key.value) and "second-value-longer" not in str(no_key.value)


def test_without_secrets_enc_the_reason_says_how_to_set_the_secret(workspace: Workspace) -> None:
    with pytest.raises(HookSecretMissing) as missing:
        hook_secret(open_workspace(workspace.root), GITHUB_SECRET)
    assert str(missing.value) == "there is no secrets.enc; set the hook's secret: qrm secrets set GITHUB_WEBHOOK_SECRET"
