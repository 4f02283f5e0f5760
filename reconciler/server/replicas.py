"""Replicas of `qrm serve --watch` (flows/leader): this server's Leadership, kept on the app, and its role
as GET /hooks/status shows it under "leader"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from reconciler.flows.hooks import HookWorker
from reconciler.flows.leader import Leadership, replica_name
from reconciler.flows.workspace import Workspace


def leadership(app: FastAPI, workspace: Callable[[], Workspace], say: Callable[[str], None]) -> Leadership:
    """This server's Leadership (the watch loop and the hooks' worker ask it before each reconcile)."""
    found = Leadership(workspace, say, replica_name())
    app.state.leadership = found
    return found


def retire(app: FastAPI, worker: HookWorker) -> None:
    """The watch loop ended without being asked to (another watcher holds this folder): this server lets go
    of the lease and no longer asks for it, so it never leads without the loop that would apply on each
    interval; its hooks' worker leaves pushes to the leader."""
    found: Leadership | None = getattr(app.state, "leadership", None)
    if found is not None:
        worker.lead = lambda: False
        found.close()


def state(app: FastAPI) -> dict[str, Any] | None:
    """{"leader": whether this replica reconciles, "holder": who does, "lease": the lock}; None without --watch
    (a server that does not watch takes no lease: its hooks' worker reconciles as before)."""
    found: Leadership | None = getattr(app.state, "leadership", None)
    if found is None:
        return None
    role = found.state()
    return {"leader": role.leader, "holder": role.holder, "lease": role.lease}
