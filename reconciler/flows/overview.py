"""The dashboard's overview in one read: whether the workspace is in sync (the plan, as `qrm plan` and GET /plan
make it), the last apply the registry recorded (when, revision, who made that revision, outcome), the suites
whose latest run failed in some environment (`qrm tests compare`), and the services whose last health check
did not pass (`qrm services list`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.core.errors import ManifestError, QrmError
from reconciler.core.health import ServiceHealth
from reconciler.edges import git_repo
from reconciler.flows.workspace import Workspace

IN_SYNC, PENDING, DRIFT, BLOCKED, INVALID = "in sync", "pending", "drift", "blocked", "invalid"
SHOWN = 8  # failing services listed on the card; the rest are counted


@dataclass(frozen=True)
class SyncState:
    state: str  # IN_SYNC | PENDING | DRIFT | BLOCKED | INVALID
    pending: int  # changes to create, update or delete
    repairs: int  # drift: files and records on disk that differ from what was applied
    detail: str  # one line: what the plan says, or why there is no plan


@dataclass(frozen=True)
class ApplySeen:
    id: int
    when: str  # finished (or started, for one that never finished), ISO 8601
    revision: str | None
    author: str | None  # the revision's git author, and the caller of a write commit
    outcome: str  # success | failed
    error: str | None


@dataclass(frozen=True)
class FailingSuite:
    suite: str
    environment: str
    failed: int
    ran: int
    when: str


@dataclass
class Overview:
    sync: SyncState
    last_apply: ApplySeen | None
    failing: list[FailingSuite] = field(default_factory=list)
    suites: int = 0  # suites with at least one run
    unhealthy: list[ServiceHealth] = field(default_factory=list)  # warning or critical, at most SHOWN
    unhealthy_total: int = 0
    unchecked: int = 0  # services no health round has checked yet
    services: int = 0


def sync_state(ws: Workspace, refresh: bool = True) -> SyncState:
    """In sync, N changes pending, drift (repairs), or a plan blocked by conflicts or invalid manifests."""
    from reconciler.flows.plan import plan_workspace

    try:
        with plan_workspace(ws, refresh=refresh) as context:
            plan = context.plan
    except ManifestError as exc:
        more = f" and {len(exc.problems) - 1} more" if len(exc.problems) > 1 else ""
        return SyncState(INVALID, 0, 0, f"{exc.problems[0]}{more}")
    except QrmError as exc:
        return SyncState(INVALID, 0, 0, str(exc))
    counts = plan.counts()
    pending = counts["create"] + counts["update"] + counts["delete"]
    repairs = counts["repair"]
    if plan.blocked:
        reason = plan.conflicts[0].message if plan.conflicts else plan.errors[0]
        return SyncState(BLOCKED, pending, repairs, reason)
    if repairs:
        return SyncState(DRIFT, pending, repairs, f"{repairs} to repair, {pending} other change(s)")
    if pending:
        return SyncState(PENDING, pending, 0, f"{counts['create']} to create, {counts['update']} to update, "
                                              f"{counts['delete']} to delete")
    return SyncState(IN_SYNC, 0, 0, "the plan has no changes")


def last_apply_seen(ws: Workspace) -> ApplySeen | None:
    """The newest apply in the registry's history, successful or not."""
    from reconciler.flows.recorded import open_registry

    registry = open_registry(ws, create=False)
    if registry is None:
        return None
    try:
        records = registry.history(limit=1)
    finally:
        registry.close()
    if not records:
        return None
    record = records[0]
    author = git_repo.commit_author(ws.root, record.revision) if record.revision else None
    return ApplySeen(record.id, record.finished_at or record.started_at, record.revision, author, record.outcome,
                     record.error)


def failing_suites(ws: Workspace, suites: list[str]) -> tuple[list[FailingSuite], int]:
    """Per suite the latest run of each environment that failed (`qrm tests compare`); and how many of the
    suites have run at all."""
    from reconciler.flows.tests_history import compare

    failing: list[FailingSuite] = []
    ran = 0
    for suite in suites:
        try:
            comparison = compare(ws, suite)
        except QrmError:  # never run yet
            continue
        ran += 1
        failing += [FailingSuite(suite, env, run.failed, run.passed + run.failed, run.started_at)
                    for env, run in comparison.latest.items() if run.failed]
    return failing, ran


def overview(ws: Workspace, refresh: bool = True) -> Overview:
    from reconciler.flows.desired import load_desired
    from reconciler.flows.services import catalog

    seen = Overview(sync_state(ws, refresh), last_apply_seen(ws))
    try:
        suites = sorted(load_desired(ws).suites)
    except QrmError:
        suites = []  # invalid manifests: the sync card says why
    seen.failing, seen.suites = failing_suites(ws, suites)
    services = catalog(ws).services
    bad = [s for s in services if s.status in ("warning", "critical")]
    bad.sort(key=lambda s: (s.status != "critical", s.name))
    seen.unhealthy, seen.unhealthy_total = bad[:SHOWN], len(bad)
    seen.unchecked = sum(1 for s in services if s.status == "unknown")
    seen.services = len(services)
    return seen
