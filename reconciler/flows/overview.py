"""The dashboard's overview in one read: whether the workspace is in sync (the plan, as `qrm plan` and GET /plan
make it), the last apply the registry recorded (when, revision, who made that revision, outcome), the suites
whose latest run failed in some environment (`qrm tests compare`), and the services whose last health check
did not pass (`qrm services list`); and that read kept for a long-running server (kept_overview)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core.errors import ManifestError, QrmError
from reconciler.core.health import ServiceHealth
from reconciler.edges import git_repo
from reconciler.flows.cached_reads import Reads, file_mark
from reconciler.flows.desired import state_key
from reconciler.flows.workspace import Workspace

IN_SYNC, PENDING, DRIFT, BLOCKED, INVALID = "in sync", "pending", "drift", "blocked", "invalid"
SHOWN = 8  # failing services listed on the card; the rest are counted
# Seconds an overview is reused while nothing it is marked by changed: the plan also reads what no mark shows,
# the listeners on the machine (a port another program took or freed) and the generated files on disk (drift by
# hand), so a change of those shows within this; short enough for a person, long enough that a burst of loads
# and the refetches of several open pages after one event plan once.
FRESH_FOR = 3.0
OVERVIEW_BYTES = 16 * 1024  # what a kept overview counts against the kept answers' bytes (at most SHOWN services)


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


def overview_mark(ws: Workspace, reads: Reads) -> tuple[Hashable, ...]:
    """What an overview read now depends on, as flows.cached_reads marks its answers: the manifests and
    secrets.enc (their state key), the registry's revision and health revision with the committed reports, and
    the test runs (the registry's runs, and the suites' committed history files it falls back on). Not in it:
    the listeners the plan probes and the generated files it compares (kept_overview's FRESH_FOR bounds them)."""
    registry = reads.registry(ws)
    tests = registry.test_runs_revision() if registry is not None else ""
    return (state_key(ws), reads.mark(ws, registry, health=True), tests, _history_marks(ws))


def _history_marks(ws: Workspace) -> tuple[tuple[str, tuple[int, int, int, int] | None], ...]:
    """(path, inode, size and times) of each file of each suite folder under reports/tests: the committed reports
    and history the test cards read when the registry has no runs (flows.tests_history)."""
    folder = ws.reports / "tests"
    try:
        suites = sorted(entry.path for entry in os.scandir(folder) if entry.is_dir())
        files = sorted(entry.path for suite in suites for entry in os.scandir(suite) if entry.is_file())
    except (FileNotFoundError, NotADirectoryError):  # no runs yet, or a folder removed while it is read
        return ()
    return tuple((path, file_mark(Path(path))) for path in files)


def kept_overview(ws: Workspace, reads: Reads, clock: Callable[[], float] = time.monotonic) -> Overview:
    """`overview(ws)`, kept in `reads` while its mark (overview_mark) is the same, and at most FRESH_FOR seconds:
    a burst of page loads (or a few pages open on a live Overview) plans once."""
    key = ("overview", *overview_mark(ws, reads), int(clock() // FRESH_FOR))
    return reads.answer(key, lambda: overview(ws), lambda _: OVERVIEW_BYTES)


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
