"""Several replicas of one workspace as a user runs them: a bare origin, a developer's clone that pushes, and
one clone per replica, each served by its own `qrm serve --watch` process against one registry (PostgreSQL,
or a SQLite file the clones share). Waits are deadlines; nothing asserts how fast anything happened."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import api_server
from tests.support.git_repos import git
from tests.support.webhooks import hooked_workspace, shown

DEADLINE = 90.0
# A reconcile step of the watch loop or of the hooks' worker (not a follower's "not here" line).
RECONCILE = re.compile(r"reconcile \([^)]*\): (?!not here)")


def shared_registry(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """The registry URL replicas share ("postgresql": a fresh database of the session's server; "sqlite": a file
    beside the clones), and the environment they need for it (PostgreSQL's password)."""
    if kind == "postgresql":
        database = request.getfixturevalue("pg_database")
        return str(database.url), {"PGPASSWORD": str(database.password)}
    return f"sqlite:///{tmp_path / 'shared' / 'registry.db'}", {}


@dataclass
class Replicas:
    origin: Path
    dev: Path
    servers: list[api_server.Server]
    token: str  # read scope
    writer: str  # read and write scopes
    env: dict[str, str]  # the replicas' environment (the registry's URL and password)
    args: list[str]  # of `qrm serve`

    def restart(self, server: api_server.Server) -> api_server.Server:
        """A new replica in the clone of `server` (dead or stopped), in its place in `servers`."""
        fresh = api_server.start(server.root, self.env, *self.args)
        self.servers[self.servers.index(server)] = fresh
        return fresh

    def alive(self) -> list[api_server.Server]:
        return [server for server in self.servers if server.process.poll() is None]

    def role(self, server: api_server.Server) -> dict[str, Any] | None:
        """GET /hooks/status's "leader" of one replica (None when it does not answer)."""
        try:
            answer = server.get("/hooks/status", self.token)
        except httpx.TransportError:
            return None
        found: dict[str, Any] | None = answer.json()["leader"] if answer.status_code == 200 else None
        return found

    def leaders(self) -> list[api_server.Server]:
        return [server for server in self.alive() if (self.role(server) or {}).get("leader")]

    def one_leader(self, deadline: float = DEADLINE) -> api_server.Server:
        """The replica that leads, once exactly one of the live ones says it does."""
        seen: list[list[api_server.Server]] = [[]]

        def exactly_one() -> bool:
            seen[0] = self.leaders()
            return len(seen[0]) == 1

        wait_until("exactly one leader", exactly_one, self, deadline)
        [leader] = seen[0]
        return leader

    def reconciles(self, server: api_server.Server) -> list[str]:
        """The reconcile lines of one replica's log (the watch loop's and the hooks' worker's)."""
        return [line for line in server.log().splitlines() if RECONCILE.search(line)]

    def allocated(self) -> str:
        """reports/allocations.yaml as the origin has it (what the leader committed and pushed)."""
        return shown(self.origin, "reports/allocations.yaml")

    def push(self, manifests: str, message: str) -> None:
        git(self.dev, "pull", "-q", "--ff-only", "origin", "main")
        (self.dev / "manifests" / "svc.yaml").write_text(manifests)
        git(self.dev, "commit", "-qam", message)
        git(self.dev, "push", "-q", "origin", "main")

    def logs(self) -> str:
        return "\n".join(f"--- replica on port {s.port} (pid {s.process.pid}):\n{s.log()}" for s in self.servers)


def wait_until(what: str, condition: Callable[[], bool], replicas: Replicas, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; the replicas said:\n{replicas.logs()}")


@contextmanager
def replicas(base: Path, registry: str, env_extra: dict[str, str], count: int = 3, interval: float = 0.5,
             extra: tuple[str, ...] = ()) -> Iterator[Replicas]:
    """`count` clones of one origin, each under `qrm serve --watch --interval INTERVAL EXTRA` with
    QRM_REGISTRY=`registry`; each stopped (SIGTERM) at the end unless already dead."""
    env = {**api_server.environment(base / "home"), **env_extra, "QRM_REGISTRY": registry}
    origin, dev, first, token = hooked_workspace(base, env)
    writer = api_server.qrm(dev, env, "token", "create", "deployer", "--scope", "read", "--scope", "write").strip()
    git(dev, "commit", "-qam", "a write token")
    git(dev, "push", "-q", "origin", "main")
    git(first, "pull", "-q", "--ff-only")
    args = ["--watch", "--interval", str(interval), *extra]
    clones = [first]
    for number in range(2, count + 1):
        clone = base / f"served{number}"
        subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True, capture_output=True)
        clones.append(clone)
    servers: list[api_server.Server] = []
    try:
        for clone in clones:
            servers.append(api_server.start(clone, env, *args))
        yield Replicas(origin, dev, servers, token, writer, env, args)  # restart() replaces entries of this same list
    finally:
        for server in servers:
            if server.process.poll() is None:
                server.stop()


def kill(server: api_server.Server) -> None:
    """SIGKILL: no handler runs, the lease is freed only because the kernel closes the process's files and sockets."""
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=30)
