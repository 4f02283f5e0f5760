"""The overview page (/ui/): the first page after signing in."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from reconciler.server.dashboard.render import page
from reconciler.server.dashboard.sessions import Viewer, require_page

router = APIRouter(include_in_schema=False)


@router.get("/ui/")
def overview(request: Request, seen: Annotated[Viewer, require_page("read")]) -> HTMLResponse:
    return page(request, "overview.html", seen)
