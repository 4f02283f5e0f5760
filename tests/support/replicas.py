"""Replicas of one workspace, for tests/server/test_shared_state.py: a bare origin and two clones of it
(`first` and `second`), each served by its own `qrm serve --push` process, both against one registry
(QRM_REGISTRY); and a workspace served alone, stopped and started again. The workspace is suites_api's (shop's
pages on the Quantum stand-in) with writes_api's host forge and its app range, a suite `home` of one passing
case, a suite `slow` whose case waits for the stand-in's /slow page (30 s), and the GitHub webhook secret."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import api_server, suites_api, writes_api
from tests.support.git_repos import git
from tests.support.paths import REPO
from tests.support.quantum_server import quantum_server
from tests.support.webhooks import GITHUB_SECRET

LEASE = "2"  # QRM_RUN_LEASE of the replicas: a killed server's run reads interrupted 2 s after its last renewal
SUITES = {
    "home": "kind: TestSuite\nname: home\nproject: shop\nenvironments: [dev]\ncases:\n"
            "  - {id: home, name: Home loads, type: smoke, request: {path: /}, expect: [{status: 200}]}\n",
    "slow": "kind: TestSuite\nname: slow\nproject: shop\nenvironments: [dev]\ncases:\n"
            "  - {id: slow, name: Slow page, type: smoke, timeout: 60s, request: {path: /slow}, "
            "expect: [{status: 200}]}\n",
}


def workspace(root: Path, env: dict[str, str], quantum_url: str) -> dict[str, str]:
    """The workspace in `root`, a committed git repository; returns its tokens (suites_api.TOKENS)."""
    tokens = suites_api.suites_workspace(root, env, quantum_url)
    (root / "manifests" / "forge.yaml").write_text(writes_api.FORGE)
    (root / "manifests" / "tests").mkdir()
    for name, text in SUITES.items():
        (root / "manifests" / "tests" / f"{name}.yaml").write_text(text)
    shutil.copy(REPO / ".sops.yaml", root / ".sops.yaml")
    api_server.qrm(root, env, "secrets", "set", "GITHUB_WEBHOOK_SECRET", input=GITHUB_SECRET + "\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "forge, the suites and the webhook secret")
    return tokens


@dataclass
class Replicas:
    origin: Path
    first: api_server.Server
    second: api_server.Server
    env: dict[str, str]


@contextmanager
def replicated(base: Path, registry: str) -> Iterator[Replicas]:
    """Two clones of one origin, each under `qrm serve --push` with QRM_REGISTRY=`registry`."""
    env = api_server.environment(base / "home")
    origin, first, second = base / "origin.git", base / "first", base / "second"
    with quantum_server() as quantum:
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
        tokens = workspace(first, env, quantum.url)
        git(first, "remote", "add", "origin", str(origin))
        git(first, "push", "-q", "-u", "origin", "main")
        subprocess.run(["git", "clone", "-q", str(origin), str(second)], check=True, capture_output=True)
        env = {**env, "QRM_REGISTRY": registry, "QRM_RUN_LEASE": LEASE}
        servers: list[api_server.Server] = []
        try:
            for root in (first, second):
                servers.append(api_server.start(root, env, "--push"))
                servers[-1].tokens = tokens
            yield Replicas(origin, servers[0], servers[1], env)
        finally:
            for server in servers:
                server.stop()


@contextmanager
def alone(base: Path) -> Iterator[tuple[Path, dict[str, str], dict[str, str]]]:
    """The workspace in base/ws (its private SQLite registry), with its Quantum stand-in running; yields the
    root, the environment and the tokens: the test starts and stops `qrm serve` itself."""
    env = {**api_server.environment(base / "home"), "QRM_RUN_LEASE": LEASE}
    with quantum_server() as quantum:
        root = base / "ws"
        yield root, env, workspace(root, env, quantum.url)
