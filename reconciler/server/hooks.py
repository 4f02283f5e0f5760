"""Webhooks in: POST /hooks/github, /hooks/gitlab and /hooks/generic, GET /hooks/status, and the background
worker (flows/hooks) with, for `qrm serve --watch`, the watch loop in a thread of the same process.

A hook needs no token: it is authenticated by its signature (or GitLab's secret token), checked in constant
time on the raw body before the body is parsed. Its secret is a global key of secrets.enc; without a key to
read it the hook answers 503 with the reason. A delivery id seen before answers 200 {"duplicate": true} and
does nothing. Accepted work answers 202 at once and happens in the background.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from reconciler.core import webhooks
from reconciler.core.escaping import one_line
from reconciler.core.models import ApiToken
from reconciler.edges import manifest_files
from reconciler.flows.hooks import HookSecretMissing, HookWorker, hook_secret, watched_branch
from reconciler.flows.workspace import Workspace
from reconciler.server import replicas
from reconciler.server.answers import READ_ERRORS, HookStatus, answers, hook_answers
from reconciler.server.auth import require

HOOKS_LOG = "reconciler.server.hooks"
log = logging.getLogger(HOOKS_LOG)
router = APIRouter(tags=["webhooks"])
Reader = Annotated[ApiToken, Depends(require("read"))]


def install(app: FastAPI, *, watch_interval: float | None = None) -> None:
    """Add the hook routes, and start the worker (and with `watch_interval`, the watch loop) with the server."""
    if logging.getLogger(HOOKS_LOG).level == logging.NOTSET:
        logging.getLogger(HOOKS_LOG).setLevel(logging.INFO)  # the worker's lines, whatever --log-level says
    base: Workspace = app.state.workspace
    publish = app.state.events.publish

    def say(line: str) -> None:  # the worker's and the watch loop's lines: logged, and on GET /events
        log.info(line)
        publish("reconcile", {"line": line})

    worker = HookWorker(lambda: _current(base), say)
    app.state.hooks = worker
    leadership = replicas.leadership(app, lambda: _current(base), say) if watch_interval is not None else None
    worker.lead = leadership.check if leadership is not None else None
    app.state.recent_deliveries = webhooks.RecentIds()
    app.include_router(router)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        worker.start()
        stop = threading.Event()
        watcher = None
        if watch_interval is not None:
            def watching(interval: float) -> None:
                _watch(base, worker, interval, stop, say, worker.lead)
                if not stop.is_set():  # the loop could not run (another watcher holds this folder)
                    replicas.retire(app, worker)

            watcher = threading.Thread(target=watching, args=(watch_interval,), name="qrm-watch", daemon=True)
            watcher.start()
        try:
            async with inner(application) as state:
                yield state
        finally:  # SIGTERM: uvicorn stops taking requests, then this: the step in hand ends, nothing is cut
            stop.set()
            if watcher is not None:
                await run_in_threadpool(watcher.join, 120)
            await run_in_threadpool(worker.stop)
            if leadership is not None:
                await run_in_threadpool(leadership.close)  # a clean stop hands the lease over at once

    app.router.lifespan_context = lifespan


def _current(base: Workspace) -> Workspace:
    import dataclasses

    return dataclasses.replace(base, settings=manifest_files.load_settings(base.root))


def _watch(base: Workspace, worker: HookWorker, interval: float, stop: threading.Event,
           say: Callable[[str], None], lead: Callable[[], bool] | None = None) -> None:
    from reconciler.edges import git_repo
    from reconciler.flows.watch import WatchOptions, watch

    pull = git_repo.is_repository(base.root) and git_repo.watched_branch(base.root) is not None
    try:
        watch(_current(base), WatchOptions(apply=True, interval=interval, pull=pull), stop, say,
              serialise=worker.lock, lead=lead)
    except Exception as exc:
        from reconciler.core.errors import QrmError, unexpected_error

        log.error("watch stopped: %s", str(exc) if isinstance(exc, QrmError) else unexpected_error(exc))


# --- answers ---------------------------------------------------------------------------------------------

def _answer(status: int, document: dict[str, Any]) -> JSONResponse:
    return JSONResponse(document, status_code=status)


def _refused(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": one_line(reason)}, status_code=status)


async def _secret(request: Request, name: str, hook: str) -> str | JSONResponse:
    try:
        return await run_in_threadpool(hook_secret, request.app.state.workspace, name)
    except HookSecretMissing as exc:
        return _refused(503, f"the {hook} hook is not set up: {exc}")


def _parse(body: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


async def _first_time(request: Request, delivery: str | None) -> bool:
    """Whether the delivery is new to every replica within 24 hours (the registry: flows/deliveries); while the
    registry cannot be reached, new to this server."""
    from reconciler.core.errors import QrmError
    from reconciler.flows.deliveries import first_delivery

    if delivery is None:
        return True
    try:
        return await run_in_threadpool(first_delivery, request.app.state.workspace,
                                       request.url.path.rsplit("/", 1)[-1], delivery)
    except QrmError as exc:
        log.warning("delivery ids are kept by this server alone until the registry answers: %s", one_line(str(exc)))
        recent: webhooks.RecentIds = request.app.state.recent_deliveries
        return recent.first_time(delivery)


async def _push(request: Request, source: str, ref: Any, delivery: str | None) -> JSONResponse:
    branch = await run_in_threadpool(watched_branch, request.app.state.workspace)
    if branch is not None and ref is not None and ref != f"refs/heads/{branch}":
        return _answer(200, {"ignored": one_line(f"a push to {ref}, not to the watched branch {branch}")})
    worker: HookWorker = request.app.state.hooks
    worker.start()
    worker.reconcile(f"{source} push" + (f" to {branch}" if branch else ""))
    return _answer(202, {"accepted": "reconcile", "delivery": delivery})


async def _deployed(request: Request, source: str, environment: Any, delivery: str | None) -> JSONResponse:
    from reconciler.flows.desired import load_desired

    if not isinstance(environment, str) or not environment:
        return _answer(200, {"ignored": "the deployment names no environment"})
    desired = await run_in_threadpool(load_desired, _current(request.app.state.workspace))
    known = {env for project in desired.projects.values() for env in project.environments}
    mapped = webhooks.qrm_environment(environment, known)
    if mapped is None:
        return _answer(200, {"ignored": one_line(f"no qrm environment matches {environment!r}; known: "
                                                 f"{', '.join(sorted(known)) or '(none)'}")})
    worker: HookWorker = request.app.state.hooks
    worker.start()
    worker.run_tests(mapped, f"{source} deployment to {environment}")
    return _answer(202, {"accepted": "tests", "environment": mapped, "delivery": delivery})


# --- the hooks -------------------------------------------------------------------------------------------

@router.post("/hooks/github", response_model=None, responses=hook_answers())
async def github(request: Request) -> JSONResponse:
    """A GitHub webhook (content type application/json), signed with GITHUB_WEBHOOK_SECRET of secrets.enc:
    `ping`, `push` to the watched branch (fetch and reconcile), `deployment_status` success (the auto_run
    suites against that environment)."""
    body = await request.body()
    secret = await _secret(request, webhooks.GITHUB_SECRET, "GitHub")
    if isinstance(secret, JSONResponse):
        return secret
    try:
        webhooks.check_github(secret, body, request.headers.get("x-hub-signature-256"))
    except webhooks.SignatureError as exc:
        return _refused(401, str(exc))
    delivery = request.headers.get("x-github-delivery")
    if not await _first_time(request, delivery):
        return _answer(200, {"duplicate": True, "delivery": delivery})
    event = request.headers.get("x-github-event", "")
    payload = _parse(body)
    if payload is None:
        return _refused(400, "the body is not a JSON object (set the webhook's content type to application/json)")
    if event == "ping":
        return _answer(200, {"pong": True, "delivery": delivery})
    if event == "push":
        return await _push(request, "github", payload.get("ref"), delivery)
    if event == "deployment_status":
        status = payload.get("deployment_status") or {}
        deployment = payload.get("deployment") or {}
        if not isinstance(status, dict) or status.get("state") != "success":
            state = status.get("state") if isinstance(status, dict) else None
            return _answer(200, {"ignored": one_line(f"deployment state {state!r}: only success runs the tests")})
        environment = status.get("environment") or (deployment.get("environment") if isinstance(deployment, dict)
                                                    else None)
        return await _deployed(request, "github", environment, delivery)
    return _answer(200, {"ignored": one_line(f"event {event!r} is not one qrm acts on (ping, push, "
                                             "deployment_status)")})


@router.post("/hooks/gitlab", response_model=None, responses=hook_answers())
async def gitlab(request: Request) -> JSONResponse:
    """A GitLab webhook whose secret token is GITLAB_WEBHOOK_TOKEN of secrets.enc: Push Hook (fetch and
    reconcile) and Deployment Hook with status success (the auto_run suites against that environment)."""
    body = await request.body()
    secret = await _secret(request, webhooks.GITLAB_SECRET, "GitLab")
    if isinstance(secret, JSONResponse):
        return secret
    try:
        webhooks.check_gitlab(secret, request.headers.get("x-gitlab-token"))
    except webhooks.SignatureError as exc:
        return _refused(401, str(exc))
    delivery = request.headers.get("x-gitlab-event-uuid") or request.headers.get("idempotency-key")
    if not await _first_time(request, delivery):
        return _answer(200, {"duplicate": True, "delivery": delivery})
    event = request.headers.get("x-gitlab-event", "")
    payload = _parse(body)
    if payload is None:
        return _refused(400, "the body is not a JSON object")
    if event == "Push Hook":
        return await _push(request, "gitlab", payload.get("ref"), delivery)
    if event == "Deployment Hook":
        if payload.get("status") != "success":
            return _answer(200, {"ignored": one_line(f"deployment status {payload.get('status')!r}: only success "
                                                     "runs the tests")})
        return await _deployed(request, "gitlab", payload.get("environment"), delivery)
    return _answer(200, {"ignored": one_line(f"event {event!r} is not one qrm acts on (Push Hook, Deployment Hook)")})


@router.post("/hooks/generic", response_model=None, responses=hook_answers())
async def generic(request: Request) -> JSONResponse:
    """A Standard Webhooks delivery (webhook-id, webhook-timestamp within 5 minutes, webhook-signature) signed
    with WEBHOOK_SECRET (whsec_…) of secrets.enc. {"type": "deployment", "environment": E} runs the auto_run
    suites against E; any other body fetches and reconciles."""
    body = await request.body()
    secret = await _secret(request, webhooks.GENERIC_SECRET, "generic")
    if isinstance(secret, JSONResponse):
        return secret
    try:
        key = webhooks.standard_key(secret)
    except ValueError as exc:
        return _refused(503, f"the generic hook is not set up: {exc}")
    delivery = request.headers.get("webhook-id")
    try:
        webhooks.check_standard(key, body, delivery, request.headers.get("webhook-timestamp"),
                                request.headers.get("webhook-signature"), time.time())
    except webhooks.SignatureError as exc:
        return _refused(401, str(exc))
    if not await _first_time(request, delivery):
        return _answer(200, {"duplicate": True, "delivery": delivery})
    payload = _parse(body) or {}
    if payload.get("type") == "deployment":
        return await _deployed(request, "generic", payload.get("environment"), delivery)
    return await _push(request, "generic", None, delivery)  # a generic hook names no branch: the watched one


@router.get("/hooks/status", response_model=None, responses=answers(HookStatus, errors=READ_ERRORS))
def status(request: Request, _: Reader) -> dict[str, Any]:
    """What the hooks' worker has done: reconciles and test runs started, whether one is running or waiting."""
    worker: HookWorker = request.app.state.hooks
    found = worker.status()
    return {"reconciles": found.reconciles, "test_runs": found.test_runs, "busy": found.busy,
            "pending": found.pending, "queued_tests": found.queued_tests, "leader": replicas.state(request.app)}

