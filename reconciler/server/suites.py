"""The component and test-suite endpoints of `qrm serve`: scan a project's components and read the last
scan, generate a suite, run one in the background and read the run.

Ids are names, as everywhere in qrm; the original plan's curl lines use numbers (`projects/2`,
`test-suites/1`, `{"environment_id": 2}`), so a path or body value made of digits that is not a name
is a 1-based position: projects and a project's environments in manifest order (files by path,
documents in file order), suites by name. Run ids are the registry's (flows/test_runs): a run has its row
from its start, so GET /test-runs/{id} answers from every replica of the workspace and after a restart.

Bodies are JSON whatever their Content-Type (curl -d sends application/x-www-form-urlencoded); a body
that is not a JSON object, or a field of the wrong type, is 422.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.responses import JSONResponse

from reconciler.core.errors import QrmError, unexpected_error
from reconciler.core.escaping import one_line
from reconciler.core.models import ApiToken
from reconciler.core.state import DesiredState
from reconciler.core.test_results import ERROR, FAILED, PASSED, CaseResult
from reconciler.flows import test_runs
from reconciler.flows.desired import load_desired
from reconciler.flows.open_registries import close_all
from reconciler.flows.workspace import Workspace
from reconciler.server import answers as a
from reconciler.server.answers import answers
from reconciler.server.auth import ApiError, require, workspace


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    book: RunBook | None = getattr(app.state, "test_runs", None)
    if book is not None:  # SIGTERM: the runs this server was running will not end; say so at once
        await run_in_threadpool(book.close, app.state.workspace)
    await run_in_threadpool(close_all)


router = APIRouter(lifespan=_lifespan)
log = logging.getLogger(__name__)
Reader = Annotated[ApiToken, Depends(require("read"))]
Writer = Annotated[ApiToken, Depends(require("write"))]
Ws = Annotated[Workspace, Depends(workspace)]
Model = TypeVar("Model", bound=BaseModel)
# One generation at a time: each writes the project's suite and commits; two at once would race on the files
# and on git's index lock.
_generating = threading.Lock()


class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    types: list[str] | None = None


class RunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    environment: str | int | None = None
    environment_id: str | int | None = None


async def _body(request: Request, model: type[Model]) -> Model:
    """The request body as JSON (whatever its Content-Type), validated by `model`; 422 with the reasons."""
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(422, f"the body is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ApiError(422, "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "; ".join(f"body.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                      for e in exc.errors())) from None


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    """The body's schema for /docs (the handlers read the body themselves, so FastAPI does not see it)."""
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def _pick(kind: str, value: str, names: list[str]) -> str:
    """`value` when it is one of `names`, else the name at its 1-based position; 404 naming the known."""
    if value in names:
        return value
    if value.isdigit() and 1 <= int(value) <= len(names):
        return names[int(value) - 1]
    raise ApiError(404, f"unknown {kind} {value!r}; known {kind}s: {', '.join(names) or '(none)'} "
                        f"(or their positions, 1 to {len(names)})")


def project_name(desired: DesiredState, value: str) -> str:
    return _pick("project", value, list(desired.projects))


def suite_name(desired: DesiredState, value: str) -> str:
    return _pick("suite", value, sorted(desired.suites))


def environment_name(desired: DesiredState, suite: str, value: str | int) -> str:
    project = desired.projects.get(desired.suites[suite].project)
    if project is None:
        raise ApiError(409, f"suite {suite!r} tests unknown project {desired.suites[suite].project!r}")
    return _pick("environment", str(value), list(project.environments))


# --- components --------------------------------------------------------------------------------------

@router.post("/projects/{project}/components/scan", tags=["components"],
             response_model=None, responses=answers(a.Scan, errors=a.WRITE_ERRORS))
def scan(ws: Ws, _: Writer, project: str) -> dict[str, Any]:
    """Scan the project's .q components (incrementally, as `qrm scan PROJECT --json`); `stats` is its totals,
    `report` the file it wrote, in the workspace."""
    from reconciler.flows.scan import scan_workspace

    found = scan_workspace(ws, project_name(load_desired(ws), project))[0]
    # the report as a path in the workspace: where the server keeps it on its disk is none of the client's business
    return {**found.to_dict(), "report": found.report.relative_to(ws.root).as_posix(), "stats": found.totals}


@router.get("/projects/{project}/components", tags=["components"],
            response_model=None, responses=answers(a.Components, errors=a.PATH_ERRORS))
def components(ws: Ws, _: Reader, project: str) -> dict[str, Any]:
    """The project's components as its last scan recorded them (nothing is read or parsed)."""
    from reconciler.flows.scan import last_scan

    return last_scan(ws, project_name(load_desired(ws), project))


# --- suites ------------------------------------------------------------------------------------------

@router.post("/projects/{project}/test-suites/generate", tags=["test suites"], openapi_extra=_schema(GenerateBody),
             response_model=None, responses=answers(a.GeneratedSuite, errors=a.WRITE_ERRORS))
async def generate(request: Request, ws: Ws, token: Writer, project: str) -> dict[str, Any]:
    """Generate the project's suite (as `qrm tests generate`) and, with a name or types, a suite of that name
    with the generated cases of those types (`api` = endpoint); commit what was written, naming the token."""
    from reconciler.flows.named_suites import UnknownCaseType, generate_named_suite

    body = await _body(request, GenerateBody)
    push = bool(getattr(request.app.state, "push", False))  # qrm serve --push: pushed as the other writes

    def work() -> dict[str, Any]:
        name = project_name(load_desired(ws), project)
        try:
            with _generating:
                made = generate_named_suite(ws, name, body.name, body.types, caller=token.name, push=push)
        except UnknownCaseType as exc:
            raise ApiError(422, str(exc)) from None
        return {"project": made.project, "suite": made.suite, "path": made.path.relative_to(ws.root).as_posix(),
                "total": made.total, "counts": made.counts, "types": made.types,
                "written": [p.relative_to(ws.root).as_posix() for p in made.written], "commit": made.commit}

    return await run_in_threadpool(work)


@dataclass
class Run:
    """A run this server is running: its registry id, and its cases so far (GET /test-runs/{id} on this server
    shows them while it runs; the registry has them once it ends)."""

    id: int
    suite: str
    environment: str
    results: list[CaseResult] = field(default_factory=list)


class RunBook:
    """The runs this server is running, each in a thread of its own; a thread renews their leases. Their
    record, and the runs of other replicas and of earlier lives of this server, are in the registry
    (flows/test_runs)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[int, Run] = {}
        self.lease = test_runs.run_lease()
        self.stopping = threading.Event()
        self.renewer: threading.Thread | None = None
        # Runs of one suite go one after the other: each appends to reports/tests/SUITE/history.jsonl by reading
        # and rewriting it, and two at once would lose a line. Runs of different suites go at once.
        self.suite_locks: dict[str, threading.Lock] = {}

    def start(self, ws: Workspace, suite: str, environment: str,
              publish: Callable[[str, dict[str, Any]], None] = lambda _name, _data: None) -> Run:
        """Record the run as running (blocking: the registry), start it in a thread; `publish` gets its
        `test-run` events (started, each case, finished)."""
        run = Run(test_runs.start_run(ws, suite, environment, self.lease), suite, environment)
        with self.lock:
            self.running[run.id] = run
            self.suite_locks.setdefault(suite, threading.Lock())
            if self.renewer is None:
                self.renewer = threading.Thread(target=self._renew, args=(ws,), name="test-run-leases", daemon=True)
                self.renewer.start()
        threading.Thread(target=self._run, args=(ws, run, publish), name=f"test-run-{run.id}", daemon=True).start()
        return run

    def _renew(self, ws: Workspace) -> None:
        while not self.stopping.wait(self.lease / 3):
            with self.lock:
                ids = sorted(self.running)
            try:
                test_runs.renew_runs(ws, ids, self.lease)
            except QrmError as exc:  # the registry is down: the next round tries again
                log.warning("could not renew the leases of test runs %s: %s", ids, one_line(str(exc)))

    def _run(self, ws: Workspace, run: Run, publish: Callable[[str, dict[str, Any]], None]) -> None:
        publish("test-run", {"run_id": run.id, "phase": "started", "suite": run.suite, "environment": run.environment})

        def seen(result: CaseResult) -> None:
            with self.lock:
                run.results.append(result)
            publish("test-run", {"run_id": run.id, "phase": "case", "id": result.case_id, "name": result.name,
                                 "type": result.type, "outcome": result.outcome, "reason": result.reason})

        document = None
        try:
            with self.suite_locks[run.suite]:
                outcome = test_runs.execute_run(ws, run.id, run.suite, run.environment, seen)
            results = [r for r in outcome.runs[0].results if r.environment == run.environment]
            document = test_runs.live_document(run.id, run.suite, run.environment, results)
            document.status = FAILED if any(r.outcome in (FAILED, ERROR) for r in results) else PASSED
        except QrmError as exc:
            document = self._ended(ws, run, one_line(str(exc)))
        except Exception as exc:  # the run's answer says what broke; never its message (it could quote a secret)
            document = self._ended(ws, run, unexpected_error(exc))
        finally:
            with self.lock:
                self.running.pop(run.id, None)
        publish("test-run", {**{k: v for k, v in document.as_dict().items() if k != "results"}, "phase": "finished"})

    @staticmethod
    def _ended(ws: Workspace, run: Run, error: str) -> test_runs.RunDocument:
        try:
            test_runs.end_run(ws, run.id, "error", error)
        except QrmError as exc:
            log.warning("could not record the end of test run %d: %s", run.id, one_line(str(exc)))
        return test_runs.RunDocument(run.id, run.suite, run.environment, "error", error=error)

    def document(self, ws: Workspace, run_id: int) -> dict[str, Any]:
        """The run as this server runs it, else as the registry has it (blocking)."""
        with self.lock:
            run = self.running.get(run_id)
            if run is not None:
                return test_runs.live_document(run.id, run.suite, run.environment, list(run.results)).as_dict()
        found = test_runs.read_run(ws, run_id)
        if found is None:
            last = test_runs.last_run_id(ws)
            raise ApiError(404, f"unknown test run {run_id} (this workspace's runs are "
                                f"{f'1 to {last}' if last else 'none yet'}: qrm tests history SUITE lists them)")
        return found.as_dict()

    def close(self, ws: Workspace) -> None:
        """The server stops: the runs still running are marked interrupted (their threads die with it)."""
        self.stopping.set()
        with self.lock:
            ids = sorted(self.running)
        try:
            test_runs.interrupt_runs(ws, ids)
        except QrmError as exc:  # their leases run out instead
            log.warning("could not mark test runs %s interrupted: %s", ids, one_line(str(exc)))


def run_book(request: Request) -> RunBook:
    book: RunBook | None = getattr(request.app.state, "test_runs", None)
    if book is None:
        book = request.app.state.test_runs = RunBook()
    return book


@router.post("/test-suites/{suite}/run", tags=["test suites"], status_code=202, openapi_extra=_schema(RunBody),
             response_model=None, responses=answers(a.RunStarted, 202, errors=a.WRITE_ERRORS))
async def run(request: Request, ws: Ws, _: Writer, suite: str) -> JSONResponse:
    """Start the suite on one environment (`environment`, or its alias `environment_id`); 202 with the run's id."""
    body = await _body(request, RunBody)
    given = body.environment if body.environment is not None else body.environment_id
    desired = await run_in_threadpool(load_desired, ws)
    name = suite_name(desired, suite)
    if given is None:
        environments = list(desired.suites[name].environments)
        if len(environments) != 1:
            raise ApiError(422, "body.environment: Field required (the suite runs on "
                                f"{', '.join(environments) or 'every environment of its project'}: name one)")
        given = environments[0]
    started = await run_in_threadpool(run_book(request).start, ws, name, environment_name(desired, name, given),
                                      request.app.state.events.publish)
    return JSONResponse({"run_id": started.id, "status": test_runs.RUNNING, "suite": started.suite,
                         "environment": started.environment}, status_code=202)


@router.get("/test-runs/{run_id}", tags=["test suites"],
            response_model=None, responses=answers(a.TestRun, errors=a.PATH_ERRORS))
async def test_run(request: Request, ws: Ws, _: Reader, run_id: Annotated[int, Path(ge=1)]) -> dict[str, Any]:
    """A run's status (running, passed, failed, error or interrupted), its counts and each case's outcome and
    reason; any run of the workspace, whichever replica started it."""
    return await run_in_threadpool(run_book(request).document, ws, run_id)
