"""What happened to the workspace, for the dashboard's History page: the applies the registry recorded
(when, git revision, who wrote that revision, outcome, counts) and the report commits qrm made."""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.edges import git_repo
from reconciler.flows.recorded import open_registry
from reconciler.flows.workspace import Workspace


@dataclass(frozen=True)
class AppliedRecord:
    """One apply: the registry's record, and the author of its git revision (None outside git)."""

    id: int
    started_at: str
    finished_at: str | None
    revision: str | None  # the commit, with "+dirty" when the manifests differed from it
    author: str | None
    outcome: str  # success | failed
    counts: dict[str, int] = field(default_factory=dict)  # create, update, delete, repair
    error: str | None = None


def applies(ws: Workspace, limit: int = 50) -> list[AppliedRecord]:
    """The newest `limit` applies of this workspace, newest first; none without a registry."""
    registry = open_registry(ws, create=False)
    if registry is None:
        return []
    try:
        records = registry.history(limit=limit)
    finally:
        registry.close()
    commits = [r.revision.removesuffix("+dirty") for r in records if r.revision]
    authors = git_repo.commit_authors(ws.root, commits) if commits else {}
    return [AppliedRecord(r.id, r.started_at, r.finished_at, r.revision,
                          authors.get((r.revision or "").removesuffix("+dirty")), r.outcome,
                          {k: int(v) for k, v in (r.summary.get("counts") or {}).items()}, r.error)
            for r in records]


def report_commits(ws: Workspace, limit: int = 50) -> list[git_repo.LoggedCommit] | None:
    """The newest `limit` report commits qrm made in the workspace's repository; None outside git."""
    return git_repo.report_log(ws.root, limit)
