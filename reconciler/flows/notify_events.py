"""The emitting side of notifications: each place where something worth hearing about happens calls one function
here, which builds the events (core/notify_events, pure) and hands them to flows/notify.emit, the one path.

Places: flows/apply (apply.failed, apply.succeeded, deploy.blocked for a plan with conflicts), flows/reconcile
(drift.detected and the gate's deploy.blocked in `qrm watch` and `qrm serve --watch`), the CLI's apply gate
(deploy.blocked), flows/tests_run.run_tests (tests.failed, tests.flaky: `qrm tests run`, apply's and the
watcher's auto_run suites, the server's runs and post-deploy tests), flows/services.check_health
(health.critical, health.recovered: `qrm services health`, the watcher's and the server's rounds) and
`qrm secrets rotate` (secret.rotated: the CLI calls secret_rotated after flows/secrets.rotate, since flows/notify
resolves notifier secrets through flows/secrets, which therefore cannot import this module back).

A workspace without an Alert pays nothing: flows/notify (and its provider edges) is imported only when an Alert
is declared. Every secret value of the workspace is masked out of an event before it is enqueued (a test's
failure reason may quote a page that shows one), and emitting never raises: a notification must not fail the
work it reports on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

from reconciler.core import notify_events as events
from reconciler.core.changes import Change, Plan
from reconciler.core.errors import ManifestError, QrmError
from reconciler.core.escaping import masked
from reconciler.core.health import CheckSpec, HealthRecord
from reconciler.core.notifications import Event
from reconciler.core.state import DesiredState, RecordedService
from reconciler.core.test_results import SuiteRun
from reconciler.edges import files
from reconciler.flows.workspace import Workspace

log = logging.getLogger(__name__)
MIN_SECRET_LENGTH = 4  # as the report commit's check: shorter values match too much ordinary text
ANNOUNCED_FILE = "health-announced.json"  # under .qrm/: the services announced critical, not recovered yet


def _desired(ws: Workspace, desired: DesiredState | None) -> DesiredState:
    if desired is not None:
        return desired
    from reconciler.flows.desired import validate

    return validate(ws)[0]  # the valid documents: a workspace with a bad manifest still notifies


def _mask(event: Event, secrets: Sequence[str]) -> Event:
    def clean(text: str) -> str:
        return masked(text, secrets)

    return replace(event, summary=clean(event.summary), details=tuple(clean(line) for line in event.details),
                   link=clean(event.link))


def _secret_values(ws: Workspace) -> list[str]:
    """Every secret value (longest first), or [] when there is no secrets.enc or no key to read it."""
    if not ws.secrets_file.exists():
        return []
    from reconciler.flows.secrets import plaintext_values

    values = plaintext_values(ws) or []
    return sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def emit_all(ws: Workspace, found: Sequence[Event], desired: DesiredState | None = None) -> int:
    """Emit each event through flows/notify.emit (with the secret values masked); the rows enqueued. Never
    raises: a problem is a warning."""
    if not found:
        return 0
    try:
        state = _desired(ws, desired)
        if not state.alerts:
            return 0
        from reconciler.flows import notify

        secrets = _secret_values(ws)
        return sum(notify.emit(ws, _mask(event, secrets), desired=state) for event in found)
    except Exception as exc:  # a notification never fails the work it reports on (nor quotes what it was)
        log.warning("notifications (%s) not emitted: %s", ", ".join(sorted({e.kind for e in found})),
                    exc if isinstance(exc, QrmError) else type(exc).__name__)
        return 0


def _public_url(ws: Workspace) -> str | None:
    return ws.settings.public_url


# --- the places -------------------------------------------------------------------------------------------

def apply_failed(ws: Workspace, error: BaseException, desired: DesiredState | None, plan: Plan | None) -> int:
    """An apply that failed: the error (for invalid manifests, each problem with its file, line and field)."""
    details: list[str] = []
    if isinstance(error, ManifestError):
        details = [str(problem) for problem in error.problems]
        message = f"invalid manifests ({len(error.problems)} problem(s)); nothing was applied"
    else:
        message = str(error) or type(error).__name__
    state = desired if desired is not None else _valid_or_none(ws)
    scope = events.scope_of(plan.changes, state) if plan is not None else events.workspace_scope(state)
    return emit_all(ws, [events.apply_failed(ws.name, message, scope, _public_url(ws), details)], state)


def _valid_or_none(ws: Workspace) -> DesiredState | None:
    try:
        return _desired(ws, None)
    except (QrmError, OSError, ValueError):
        return None


def apply_succeeded(ws: Workspace, plan: Plan, apply_id: int | None, desired: DesiredState) -> int:
    scope = events.scope_of(plan.changes, desired)
    return emit_all(ws, [events.apply_succeeded(ws.name, plan, apply_id, scope, _public_url(ws))], desired)


def plan_blocked(ws: Workspace, plan: Plan, desired: DesiredState) -> int:
    """An apply refused for its plan's conflicts or errors: about the project of the conflicting services."""
    scope = events.scope_of([Change("update", f"service.{c.service}") for c in plan.conflicts], desired)
    return emit_all(ws, [events.plan_blocked(ws.name, plan, scope, _public_url(ws))], desired)


def gate_blocked(ws: Workspace, runs: Sequence[SuiteRun], apply_id: int | None) -> int:
    """The post-apply gate: a blocking auto_run suite failed after an apply (`qrm apply` exits 3)."""
    return emit_all(ws, events.gate_blocked(ws.name, runs, apply_id, _public_url(ws)))


def drift_detected(ws: Workspace, plan: Plan, desired: DesiredState, repaired: bool) -> int:
    return emit_all(ws, events.drift_detected(ws.name, plan, desired, _public_url(ws), repaired), desired)


def health_round(ws: Workspace, records: Sequence[HealthRecord], specs: Mapping[str, CheckSpec],
                 services: Mapping[str, RecordedService]) -> int:
    """health.critical / health.recovered of a round. Which services were announced critical is kept in
    .qrm/health-announced.json (written only when it changes), so each outage is one critical and one recovered
    whatever the rounds in between (the rounds of `qrm services health`, the watcher and the server alike)."""
    path = ws.state_dir / ANNOUNCED_FILE
    try:
        announced = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        announced = {}  # unreadable: each service critical now is announced (once) again
    if not isinstance(announced, dict):
        announced = {}
    found, now = events.health_transitions(announced, records, specs, services, _public_url(ws))
    if now != announced:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            files.write_atomic(path, json.dumps(now, indent=1, sort_keys=True) + "\n", root=None)
        except OSError as exc:
            log.warning("%s not written: %s", path, exc)
    return emit_all(ws, found)


def tests_ran(ws: Workspace, runs: Sequence[SuiteRun], run_ids: Sequence[int], desired: DesiredState) -> int:
    """`run_ids`: the registry's ids of the runs, one per suite and environment in order (tests_history)."""
    places = [(run.suite.name, target.environment) for run in runs for target in run.targets]
    ids = dict(zip(places, run_ids, strict=False))
    return emit_all(ws, events.test_events(runs, ids, _public_url(ws)), desired)


def secret_rotated(ws: Workspace, values: int) -> int:
    """`qrm secrets rotate` gave secrets.enc a new data key: the recipients (public keys) and the time it records."""
    from reconciler.edges import sops

    try:
        recipients = sops.recipients_from_config(ws.root)
        current = sops.read_file(ws.secrets_file, "secrets.enc")
    except QrmError:
        recipients, current = [], None
    rotated_at = (current.rotated_at() if current is not None else None) or sops.utc_now()
    state = _valid_or_none(ws)
    if state is None:
        return 0
    scope = events.workspace_scope(state)
    return emit_all(ws, [events.secret_rotated(ws.name, values, recipients, rotated_at, scope, _public_url(ws))],
                    state)
