"""The dashboard's pages as HTML: Jinja2 templates (autoescaped) under dashboard/templates, each extending
base.html, which carries the navigation, the viewer and the CSRF token htmx sends with every post."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from reconciler.server.dashboard.sessions import Viewer

# (path, label) of the navigation, in order; a page module adds its path here by name only.
NAVIGATION = (("/ui/", "Overview"), ("/ui/ports", "Ports"), ("/ui/services", "Services"),
              ("/ui/components", "Components"), ("/ui/tests", "Tests"), ("/ui/plan", "Plan"),
              ("/ui/secrets", "Secrets"), ("/ui/history", "History"))

templates = Jinja2Templates(directory=str(resources.files("reconciler.server.dashboard") / "templates"))


def ago(when: str | None, now: datetime) -> str:
    """'30 s ago', '5 min ago', '3 h ago', '2 d ago' for an ISO 8601 time; 'never' for none."""
    if not when:
        return "never"
    try:
        then = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        return when
    seconds = max(0, int((now - (then if then.tzinfo else then.replace(tzinfo=UTC))).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _ago_now(when: str | None) -> str:
    """The `ago` filter of the templates: a time relative to the moment the page is rendered."""
    return ago(when, datetime.now(UTC))


templates.env.filters["ago"] = _ago_now


def page(request: Request, template: str, viewer: Viewer | None, status: int = 200, **context: Any) -> HTMLResponse:
    """`template` filled with `context`, the viewer (None on the sign-in page) and the navigation."""
    return templates.TemplateResponse(request, template, {"viewer": viewer, "navigation": NAVIGATION,
                                                          "current": request.url.path, **context},
                                      status_code=status, headers={"Cache-Control": "no-store"})
