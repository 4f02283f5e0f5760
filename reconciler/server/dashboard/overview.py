"""The overview page (/ui/): the first page after signing in. Four cards, each a glyph and a word beside its
colour: in sync / N changes pending / drift (the plan), the last apply (when, revision, author, outcome), the
suites whose latest run failed, and the services whose last health check did not pass (flows.overview). The
overview is kept between loads while the workspace is unchanged (flows.overview.kept_overview), and the cards
follow `reconcile`, `health` and finished `test-run` events live (GET /ui/events, dashboard/live.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from reconciler.flows.workspace import Workspace
from reconciler.server.auth import workspace
from reconciler.server.dashboard import live
from reconciler.server.dashboard.render import page, templates
from reconciler.server.dashboard.sessions import Viewer, require_page

router = APIRouter(include_in_schema=False)

# state -> (css class, glyph, word): never the colour alone
SYNC_SHOWN = {"in sync": ("passing", "●", "in sync"), "pending": ("warning", "▲", "changes pending"),
              "drift": ("drift", "◆", "drift"), "blocked": ("critical", "✖", "blocked"),
              "invalid": ("critical", "✖", "invalid manifests")}
OUTCOME_SHOWN = {"success": ("passing", "●", "success"), "failed": ("critical", "✖", "failed")}


def _context(request: Request, ws: Workspace) -> dict[str, Any]:
    """The cards' state: the overview kept in the app's reads (flows.overview.kept_overview), so a burst of loads
    and the refetches after one event plan once."""
    from reconciler.flows.overview import kept_overview

    found = kept_overview(ws, request.app.state.reads)
    return {"seen_state": found, "sync_shown": SYNC_SHOWN[found.sync.state],
            "outcome_shown": OUTCOME_SHOWN.get(found.last_apply.outcome if found.last_apply else "",
                                               ("warning", "▲", "unknown"))}


@router.get("/ui/")
async def overview(request: Request, ws: Annotated[Workspace, Depends(workspace)],
                   seen: Annotated[Viewer, require_page("read")]) -> HTMLResponse:
    after = live.after(request)  # before reading: what happens in between is sent to the page, never lost
    found = await run_in_threadpool(_context, request, ws)  # the plan probes listeners: off the event loop
    return page(request, "overview.html", seen, after=after, **found)


@router.get("/ui/overview/cards")
async def cards(request: Request, ws: Annotated[Workspace, Depends(workspace)],
                seen: Annotated[Viewer, require_page("read")]) -> HTMLResponse:
    """The cards alone, which the page fetches again when a reconcile, health or finished test-run event arrives."""
    found = await run_in_threadpool(_context, request, ws)
    return templates.TemplateResponse(request, "_overview_cards.html", {"viewer": seen, **found},
                                      headers={"Cache-Control": "no-store"})
