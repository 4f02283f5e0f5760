"""Test runs that `qrm serve` starts (POST /test-suites/{suite}/run), kept in the registry from their start:
the run's id is its test_runs row's id, so GET /test-runs/{id} answers from any replica of the workspace and
after a restart, and two replicas never hand out the same id.

A running run holds a lease (RUN_LEASE seconds, QRM_RUN_LEASE to change it) that the server running it renews
every third of it. A server that stops (SIGTERM) marks its running runs interrupted at once; one that dies
(SIGKILL, a power cut) stops renewing, and the first read after the lease ran out marks the run interrupted.
A run that ends after all (its server was only slow to renew) records its outcome over that mark.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.core.errors import QrmError
from reconciler.core.test_results import ERROR, FAILED, PASSED, CaseResult, TestsOutcome
from reconciler.flows.open_registries import kept_registry
from reconciler.flows.workspace import Workspace

RUN_LEASE = 60.0  # seconds; renewed every RUN_LEASE / 3
LEASE_VARIABLE = "QRM_RUN_LEASE"
RUNNING, INTERRUPTED = "running", "interrupted"
DIED = "the server running it stopped renewing its lease (killed, or cut off from the registry) before it finished"
STOPPED = "the server running it stopped (SIGTERM) before it finished"


def run_lease() -> float:
    """RUN_LEASE, or QRM_RUN_LEASE seconds (at least 1)."""
    given = os.environ.get(LEASE_VARIABLE)
    if not given:
        return RUN_LEASE
    try:
        seconds = float(given)
    except ValueError:
        raise QrmError(f"{LEASE_VARIABLE}={given!r} is not a number of seconds") from None
    if not seconds >= 1:
        raise QrmError(f"{LEASE_VARIABLE}={given!r}: expected at least 1 second")
    return seconds


def _stamp(moment: datetime) -> str:
    from reconciler.edges.registry import stamp

    return stamp(moment)


def _until(lease: float) -> str:
    return _stamp(datetime.now(UTC) + timedelta(seconds=lease))


@dataclass
class RunDocument:
    """What GET /test-runs/{id} shows of a run: its row and its cases' results."""

    id: int
    suite: str
    environment: str
    status: str
    passed: int = 0
    failed: int = 0  # failed and errors
    skipped: int = 0
    results: list[dict[str, str]] = field(default_factory=list)  # id, name, type, outcome, reason; by id
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.id, "suite": self.suite, "environment": self.environment, "status": self.status,
                "passed": self.passed, "failed": self.failed, "skipped": self.skipped, "results": self.results,
                **({"error": self.error} if self.error is not None else {})}


def live_document(run_id: int, suite: str, environment: str, results: Sequence[CaseResult]) -> RunDocument:
    """A running run as the server running it sees it: the cases that ended so far."""
    counted = [r for r in results if r.outcome in (PASSED, FAILED, ERROR)]
    return RunDocument(run_id, suite, environment, RUNNING, sum(1 for r in counted if r.outcome == PASSED),
                       sum(1 for r in counted if r.outcome != PASSED), len(results) - len(counted),
                       [{"id": r.case_id, "name": r.name, "type": r.type, "outcome": r.outcome, "reason": r.reason}
                        for r in sorted(results, key=lambda r: r.case_id)])


def start_run(ws: Workspace, suite: str, environment: str, lease: float) -> int:
    """The registry row of a run about to start (status running, its lease); its id."""
    with kept_registry(ws) as registry:
        return registry.start_test_run(suite, environment, started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                                       lease_until=_until(lease))


def renew_runs(ws: Workspace, run_ids: Sequence[int], lease: float) -> None:
    with kept_registry(ws) as registry:
        registry.renew_test_runs(run_ids, _until(lease))


def execute_run(ws: Workspace, run_id: int, suite: str, environment: str,
                on_result: Callable[[CaseResult], None]) -> TestsOutcome:
    """Run the suite on the environment (`qrm tests run SUITE --env ENV`: its reports, its history line),
    finishing the run's row with its counts and results."""
    from reconciler.flows.tests_run import run_tests

    return run_tests(ws, suite, [environment], on_result=on_result, started={(suite, environment): run_id})


def end_run(ws: Workspace, run_id: int, status: str, error: str) -> None:
    """A run that ended without results (`error`: it could not run; `interrupted`: its server stopped)."""
    with kept_registry(ws) as registry:
        if status == INTERRUPTED:
            registry.interrupt_test_runs(error, run_ids=[run_id])
        else:
            registry.record_test_runs([({"id": run_id, "status": status, "error": error,
                                         "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}, [])])


def interrupt_runs(ws: Workspace, run_ids: Sequence[int], reason: str = STOPPED) -> list[int]:
    """Mark these runs interrupted if they still run (a server that stops marks its own)."""
    if not run_ids:
        return []
    with kept_registry(ws) as registry:
        return registry.interrupt_test_runs(reason, run_ids=run_ids)


def read_run(ws: Workspace, run_id: int) -> RunDocument | None:
    """A run of this workspace from the registry (None when there is none of that id); a running run whose
    lease ran out is marked interrupted first."""
    with kept_registry(ws) as registry:
        row = registry.test_run_row(run_id)
        if row is None:
            return None
        now = _stamp(datetime.now(UTC))
        if row["status"] == RUNNING and (row["lease_until"] or "") < now:
            registry.interrupt_test_runs(DIED, run_ids=[run_id], lease_before=now)
            row = registry.test_run_row(run_id) or row
        results = sorted(registry.test_result_rows([run_id]), key=lambda r: r["case_id"])
    return RunDocument(run_id, row["suite"], row["environment"], row["status"], row["passed"], row["failed"],
                       row["skipped"], [{"id": r["case_id"], "name": r["name"], "type": r["type"],
                                         "outcome": r["outcome"], "reason": r["reason"]} for r in results],
                       row["error"])


def last_run_id(ws: Workspace) -> int:
    """The highest run id of this workspace (0 when none): for a 404's message."""
    with kept_registry(ws) as registry:
        return registry.last_test_run_id()


@dataclass(frozen=True)
class RunTimes:
    """When a run started and ended, and how long it took (for the dashboard's run page)."""

    started_at: str
    finished_at: str
    duration_ms: float


def run_times(ws: Workspace, run_id: int) -> RunTimes | None:
    """The run's start, end and duration as the registry has them; None when there is no such run."""
    with kept_registry(ws) as registry:
        row = registry.test_run_row(run_id)
    if row is None:
        return None
    return RunTimes(row["started_at"] or "", row["finished_at"] or "", float(row["duration_ms"] or 0.0))


def reported_attempts(ws: Workspace, suite: str, environment: str, started_at: str) -> dict[str, list[dict[str, Any]]]:
    """Case id -> its attempts (status, ms, passed, failures) as reports/tests/SUITE/ENV.yaml has them, when that
    report is of the run that started at `started_at` (the report keeps only an environment's latest run; the
    registry keeps each attempt's count, not its messages); {} otherwise or when the report cannot be read."""
    import json
    import re

    from reconciler.core.models import NAME_PATTERN

    for name, kind in ((suite, "a suite"), (environment, "an environment")):  # names, never paths
        if len(name) > 63 or re.fullmatch(NAME_PATTERN, name) is None:
            raise QrmError(f"{kind.split()[1]} {name!r} is not {kind} name")
    path = ws.reports / "tests" / suite / f"{environment}.yaml"
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {}
    # The report is a header of `key: JSON` lines, then one JSON flow mapping per case (tests_run.environment_report).
    header = next((line for line in lines if line.startswith("started_at: ")), None)
    try:
        if header is None or json.loads(header.removeprefix("started_at: ")) != started_at:
            return {}
    except ValueError:
        return {}
    found: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if not line.startswith("- {"):
            continue
        try:
            case = json.loads(line[2:])
        except ValueError:
            continue  # a damaged line: that case shows without its attempts
        attempts = case.get("attempts") if isinstance(case, dict) else None
        if isinstance(case.get("id"), str) and isinstance(attempts, list):
            found[case["id"]] = [a for a in attempts if isinstance(a, dict)]
    return found
