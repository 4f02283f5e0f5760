"""The history page (/ui/history): the applies the registry recorded and the report commits qrm made."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from reconciler.flows.workspace import Workspace
from reconciler.server.auth import workspace
from reconciler.server.dashboard.render import page
from reconciler.server.dashboard.sessions import Viewer, require_page

router = APIRouter(include_in_schema=False)
LIMIT = 50


@router.get("/ui/history")
def history(request: Request, seen: Annotated[Viewer, require_page("read")],
            ws: Annotated[Workspace, Depends(workspace)]) -> HTMLResponse:
    from reconciler.flows.history import applies, report_commits

    return page(request, "history.html", seen, applies=applies(ws, LIMIT), commits=report_commits(ws, LIMIT),
                limit=LIMIT)
