"""The dashboard of `qrm serve`: server-rendered pages (Jinja2) under /ui, with htmx (vendored under
dashboard/static: no CDN, no Node build) for buttons and live parts. Reading works without JavaScript."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from reconciler.server.dashboard import components, history, overview, plan, ports, secrets, services, signin, suites
from reconciler.server.dashboard.render import page
from reconciler.server.dashboard.sessions import Forbidden, Sessions, SignInNeeded

STATIC_URL = "/ui/static"


def install(app: FastAPI, *, ticket: str | None = None) -> None:
    """Mount the dashboard on `app`: its static files, sign-in, pages, and the HTML answers of its refusals;
    `ticket` is the one-time login ticket `qrm serve` printed."""
    app.state.sessions = Sessions(ticket)
    app.mount(STATIC_URL, StaticFiles(directory=str(resources.files("reconciler.server.dashboard") / "static")),
              name="ui-static")
    app.include_router(signin.router)
    app.include_router(overview.router)
    app.include_router(suites.router)
    app.include_router(plan.router)
    app.include_router(secrets.router)
    app.include_router(history.router)
    app.include_router(services.router)
    app.include_router(components.router)
    app.include_router(ports.router)

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/ui/", status_code=307)

    @app.exception_handler(SignInNeeded)
    async def sign_in(request: Request, exc: SignInNeeded) -> HTMLResponse:
        return page(request, "login.html", None, status=401, problem=exc.reason)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> HTMLResponse:
        return page(request, "refused.html", None, status=403, problem=exc.reason)
