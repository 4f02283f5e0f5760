"""The FastAPI app of `qrm serve`: `create_app(workspace_root)` builds it for one workspace.

Every answer is JSON; every error is {"error": "one line"} with a 4xx status (a manifest error also
lists its problems under "errors", as `--json` does in the CLI), or a 500 whose line names the type
and place of a bug but never its message. /docs (Swagger UI) and /redoc load their scripts from this
server (the files fastapi-offline ships), never from a CDN, so they work offline.
"""

from __future__ import annotations

import logging
import os
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from reconciler.core.errors import ManifestError, QrmError
from reconciler.core.escaping import one_line
from reconciler.flows.cached_reads import Reads
from reconciler.flows.workspace import open_workspace
from reconciler.server import auth, dashboard, events, hooks, routes, suites, writes
from reconciler.server.guard import ACCESS_LOG, BODY_LIMIT, Guard

STATIC_URL = "/docs/static"
# The environment `qrm serve` hands the factory (uvicorn imports the app by name: the faces do not import each other).
ROOT_VARIABLE, REGISTRY_VARIABLE = "QRM_SERVE_WORKSPACE", "QRM_REGISTRY"
WATCH_VARIABLE, PUSH_VARIABLE = "QRM_SERVE_WATCH", "QRM_SERVE_PUSH"
TICKET_VARIABLE = "QRM_SERVE_TICKET"  # the dashboard's one-time login ticket, printed by qrm serve
log = logging.getLogger(__name__)


def create_app(workspace_root: Path, *, registry: str | None = None, body_limit: int = BODY_LIMIT,
               watch_interval: float | None = None, push: bool = False, ticket: str | None = None) -> FastAPI:
    """The API of the workspace at `workspace_root` (refused at once when it is not one); `registry`
    as --registry; `watch_interval` runs the watch loop in the server (`qrm serve --watch`); `push`: writes
    push their commits (serve --push); `ticket` opens one dashboard session (the login link). Settings
    (tokens included) are read again on every request, so a revoked token is refused from the next request on."""
    workspace = open_workspace(workspace_root, registry)
    app = FastAPI(title="qrm", version=_version(), docs_url=None, redoc_url=None, openapi_url="/openapi.json",
                  swagger_ui_oauth2_redirect_url=None,
                  description="The qrm workspace over HTTP: the same flows as the qrm command line. Every path "
                              "but /health and the webhooks (signed instead) needs a token (`qrm token create NAME "
                              "--scope read`), sent as "
                              "`Authorization: Bearer <token>` or `X-QRM-Token: <token>`.")
    app.state.workspace = workspace
    app.state.push = push
    app.state.events = events.EventBus()
    app.state.reads = Reads()  # the registry, desired state and answers the read endpoints reuse (routes)
    if logging.getLogger(ACCESS_LOG).level == logging.NOTSET:
        logging.getLogger(ACCESS_LOG).setLevel(logging.INFO)  # one line per request, whatever --log-level says
    _error_handlers(app)
    _docs(app)
    app.include_router(routes.router)
    app.include_router(suites.router)
    app.include_router(writes.router)
    app.include_router(events.router)
    dashboard.install(app, ticket=ticket)
    hooks.install(app, watch_interval=watch_interval)
    app.add_middleware(Guard, body_limit=body_limit)
    return app


def app_from_environment() -> FastAPI:
    """The factory `qrm serve` gives uvicorn: the workspace and registry the command was started with."""
    watch = os.environ.get(WATCH_VARIABLE)
    return create_app(Path(os.environ[ROOT_VARIABLE]), registry=os.environ.get(REGISTRY_VARIABLE) or None,
                      watch_interval=float(watch) if watch else None, push=os.environ.get(PUSH_VARIABLE) == "1",
                      ticket=os.environ.pop(TICKET_VARIABLE, None))


def _version() -> str:
    try:
        return metadata.version("qrm")
    except metadata.PackageNotFoundError:
        return "0"


def error(status: int, reason: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": one_line(reason), **extra}, status_code=status, headers=(
        {"WWW-Authenticate": "Bearer"} if status == 401 else None))


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(auth.ApiError)
    async def api_error(_request: Request, exc: auth.ApiError) -> JSONResponse:
        return error(exc.status, exc.reason)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        reason = f"no such path: {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return error(exc.status_code, reason)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(_request: Request, exc: RequestValidationError) -> JSONResponse:
        reasons = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return error(422, "; ".join(reasons) or "invalid request")

    @app.exception_handler(ManifestError)
    async def manifest_error(_request: Request, exc: ManifestError) -> JSONResponse:
        problems = [{"file": p.file, "line": p.line, "column": p.column, "field": p.field_name,
                     "message": one_line(p.message)} for p in exc.problems]
        return error(409, f"the workspace's manifests are invalid: {exc}", errors=problems)

    @app.exception_handler(QrmError)
    async def qrm_error(_request: Request, exc: QrmError) -> JSONResponse:
        return error(409, str(exc))  # the workspace's state (a broken registry, no key) refuses it, not the request


def _docs(app: FastAPI) -> None:
    static = resources.files("fastapi_offline") / "static"
    app.mount(STATIC_URL, StaticFiles(directory=str(static)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="qrm API",
                                   swagger_js_url=f"{STATIC_URL}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{STATIC_URL}/swagger-ui.css",
                                   swagger_favicon_url=f"{STATIC_URL}/favicon.png",
                                   # no validator badge: Swagger UI would send the document to validator.swagger.io
                                   swagger_ui_parameters={"validatorUrl": None})

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="qrm API",
                              redoc_js_url=f"{STATIC_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{STATIC_URL}/favicon.png", with_google_fonts=False)
