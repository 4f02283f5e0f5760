"""The recorded state: what was applied, from the registry, else from the committed reports
(a fresh clone, a PR check); and the last successful apply.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from reconciler.core import summary
from reconciler.core.errors import NoRegistryError
from reconciler.core.state import ForeignAllocation, RecordedState
from reconciler.flows import committed_reports
from reconciler.flows.workspace import Workspace, sqlite_path

if TYPE_CHECKING:
    from reconciler.edges.registry import Registry


def open_registry(ws: Workspace, create: bool) -> Registry | None:
    """The registry, or None when it does not exist yet and may not be created (plan never creates one)."""
    url = ws.registry_url()
    path = sqlite_path(url)
    if not create and path is not None and not path.exists():
        return None
    # A shared registry (named by --registry, QRM_REGISTRY or qrm.yaml) is scoped to this workspace's
    # rows; the private .qrm/registry.db holds only this workspace's rows, whatever its name was.
    from reconciler.edges.registry import Registry  # here: SQLAlchemy costs ~0.25 s of a start, not every use needs it

    try:
        return Registry(url, owner=ws.name, scoped=not ws.private_registry, create=create, rebuild=rebuild_hint(ws))
    except NoRegistryError:
        return None  # an empty server database: read-only commands leave it empty


def rebuild_hint(ws: Workspace) -> str:
    """How a damaged SQLite registry is replaced (after "move it away and "): apply restores what this
    workspace applied from its committed reports (README "Registry")."""
    if ws.private_registry:
        return "run qrm apply, which rebuilds it from reports/allocations.yaml"
    return ("run qrm apply in each workspace that uses it, which rebuilds that workspace's rows from its "
            "reports/allocations.yaml")


def read_recorded(ws: Workspace, registry: Registry | None) -> RecordedState:
    services = registry.recorded_services() if registry is not None else {}
    secrets = registry.recorded_secrets() if registry is not None else {}
    generated_files = registry.recorded_files() if registry is not None else {}
    foreign = tuple(ForeignAllocation(*row) for row in registry.foreign_allocations()) if registry else ()
    if services or secrets or generated_files:
        return RecordedState(services, secrets, generated_files, foreign=foreign)
    # No registry (a fresh clone, a PR check): the committed reports are the record. An empty one
    # (.qrm/ deleted, then apply created it): they seed it, and apply restores the registry from them.
    from_reports = committed_reports.recorded_from_reports(ws.root, "reports" if registry is None else "lockfile")
    return replace(from_reports if from_reports is not None else RecordedState({}), foreign=foreign)


def recorded_state(ws: Workspace) -> RecordedState:
    """What was applied, for read-only commands: the registry if there is one, else the lock file."""
    registry = open_registry(ws, create=False)
    try:
        return read_recorded(ws, registry)
    finally:
        if registry is not None:
            registry.close()


def last_apply(ws: Workspace) -> summary.LastApply | None:
    """The last successful apply the registry recorded (failed attempts repeat and would churn reports)."""
    registry = open_registry(ws, create=False)
    if registry is None:
        return None
    try:
        for record in registry.history(limit=100):
            if record.outcome == "success":
                return summary.LastApply(record.id, record.outcome, record.finished_at, record.revision,
                                         dict(record.summary.get("counts") or {}))
    finally:
        registry.close()
    return None
