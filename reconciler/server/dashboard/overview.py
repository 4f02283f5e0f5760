"""The overview page (/ui/): the first page after signing in. Four cards, each a glyph and a word beside its
colour: in sync / N changes pending / drift (the plan), the last apply (when, revision, author, outcome), the
suites whose latest run failed, and the services whose last health check did not pass (flows.overview)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from reconciler.flows.workspace import Workspace
from reconciler.server.auth import workspace
from reconciler.server.dashboard.render import page
from reconciler.server.dashboard.sessions import Viewer, require_page

router = APIRouter(include_in_schema=False)

# state -> (css class, glyph, word): never the colour alone
SYNC_SHOWN = {"in sync": ("passing", "●", "in sync"), "pending": ("warning", "▲", "changes pending"),
              "drift": ("drift", "◆", "drift"), "blocked": ("critical", "✖", "blocked"),
              "invalid": ("critical", "✖", "invalid manifests")}
OUTCOME_SHOWN = {"success": ("passing", "●", "success"), "failed": ("critical", "✖", "failed")}


@router.get("/ui/")
async def overview(request: Request, ws: Annotated[Workspace, Depends(workspace)],
                   seen: Annotated[Viewer, require_page("read")]) -> HTMLResponse:
    from reconciler.flows.overview import overview as read_overview

    found = await run_in_threadpool(read_overview, ws)  # the plan probes listeners: off the event loop
    return page(request, "overview.html", seen, seen_state=found, sync_shown=SYNC_SHOWN[found.sync.state],
                outcome_shown=OUTCOME_SHOWN.get(found.last_apply.outcome if found.last_apply else "",
                                                ("warning", "▲", "unknown")))
