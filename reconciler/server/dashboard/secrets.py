"""The secrets page (/ui/secrets): names, scopes and when each was last set, never a value. As GET
/resources/secrets, it needs the read scope only: names are not secret, and no value is ever read here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from reconciler.core.errors import QrmError
from reconciler.core.secret_scope import split_scoped
from reconciler.flows.workspace import Workspace
from reconciler.server.auth import workspace
from reconciler.server.dashboard.render import page
from reconciler.server.dashboard.sessions import Viewer, require_page

router = APIRouter(include_in_schema=False)


def scope_of(key: str) -> tuple[str, str]:
    """(kind, where) of a secrets.enc key: ("global", ""), ("project", "blog") or ("environment", "blog/prod")."""
    project, environment, _ = split_scoped(key)
    if environment:
        return "environment", f"{project}/{environment}"
    if project:
        return "project", project
    return "global", ""


@router.get("/ui/secrets")
def secrets(request: Request, seen: Annotated[Viewer, require_page("read")],
            ws: Annotated[Workspace, Depends(workspace)]) -> HTMLResponse:
    from reconciler.flows.secrets import list_secrets

    try:
        infos, rotated = list_secrets(ws)
    except QrmError as exc:
        return page(request, "secrets.html", seen, problem=str(exc), rows=[], rotated=None)
    rows = [(info.name, *scope_of(info.key), info.changed_at) for info in infos]
    return page(request, "secrets.html", seen, problem=None, rows=rows, rotated=rotated)
