"""The Tests pages of the dashboard: the suites (/ui/tests), one suite's cases with their last result per
environment, its run history and its environment comparison (/ui/tests/{suite}), the Run button, and a run's
page (/ui/test-runs/{id}) with its failures first and each case's attempts.

The data is the API's: flows/tests_history (compare, suite_history: the registry, else the committed reports)
and the RunBook of server/suites.py, which the Run button starts runs through exactly as POST
/test-suites/{suite}/run does, so their `test-run` events reach GET /events too. A running run's page follows
them on GET /ui/events: when an event of its run arrives (`test-run-N`, dashboard/live.py) it fetches its
progress (/ui/test-runs/{id}/progress), nothing in between, and it stops listening when its run has finished; a
suite's page refetches its runs, cards and history when any run finishes. A run another replica runs is read
again every ELSEWHERE_EVERY seconds until it ends (its events are on that server's bus). Without JavaScript the
run page reloads itself (a meta refresh) while it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from reconciler.core.errors import QrmError
from reconciler.core.models import TestSuite
from reconciler.core.test_results import ERROR, FAILED, PASSED, SKIPPED, Attempt
from reconciler.flows import test_runs
from reconciler.flows.desired import load_desired
from reconciler.flows.tests_history import Comparison, History, compare, suite_history
from reconciler.flows.workspace import Workspace
from reconciler.server.auth import ApiError, workspace
from reconciler.server.dashboard import live
from reconciler.server.dashboard.render import page
from reconciler.server.dashboard.sessions import Viewer, check_post, require_page
from reconciler.server.suites import RunBook, run_book

router = APIRouter(include_in_schema=False)
Ws = Annotated[Workspace, Depends(workspace)]
Reader = Annotated[Viewer, require_page("read")]
Writer = Annotated[Viewer, require_page("write")]
HISTORY_LIMIT = 20
NOT_RUN = "not run"
ORDER = {FAILED: 0, ERROR: 0, SKIPPED: 2, PASSED: 3}  # a run page lists the failures first
ELSEWHERE_EVERY = 2  # seconds between two reads of a run another replica runs (its events never reach this server)


def environments(ws: Workspace, suite: TestSuite) -> list[str]:
    """The environments a suite runs on: its own, else all of its project's (as `qrm tests run` picks them)."""
    if suite.environments:
        return list(suite.environments)
    project = load_desired(ws).projects.get(suite.project)
    return sorted(project.environments) if project is not None else []


def _compared(ws: Workspace, suite: str) -> Comparison | None:
    try:
        return compare(ws, suite)
    except QrmError:  # never run yet
        return None


def _history(ws: Workspace, suite: str) -> History | None:
    try:
        return suite_history(ws, suite, HISTORY_LIMIT)
    except QrmError:
        return None


@dataclass(frozen=True)
class Latest:
    """An environment's latest run of a suite, as a cell of the suites list."""

    environment: str
    outcome: str
    passed: int
    total: int


def _latest(comparison: Comparison | None, envs: list[str]) -> list[Latest]:
    cells = []
    for env in envs:
        run = comparison.latest.get(env) if comparison is not None else None
        if run is None:
            cells.append(Latest(env, NOT_RUN, 0, 0))
        else:
            cells.append(Latest(env, FAILED if run.failed else PASSED, run.passed,
                                run.passed + run.failed + run.skipped))
    return cells


def _suites(ws: Workspace) -> list[dict[str, Any]]:
    desired = load_desired(ws)
    rows = []
    for name in sorted(desired.suites):
        suite = desired.suites[name]
        envs = environments(ws, suite)
        rows.append({"name": name, "project": suite.project, "cases": len(suite.cases),
                     "blocking": suite.block_on_failure, "latest": _latest(_compared(ws, name), envs)})
    return rows


@router.get("/ui/tests")
def tests_page(request: Request, ws: Ws, seen: Reader) -> HTMLResponse:
    return page(request, "tests.html", seen, suites=_suites(ws))


def _running(book: RunBook, suite: str) -> list[tuple[int, str]]:
    with book.lock:
        return sorted((run.id, run.environment) for run in book.running.values() if run.suite == suite)


def _suite_context(request: Request, ws: Workspace, name: str) -> dict[str, Any] | None:
    suite = load_desired(ws).suites.get(name)
    if suite is None:
        return None
    envs = environments(ws, suite)
    comparison = _compared(ws, name)
    outcomes = comparison.outcomes if comparison is not None else {}
    cases = [{"id": case.id, "name": case.name, "type": case.type,
              "outcomes": [outcomes.get(case.id, {}).get(env, NOT_RUN) for env in envs]} for case in suite.cases]
    cards = []
    for env in envs:
        run = comparison.latest.get(env) if comparison is not None else None
        rate = run.pass_rate if run is not None else None
        cards.append({"environment": env, "run": run, "rate": None if rate is None else round(rate * 100)})
    history = _history(ws, name)
    return {"suite": suite, "environments": envs, "cases": cases, "cards": cards,
            "differing": comparison.differing if comparison is not None else {},
            "history": history.runs if history is not None else [],
            "problems": (history.problems if history is not None else []) + (
                comparison.problems if comparison is not None else []),
            "running": _running(run_book(request), name)}


def _missing(request: Request, seen: Viewer, what: str) -> HTMLResponse:
    return page(request, "tests_missing.html", seen, status=404, problem=what)


@router.get("/ui/tests/{suite}")
def suite_page(request: Request, ws: Ws, seen: Reader, suite: str) -> HTMLResponse:
    after = live.after(request)  # before reading: an event in between is sent to the page, never lost
    context = _suite_context(request, ws, suite)
    if context is None:
        return _missing(request, seen, f"there is no test suite {suite!r}")
    return page(request, "suite.html", seen, after=after, **context)


@router.post("/ui/tests/{suite}/run")
async def run_suite(request: Request, ws: Ws, seen: Writer, suite: str) -> Response:
    """Start the suite on the chosen environment, as POST /test-suites/{suite}/run does, and go to its run page."""
    await check_post(request, seen)
    form = await request.form()
    chosen = form.get("environment")
    desired = await run_in_threadpool(load_desired, ws)
    found = desired.suites.get(suite)
    if found is None:
        return _missing(request, seen, f"there is no test suite {suite!r}")
    envs = await run_in_threadpool(environments, ws, found)
    if not isinstance(chosen, str) or chosen not in envs:
        return page(request, "tests_missing.html", seen, status=422,
                    problem=f"choose one of the environments of {suite}: {', '.join(envs) or '(none)'}")
    started = await run_in_threadpool(run_book(request).start, ws, suite, chosen, request.app.state.events.publish)
    return RedirectResponse(f"/ui/test-runs/{started.id}", status_code=303)


def _attempt(a: Attempt) -> dict[str, Any]:
    return {"status": a.status, "ms": round(a.elapsed_ms, 1), "passed": a.passed,
            **({} if a.passed else {"failures": a.failures()})}


def _run_context(request: Request, ws: Workspace, run_id: int) -> dict[str, Any] | None:
    """The run as GET /test-runs/{id} shows it, with its times and each case's attempts, failures first."""
    book = run_book(request)
    live: dict[str, list[dict[str, Any]]] = {}
    with book.lock:
        running = book.running.get(run_id)
        if running is not None:
            live = {r.case_id: [_attempt(a) for a in r.attempts] for r in running.results}
    here = running is not None
    try:
        document = book.document(ws, run_id)
    except ApiError:
        return None
    times = test_runs.run_times(ws, run_id)
    finished = document["status"] != test_runs.RUNNING
    attempts = live
    if finished and times is not None:
        attempts = test_runs.reported_attempts(ws, document["suite"], document["environment"], times.started_at)
    results = sorted(document["results"], key=lambda r: (ORDER.get(r["outcome"], 1), r["id"]))
    # a run another replica runs publishes its events on that server's bus, never this one's: its page reads it
    # again every few seconds instead (ELSEWHERE_EVERY), as GET /test-runs/{id} would
    return {"run": document, "times": times, "finished": finished, "elsewhere": not finished and not here,
            "elsewhere_every": ELSEWHERE_EVERY, "attempts": attempts,
            "failures": [r for r in results if r["outcome"] in (FAILED, ERROR)],
            "others": [r for r in results if r["outcome"] not in (FAILED, ERROR)],
            "total": document["passed"] + document["failed"] + document["skipped"]}


@router.get("/ui/test-runs/{run_id}")
def run_page(request: Request, ws: Ws, seen: Reader, run_id: Annotated[int, Path(ge=1)]) -> HTMLResponse:
    after = live.after(request)  # before reading the run: its events from here on reach the page
    context = _run_context(request, ws, run_id)
    if context is None:
        return _missing(request, seen, f"there is no test run {run_id}")
    return page(request, "test_run.html", seen, after=after, **context)


@router.get("/ui/test-runs/{run_id}/progress")
def run_progress(request: Request, ws: Ws, seen: Reader, run_id: Annotated[int, Path(ge=1)]) -> HTMLResponse:
    """The inside of a run page's #run-progress, which htmx fetches when an event of the run arrives (or every
    few seconds, for a run another replica runs). A finished run's answers htmx with 286, htmx's "stop polling",
    so a page that was reading a run of another replica stops."""
    context = _run_context(request, ws, run_id)
    if context is None:
        return _missing(request, seen, f"there is no test run {run_id}")
    stop = context["finished"] and request.headers.get("hx-request") == "true"
    return page(request, "_run_progress.html", seen, status=286 if stop else 200, **context)
