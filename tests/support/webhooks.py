"""A workspace clone served by `qrm serve` with its webhook secrets set, for tests/server/test_hooks.py: a bare
origin, a developer's clone (which pushes) and the served clone, all real git; the secrets are set with
`qrm secrets set` (the example's demo age key) and committed; deliveries are signed here as GitHub, GitLab
and a Standard Webhooks sender sign them."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import api_server
from tests.support.git_repos import git, services
from tests.support.paths import REPO

GITHUB_SECRET = "gh-" + uuid.uuid4().hex
GITLAB_TOKEN = "gl-" + uuid.uuid4().hex
GENERIC_SECRET = "whsec_" + "c2VjcmV0LWtleS1vZi10aGUtd2ViaG9vay1zZW5kZXI="  # base64 of a 32-byte key


@dataclass
class Hooked:
    server: api_server.Server
    origin: Path
    dev: Path
    token: str  # a read token, for GET /hooks/status

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(self.server.url + path, content=body, headers=headers, timeout=30)

    def github(self, event: str, payload: dict[str, Any], *, delivery: str | None = None,
               secret: str = GITHUB_SECRET, signature: str | None = None) -> httpx.Response:
        """POST /hooks/github as GitHub sends it: the raw JSON body, its HMAC-SHA256 in X-Hub-Signature-256."""
        body = json.dumps(payload).encode()
        signed = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-GitHub-Event": event,
                   "X-GitHub-Delivery": delivery or str(uuid.uuid4()), "User-Agent": "GitHub-Hookshot/test"}
        if signature != "":
            headers["X-Hub-Signature-256"] = signature or signed
        return self.post("/hooks/github", body, headers)

    def status(self) -> dict[str, Any]:
        document: dict[str, Any] = self.server.get("/hooks/status", self.token).json()
        return document

    def settled(self, reconciles: int = 0, test_runs: int = 0, deadline: float = 90) -> dict[str, Any]:
        """/hooks/status once the worker has started at least these jobs and has nothing in hand or waiting."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            found = self.status()
            if (found["reconciles"] >= reconciles and found["test_runs"] >= test_runs and not found["busy"]
                    and not found["pending"] and not found["queued_tests"]):
                return found
            time.sleep(0.1)
        raise AssertionError(f"the hooks' worker did not settle: {self.status()}\n{self.server.log()}")

    def push(self, manifests: str, message: str) -> str:
        """A developer's commit of manifests/svc.yaml, pushed to origin; its sha."""
        git(self.dev, "pull", "-q", "--ff-only", "origin", "main")
        (self.dev / "manifests" / "svc.yaml").write_text(manifests)
        git(self.dev, "commit", "-qam", message)
        git(self.dev, "push", "-q", "origin", "main")
        return git(self.dev, "rev-parse", "HEAD").strip()


def shown(repo: Path, path: str, revision: str = "main") -> str:
    done = subprocess.run(["git", "-C", str(repo), "show", f"{revision}:{path}"], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


def wait_for(what: str, condition: Any, server: api_server.Server, deadline: float = 90) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; the server said:\n{server.log()}")


def hooked_workspace(base: Path, env: dict[str, str], extra_manifests: str = "",
                     extra_secrets: dict[str, str] | None = None) -> tuple[Path, Path, Path, str]:
    """origin, dev and the served clone (manifests/svc.yaml with service a, plus `extra_manifests` in
    manifests/extra.yaml), with the three webhook secrets (and the global `extra_secrets`) and a read token
    `ops` committed; returns the token too."""
    origin, dev, served = base / "origin.git", base / "dev", base / "served"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    subprocess.run(["git", "clone", "-q", str(origin), str(dev)], check=True, capture_output=True)
    (dev / "manifests").mkdir()
    (dev / "manifests" / "svc.yaml").write_text(services("a"))
    if extra_manifests:
        (dev / "manifests" / "extra.yaml").write_text(extra_manifests)
    (dev / ".gitignore").write_text(".qrm/\n")
    shutil.copy(REPO / ".sops.yaml", dev / ".sops.yaml")
    (dev / "qrm.yaml").write_text("# served with webhooks\nname: hooked\n")
    for name, value in (("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET), ("GITLAB_WEBHOOK_TOKEN", GITLAB_TOKEN),
                        ("WEBHOOK_SECRET", GENERIC_SECRET), *(extra_secrets or {}).items()):
        api_server.qrm(dev, env, "secrets", "set", name, input=value + "\n")
    token = api_server.qrm(dev, env, "token", "create", "ops", "--scope", "read").strip()
    git(dev, "add", "-A")
    git(dev, "commit", "-qm", "manifests, webhook secrets and a token")
    git(dev, "push", "-q", "origin", "main")
    subprocess.run(["git", "clone", "-q", str(origin), str(served)], check=True, capture_output=True)
    return origin, dev, served, token


@contextmanager
def hooked(base: Path, *args: str, extra_manifests: str = "", key: bool = True,
           extra_secrets: dict[str, str] | None = None) -> Iterator[Hooked]:
    """The served clone under `qrm serve ARGS` (without the age key when not `key`); stopped at the end, when
    no secret value (nor the read token) may be in its log."""
    env = api_server.environment(base / "home")
    origin, dev, served, token = hooked_workspace(base, env, extra_manifests, extra_secrets)
    if not key:
        env = {k: v for k, v in env.items() if k != "SOPS_AGE_KEY_FILE"}
    server = api_server.start(served, env, *args)
    try:
        yield Hooked(server, origin, dev, token)
    finally:
        server.stop()
    leaked = [name for name, value in (("GitHub secret", GITHUB_SECRET), ("GitLab token", GITLAB_TOKEN),
                                       ("generic secret", GENERIC_SECRET.removeprefix("whsec_")), ("token", token))
              if value in server.log()]
    assert not leaked, f"the server's log shows the {', '.join(leaked)}"
    assert "Traceback" not in server.log(), server.log()
