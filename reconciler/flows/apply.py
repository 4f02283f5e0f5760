"""`qrm apply`: under the workspace lock and the hosts' allocation locks, plan again, then write
the generated files, the registry, the lock file and reports/state.yaml.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from reconciler.core import generated
from reconciler.core.changes import Plan
from reconciler.core.errors import (
    AllocationError,
    QrmError,
    StalePlanError,
)
from reconciler.core.plan import REGISTRY_ADDRESS, secrets_after, services_after
from reconciler.core.report import (
    LOCKFILE_PATH,
    STATE_PATH,
    render_lockfile,
    render_state,
)
from reconciler.core.state import DesiredState, RecordedService, RecordedState
from reconciler.core.summary import SUMMARY_PATH
from reconciler.edges import files, git_repo, machine_key
from reconciler.edges.locks import workspace_lock
from reconciler.edges.registry import Registry
from reconciler.flows import generated_files, notify_events
from reconciler.flows.desired import load_desired
from reconciler.flows.plan import PlanContext, check_saved_plan, plan_workspace
from reconciler.flows.recorded import open_registry
from reconciler.flows.workspace import Workspace

log = logging.getLogger(__name__)

@dataclass
class ApplyOutcome:
    plan: Plan
    applied: bool
    apply_id: int | None = None
    lockfile_written: bool = False
    messages: list[str] = field(default_factory=list)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def apply_workspace(
    ws: Workspace,
    *,
    saved: dict[str, Any] | None = None,
    refresh: bool = True,
    targets: tuple[str, ...] = (),
    excludes: tuple[str, ...] = (),
    lock_timeout: float | None = None,
    approve: Callable[[Plan], bool] = lambda plan: True,
    desired: DesiredState | None = None,
    host: str | None = None,
) -> ApplyOutcome:
    """`desired`: the state the caller already loaded (a watcher's reconcile), else read here.
    `host`: apply as that host's own machine (`qrm apply --host`): probe its listeners here and
    write only its services and the files of its environments."""
    timeout = ws.settings.lock_timeout if lock_timeout is None else lock_timeout
    with workspace_lock(ws.lock_file, timeout):
        # Notifications (flows/notify_events): an apply that fails is apply.failed, one refused for its plan's
        # conflicts deploy.blocked, one that applied apply.succeeded. A stale saved plan is the user's to redo.
        planned: list[Plan] = []  # the plan, once made
        blocked: list[Plan] = []  # the plan, when it has conflicts or errors
        try:
            if desired is None:
                desired = load_desired(ws)  # before the registry: invalid manifests must not even create it
            outcome = _apply_locked(ws, saved=saved, refresh=refresh, targets=targets, excludes=excludes,
                                    approve=approve, desired=desired, host=host, planned=planned, blocked=blocked)
        except StalePlanError:
            raise
        except (QrmError, OSError) as exc:
            if blocked:
                assert desired is not None
                notify_events.plan_blocked(ws, blocked[0], desired)
            else:
                notify_events.apply_failed(ws, exc, desired, planned[0] if planned else None)
            raise
        if outcome.applied:
            notify_events.apply_succeeded(ws, outcome.plan, outcome.apply_id, desired)
        return outcome


def _apply_locked(ws: Workspace, *, saved: dict[str, Any] | None, refresh: bool, targets: tuple[str, ...],
                  excludes: tuple[str, ...], approve: Callable[[Plan], bool], desired: DesiredState,
                  host: str | None, planned: list[Plan], blocked: list[Plan]) -> ApplyOutcome:
    """The apply, under the workspace lock: `planned` gets the plan once made, `blocked` too when it is blocked."""
    started = _now()
    if saved is not None:
        filters = saved.get("filters") or {}
        targets, excludes = tuple(filters.get("target", ())), tuple(filters.get("exclude", ()))
        host = next(iter(filters.get("host", ())), None)
        refresh = bool(saved.get("refreshed", True))
    if desired.projects:  # generated files: what is recorded of a .env is keyed (made here, before the plan)
        machine_key.ensure_key()
    registry = open_registry(ws, create=True)
    assert registry is not None
    try:
        # The allocation lock of each host is held from the plan (which reads what every workspace has
        # taken) to the commit of its allocations, also while a person answers "apply?" (as Terraform
        # holds its state lock): two applies, on any machines, never hand out the same port.
        with registry.allocation_lock(desired.host_names()) as waited:
            if waited > 0.01:
                log.info("waited %.2f s for the allocation lock of %s", waited, ", ".join(desired.host_names()))
            ctx = plan_workspace(ws, refresh=refresh, targets=targets, excludes=excludes, registry=registry,
                                 desired=desired, host=host)
            plan = ctx.plan
            planned.append(plan)
            if saved is not None:
                check_saved_plan(saved, _as_planned_without_registry(saved, ctx))
            if plan.blocked:
                blocked.append(plan)
                raise AllocationError("; ".join([c.message for c in plan.conflicts] + list(plan.errors))
                                      + "; nothing was applied")
            if plan.empty:
                return ApplyOutcome(plan, applied=False)
            if not approve(plan):
                return ApplyOutcome(plan, applied=False, messages=["Apply cancelled."])
            final = services_after(ctx.recorded, plan.changes)
            removed, added = _registry_delta(ctx.recorded, final)
            secrets_now = secrets_after(ctx.recorded, plan.changes)
            # Every path apply writes is checked before the first write (no symlink leads out of the
            # workspace). Files first (they may need the key; a failure leaves the registry as it was),
            # then the registry; when its commit fails the files are put back, so files and registry agree.
            # (reports/summary.md too: `apply --commit` and watch write it right after.)
            files.check_all_inside(ws.root, [ws.root / p for p in (LOCKFILE_PATH, STATE_PATH, SUMMARY_PATH)])
            applied = generated_files.apply_files(ws.root, ctx.desired, final, plan.changes, ws.secrets_file)
            files_removed, files_written = applied.removed, applied.written
            files_now = {path: f for path, f in ctx.recorded.files.items() if path not in files_removed}
            files_now.update((f.path, f) for f in files_written)
            if ctx.recorded.origin == "registry":  # plain .env hashes of an older qrm: keyed from now on
                files_written += generated_files.rekeyed(ws.root, ctx.recorded.files,
                                                         [*files_removed, *(f.path for f in files_written)])
                files_now.update((f.path, f) for f in files_written)
            restoring = ctx.recorded.origin == "lockfile"  # the registry is empty: record everything
            revision = git_repo.head_revision(ws.root)
            summary = {"counts": plan.counts(), "changes": [f"{c.symbol} {c.address}" for c in plan.changes[:200]]}
            try:
                apply_id = registry.write(
                    removed, added, revision=revision, summary=summary, started_at=started,
                    secrets=secrets_now if restoring or secrets_now != ctx.recorded.secrets else None,
                    files_removed=files_removed,
                    files_written=[files_now[p] for p in sorted(files_now)] if restoring else files_written)
            except BaseException as exc:
                applied.undo(ws.root)
                if isinstance(exc, QrmError):
                    _record_failure(registry, revision=revision, summary=summary, started_at=started,
                                    error=str(exc))
                raise
            written = files.write_atomic(ws.root / LOCKFILE_PATH, render_lockfile(final.values()), root=ws.root)
            if secrets_now or files_now or (ws.root / STATE_PATH).exists():
                files.write_atomic(ws.root / STATE_PATH, render_state(secrets_now, files_now.values()),
                                   root=ws.root)
            log.info("apply #%s: %s; lock file %s", apply_id, plan.counts(), "written" if written else "unchanged")
            return ApplyOutcome(plan, applied=True, apply_id=apply_id, lockfile_written=written)
    finally:
        registry.close()


def _record_failure(registry: Registry, *, revision: str | None, summary: dict[str, Any], started_at: str,
                    error: str) -> None:
    """Record a failed apply in the registry's history when it still takes a write (the registry that
    just refused the apply often does not: then the apply's own error is what the user sees)."""
    try:
        registry.record_failure(revision=revision, summary=summary, started_at=started_at, error=error)
    except QrmError as exc:
        log.info("the failed apply could not be recorded in the registry: %s", exc)


def _as_planned_without_registry(saved: dict[str, Any], ctx: PlanContext) -> PlanContext:
    """A plan saved where there was no registry (from the committed reports) could not see what
    restoring the registry repairs: compare it without those repairs (apply still makes them)."""
    if saved.get("recorded_from") != "reports" or ctx.recorded.origin != "lockfile":
        return ctx
    kept = tuple(c for c in ctx.plan.changes if not (c.action == "repair" and (
        c.address == REGISTRY_ADDRESS or c.address.startswith(generated.GENERATED_PREFIX))))
    return replace(ctx, plan=replace(ctx.plan, changes=kept))


def _registry_delta(
    recorded: RecordedState, final: dict[str, RecordedService]
) -> tuple[list[str], list[RecordedService]]:
    """Names to remove and services to (re)insert so the registry holds exactly `final`."""
    if recorded.origin == "lockfile":
        return [], [final[name] for name in sorted(final)]
    removed = sorted(name for name, before in recorded.services.items() if final.get(name) != before)
    added = [final[name] for name in sorted(final) if recorded.services.get(name) != final[name]]
    return removed, added
