"""Which notification events a piece of work makes (pure): an apply that failed, succeeded or was refused, the
drift a reconcile found, a health round's transitions, a test run's blocking failures and flaky cases, a
rotation of the secrets' data key.

Every function here takes plain values and gives Events (core/notifications); flows/notify_events.py emits
them through flows/notify.emit, the one path. Nothing here holds a secret value: summaries and details are
built from names, addresses, counts and the reasons qrm itself writes (flows scrubs every secret value out of
them once more before emitting).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from reconciler.core.changes import Change, Plan
from reconciler.core.generated import GENERATED_PREFIX
from reconciler.core.health import CRITICAL, PASSING, CheckSpec, HealthRecord
from reconciler.core.notifications import Event
from reconciler.core.state import DesiredState, RecordedService
from reconciler.core.test_results import ERROR, FAILED, SuiteRun

MAX_DETAILS = 20  # lines of details an event carries at most (then "... and N more")
MAX_SEPARATE = 10  # more health transitions of one kind in one project/environment in one round: one event

# The dashboard page each event links to (under Settings.public_url).
PAGE_HISTORY = "/ui/history"
PAGE_PLAN = "/ui/plan"
PAGE_SERVICES = "/ui/services"
PAGE_SECRETS = "/ui/secrets"


def link(public_url: str | None, page: str) -> str:
    """The dashboard URL of `page` (e.g. /ui/tests/shop-auto), or "" when `qrm serve` has no public URL configured
    (a link to 127.0.0.1 would point at the reader's own machine)."""
    return f"{public_url.rstrip('/')}/{page.lstrip('/')}" if public_url else ""


def suite_page(suite: str) -> str:
    return f"/ui/tests/{suite}"


def run_page(run_id: int) -> str:
    return f"/ui/test-runs/{run_id}"


def _capped(lines: Sequence[str]) -> tuple[str, ...]:
    if len(lines) <= MAX_DETAILS:
        return tuple(lines)
    return (*lines[:MAX_DETAILS - 1], f"... and {len(lines) - MAX_DETAILS + 1} more")


@dataclass(frozen=True)
class Scope:
    """Which project and environment an event about the workspace is about: the one concerned, else ""."""

    project: str = ""
    environment: str = ""


def _address_scope(change: Change, desired: DesiredState | None) -> tuple[str | None, str | None] | None:
    """(project, environment) of a change's subject: a project service's instance or a generated file
    (generated/PROJECT/ENVIRONMENT/...); None for a workspace-wide record (registry, lock file)."""
    if change.address.startswith("service."):
        name = change.address.removeprefix("service.")
        instance = desired.instances.get(name) if desired is not None else None
        if instance is not None:
            return instance.project, instance.environment
        side = change.before or change.after or {}
        return side.get("project"), side.get("environment")
    if change.address.startswith(GENERATED_PREFIX):
        parts = change.address.removeprefix(GENERATED_PREFIX).split("/")
        return (parts[0], parts[1]) if len(parts) >= 3 else (parts[0], None)
    return None


def scope_of(changes: Iterable[Change], desired: DesiredState | None) -> Scope:
    """The one project (and environment) the changes concern; a workspace of one project is about it."""
    projects: set[str | None] = set()
    environments: set[str | None] = set()
    for change in changes:
        found = _address_scope(change, desired)
        if found is not None:
            projects.add(found[0])
            environments.add(found[1])
    if not projects and desired is not None and len(desired.projects) == 1:
        return Scope(next(iter(desired.projects)))
    project = next(iter(projects)) if len(projects) == 1 else None
    environment = next(iter(environments)) if project and len(environments) == 1 else None
    return Scope(project or "", environment or "")


def workspace_scope(desired: DesiredState | None) -> Scope:
    """A workspace of one project is about that project; any other about none in particular."""
    if desired is not None and len(desired.projects) == 1:
        return Scope(next(iter(desired.projects)))
    return Scope()


def _counts_phrase(counts: Mapping[str, int]) -> str:
    return (f"{counts.get('create', 0)} created, {counts.get('update', 0)} updated, {counts.get('delete', 0)} deleted"
            + (f", {counts['repair']} repaired" if counts.get("repair") else ""))


# --- apply -----------------------------------------------------------------------------------------------

def apply_failed(workspace: str, error: str, scope: Scope, public_url: str | None,
                 details: Sequence[str] = ()) -> Event:
    """An apply that raised: the error's first line in the summary, the whole error (and `details`) the details."""
    lines = [line for line in error.splitlines() if line.strip()] or ["(no message)"]
    return Event("apply.failed", f"apply of {workspace} failed: {lines[0]}", scope.project, scope.environment,
                 details=_capped([*lines, *details]), key="\x1f".join(["apply.failed", workspace, error, *details]),
                 link=link(public_url, PAGE_HISTORY))


def apply_succeeded(workspace: str, plan: Plan, apply_id: int | None, scope: Scope, public_url: str | None) -> Event:
    changes = [f"{c.symbol} {c.address}" for c in plan.changes]
    return Event("apply.succeeded", f"apply #{apply_id} of {workspace}: {_counts_phrase(plan.counts())}",
                 scope.project, scope.environment, details=_capped(changes),
                 key=f"apply.succeeded\x1f{workspace}\x1f{apply_id}", link=link(public_url, PAGE_HISTORY))


def plan_blocked(workspace: str, plan: Plan, scope: Scope, public_url: str | None) -> Event:
    """An apply refused before writing anything: its plan has conflicts or errors."""
    lines = [f"{c.service}: {c.message}" for c in plan.conflicts] + list(plan.errors)
    what = f"{len(plan.conflicts)} conflict(s)" if plan.conflicts else f"{len(plan.errors)} error(s)"
    return Event("deploy.blocked", f"apply of {workspace} refused: the plan has {what}; nothing was applied",
                 scope.project, scope.environment, details=_capped(lines),
                 key="deploy.blocked\x1f" + workspace + "\x1f" + "\x1f".join(sorted(lines)),
                 link=link(public_url, PAGE_PLAN))


def gate_blocked(workspace: str, runs: Sequence[SuiteRun], apply_id: int | None, public_url: str | None) -> list[Event]:
    """The post-apply gate stopped a deploy (`qrm apply` exits 3): one event per blocking suite that failed,
    on the project and environments it failed on."""
    events = []
    for run in runs:
        if not run.blocks:
            continue
        failed_on = sorted({r.environment for r in run.results if r.outcome in (FAILED, ERROR)})
        applied = f"after apply #{apply_id}" if apply_id is not None else "after the apply"
        events.append(Event(
            "deploy.blocked",
            f"blocking suite {run.suite.name} failed {applied} on {', '.join(failed_on)}: the deploy is blocked",
            run.suite.project, failed_on[0] if len(failed_on) == 1 else "",
            details=(f"what was applied stays applied; fix and re-run `qrm tests run {run.suite.name}`, or revert",),
            key=f"deploy.blocked\x1f{workspace}\x1f{run.suite.name}\x1f{apply_id}",
            link=link(public_url, suite_page(run.suite.name))))
    return events


# --- drift -----------------------------------------------------------------------------------------------

def drift_detected(workspace: str, plan: Plan, desired: DesiredState | None, public_url: str | None,
                   repaired: bool) -> list[Event]:
    """The plan's repairs (generated files edited by hand or missing, registry rows and records that differ),
    one event per project and environment (workspace-wide records in their own); the key is the set of
    drifted addresses, so the same drift is one notification per dedupe window."""
    groups: dict[tuple[str, str], list[Change]] = {}
    for change in plan.changes:
        if change.action != "repair":
            continue
        found = _address_scope(change, desired)
        where = ((found[0] or "", found[1] or "") if found is not None
                 else (workspace_scope(desired).project, ""))
        groups.setdefault(where, []).append(change)
    events = []
    for (project, environment), changes in sorted(groups.items()):
        addresses = sorted(c.address for c in changes)
        outcome = "repaired by the apply" if repaired else "not repaired (plan only: `qrm apply` repairs it)"
        events.append(Event(
            "drift.detected", f"{len(changes)} thing(s) drifted in {workspace}: {outcome}", project, environment,
            details=_capped([f"! {c.address}: {c.reason}" for c in sorted(changes, key=lambda c: c.address)]),
            key="drift.detected\x1f" + workspace + "\x1f" + "\x1f".join(addresses),
            link=link(public_url, PAGE_HISTORY if repaired else PAGE_PLAN)))
    return events


# --- health ----------------------------------------------------------------------------------------------

def health_transitions(announced: Mapping[str, str], records: Iterable[HealthRecord],
                       specs: Mapping[str, CheckSpec], services: Mapping[str, RecordedService],
                       public_url: str | None) -> tuple[list[Event], dict[str, str]]:
    """The events of a health round, and the services announced critical after it (service -> its check).

    health.critical when a service's damped status is critical by its failures (failures_before_critical
    reached) and it was not announced yet; health.recovered when an announced service is passing. A new check
    starts critical (Consul's rule) without being announced, so a service that comes up after its first
    check passes quietly; flapping the damping absorbs makes nothing, and each outage one pair. A round in
    which more than MAX_SEPARATE services of one project and environment change the same way is one event
    naming them (a mass outage is one message, not hundreds)."""
    changed: dict[tuple[str, str, str], list[tuple[HealthRecord, RecordedService, CheckSpec]]] = {}
    now: dict[str, str] = {}
    for record in records:
        spec = specs.get(record.service)
        service = services.get(record.service)
        if spec is None or service is None:
            continue
        was = announced.get(record.service) == record.target  # another check (the service moved) starts afresh
        kind = ""
        if record.status == CRITICAL and (was or record.failures >= spec.failures_before_critical):
            now[record.service] = record.target
            kind = "" if was else "health.critical"
        elif record.status == PASSING and was:
            kind = "health.recovered"
        elif was:  # warning, or critical on its way back (successes not enough yet): still announced
            now[record.service] = record.target
        if kind:
            changed.setdefault((kind, service.project or "", service.environment or ""), []).append(
                (record, service, spec))
    page = link(public_url, PAGE_SERVICES)
    events: list[Event] = []
    for (kind, project, environment), group in changed.items():
        recovery = kind == "health.recovered"
        if len(group) > MAX_SEPARATE:
            names = sorted(record.service for record, _, _ in group)
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            events.append(Event(
                kind, f"{len(group)} services are {'passing again' if recovery else 'critical'}: {shown}", project,
                environment, details=_capped([_health_line(record) for record, _, _ in group]),
                key="\x1f".join(["health", kind, project, environment, *names]), link=page, recovery=recovery))
            continue
        for record, service, spec in group:
            where = f"{record.address or f'{service.host}:{service.port}'} ({spec.description})"
            streak = (f"{record.successes} consecutive success(es)" if recovery
                      else f"{record.failures} consecutive failure(s)")
            events.append(Event(
                kind, _health_line(record), project, environment, details=(f"check: {where}", streak),
                key=f"health\x1f{record.service}\x1f{kind}", link=page, recovery=recovery))
    return events, now


def _health_line(record: HealthRecord) -> str:
    if record.status == PASSING:
        return f"{record.service} is passing again"
    return f"{record.service} is critical: {record.reason}"


# --- tests -----------------------------------------------------------------------------------------------

def _case_line(case_id: str, name: str, reason: str) -> str:
    label = case_id if name in ("", case_id) else f"{case_id} ({name})"
    return f"{label}: {' '.join(reason.split()) or 'failed'}"


def test_events(runs: Sequence[SuiteRun], run_ids: Mapping[tuple[str, str], int],
                public_url: str | None) -> list[Event]:
    """tests.failed for each environment a blocking suite (block_on_failure) failed on, with the failing cases;
    tests.flaky for each environment where a case passed only on a retry. `run_ids`: (suite, environment) ->
    the registry's run id, for the link to the run's page."""
    events = []
    for run in runs:
        suite = run.suite.name
        for target in run.targets:
            env = target.environment
            results = [r for r in run.results if r.environment == env]
            run_id = run_ids.get((suite, env))
            page = run_page(run_id) if run_id is not None else suite_page(suite)
            failing = [r for r in results if r.outcome in (FAILED, ERROR)]
            if run.suite.block_on_failure and failing:
                outage = run.outage(env)
                lines = [outage] if outage is not None else [_case_line(r.case_id, r.name, r.reason) for r in failing]
                counts = run.counts(env)
                events.append(Event(
                    "tests.failed", f"blocking suite {suite} failed on {env}: {len(failing)} of "
                    f"{len(results) - counts['skipped']} case(s) failed", run.suite.project, env,
                    details=_capped(lines),
                    key="tests.failed\x1f" + "\x1f".join([suite, env, *sorted(r.case_id for r in failing)]),
                    link=link(public_url, page)))
            flaky = [r for r in results if r.flaky]
            if flaky:
                lines = [_case_line(r.case_id, r.name, f"passed on attempt {len(r.attempts)}"
                                    + (f" after: {'; '.join(r.attempts[0].failures())}"
                                       if r.attempts[0].failures() else ""))
                         for r in flaky]
                events.append(Event(
                    "tests.flaky", f"suite {suite} on {env}: {len(flaky)} case(s) passed only on a retry",
                    run.suite.project, env, details=_capped(lines),
                    key="tests.flaky\x1f" + "\x1f".join([suite, env, *sorted(r.case_id for r in flaky)]),
                    link=link(public_url, page)))
    return events


# --- secrets ---------------------------------------------------------------------------------------------

def secret_rotated(workspace: str, values: int, recipients: Sequence[str], rotated_at: str, scope: Scope,
                   public_url: str | None) -> Event:
    """A new data key for secrets.enc: how many values were re-encrypted, for which recipients (public keys);
    each rotation is its own event (its time is in the key)."""
    return Event("secret.rotated", f"the data key of {workspace}'s secrets.enc was rotated: {values} value(s) "
                 "re-encrypted", scope.project, scope.environment,
                 details=_capped([f"recipient: {r}" for r in recipients]),
                 key=f"secret.rotated\x1f{workspace}\x1f{rotated_at}",
                 link=link(public_url, PAGE_SECRETS))
