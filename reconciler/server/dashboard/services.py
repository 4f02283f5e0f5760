"""The Services page (/ui/services): every registered service with its health (a glyph and a word beside the
colour), address, latency, last check and the reason of a failing check, filtered by type and project (a GET
form) a page at a time; the Run health check button (write scope) runs the API's health round; the table
follows `health` events live (GET /ui/events, the bus of GET /events with the page's session)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.responses import StreamingResponse

from reconciler.core.errors import QrmError
from reconciler.core.escaping import one_line
from reconciler.core.health import ServiceHealth
from reconciler.server import events
from reconciler.server.auth import workspace
from reconciler.server.dashboard.render import ago, page, templates
from reconciler.server.dashboard.sessions import Viewer, check_post, require_page

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 100  # rows a page: 10,000 services are paged on the server, never sent at once
GLYPHS = {"passing": "●", "warning": "▲", "critical": "✖", "unknown": "○"}  # with the word: never colour alone


def _row(view: ServiceHealth, now: datetime) -> dict[str, Any]:
    s = view.service
    latency = "" if view.latency_ms is None else f"{view.latency_ms:.0f} ms" if view.latency_ms >= 1 else "<1 ms"
    return {"name": s.name, "status": view.status, "glyph": GLYPHS.get(view.status, "?"), "address": view.hostport,
            "type": s.type, "project": s.project or "", "latency": latency, "checked_at": view.checked_at,
            "ago": ago(view.checked_at, now), "reason": view.reason if view.status != "passing" else ""}


def _table(request: Request, type_: str, project: str, offset: int) -> dict[str, Any]:
    """What the page and its table fragment show: the filters' choices, a page of rows and the pager. The
    services are GET /resources/services' catalog, kept under the same key until the registry or its health
    changes (flows/cached_reads): a page of 10,000 services does not read them all again."""
    from reconciler.flows.cached_reads import Reads
    from reconciler.flows.services import list_services

    ws = workspace(request)
    reads: Reads = request.app.state.reads
    mark = reads.mark(ws, reads.registry(ws), health=True)
    every = reads.answer(("catalog", mark), lambda: list_services(ws),
                         lambda kept: 1000 * len(kept.services)).services  # as routes.services sizes it
    rows = [v for v in every
            if (not type_ or v.service.type == type_) and (not project or v.service.project == project)]
    now = datetime.now(UTC)
    offset = min(offset, max(0, (len(rows) - 1) // PAGE_SIZE * PAGE_SIZE))
    filters = {k: v for k, v in (("type", type_), ("project", project)) if v}
    counts = {status: sum(1 for v in rows if v.status == status) for status in GLYPHS}
    return {"rows": [_row(v, now) for v in rows[offset:offset + PAGE_SIZE]], "total": len(rows), "offset": offset,
            "shown_to": min(len(rows), offset + PAGE_SIZE), "counts": counts, "glyphs": GLYPHS,
            "types": sorted({v.service.type for v in every}),
            "projects": sorted({v.service.project for v in every if v.service.project}),
            "type": type_, "project": project,
            "query": urlencode({**filters, **({"offset": offset} if offset else {})}),
            "previous": urlencode({**filters, "offset": offset - PAGE_SIZE}) if offset > 0 else None,
            "next": urlencode({**filters, "offset": offset + PAGE_SIZE}) if offset + PAGE_SIZE < len(rows) else None}


Type = Annotated[str, Query(alias="type", max_length=200)]
Project = Annotated[str, Query(max_length=200)]
Offset = Annotated[int, Query(ge=0)]


@router.get("/ui/services")
async def services(request: Request, seen: Annotated[Viewer, require_page("read")], type_: Type = "",
                   project: Project = "", offset: Offset = 0) -> HTMLResponse:
    found = await run_in_threadpool(_table, request, type_, project, offset)
    return page(request, "services.html", seen, **found)


@router.get("/ui/services/table")
async def table(request: Request, seen: Annotated[Viewer, require_page("read")], type_: Type = "",
                project: Project = "", offset: Offset = 0) -> HTMLResponse:
    """The table alone, for htmx to swap in when a health event arrives."""
    found = await run_in_threadpool(_table, request, type_, project, offset)
    return _fragment(request, seen, found)


def _fragment(request: Request, seen: Viewer, found: dict[str, Any], **extra: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, "services_table.html", {"viewer": seen, **found, **extra},
                                      headers={"Cache-Control": "no-store"})


@router.post("/ui/services/health-check")
async def health_check(request: Request, seen: Annotated[Viewer, require_page("write")]) -> Response:
    """Run health check: one round (the API's POST /resources/services/health-check); with htmx the table is
    answered to replace the page's, without JavaScript the browser is sent back to the page (303)."""
    from reconciler.server.writes import health_round

    await check_post(request, seen)
    form = await request.form()
    type_, project = str(form.get("type") or ""), str(form.get("project") or "")
    ws = workspace(request)
    try:
        outcome = await run_in_threadpool(health_round, ws, request.app.state.events.publish)
        counts = outcome.counts()
        done = (f"Checked {len(outcome.services)} services: "
                + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("passing", "warning", "critical")))
        problem = None
    except QrmError as exc:
        done, problem = None, one_line(str(exc))
    if request.headers.get("hx-request") != "true":
        if problem is not None:  # nothing to go back to: the page, with why
            found = await run_in_threadpool(_table, request, type_, project, 0)
            return page(request, "services.html", seen, status=409, problem=problem, **found)
        query = urlencode({k: v for k, v in (("type", type_), ("project", project)) if v})
        return RedirectResponse("/ui/services" + ("?" + query if query else ""), status_code=303)
    found = await run_in_threadpool(_table, request, type_, project, 0)
    return _fragment(request, seen, found, done=done, problem=problem)


@router.get("/ui/events")
async def live(request: Request, _: Annotated[Viewer, require_page("read")],
               after: Annotated[int | None, Query(ge=0)] = None) -> StreamingResponse:
    """The events of GET /events for the dashboard's pages, with the page's session instead of a token, and the
    names the pages listen for (dashboard/live.py). `after`: the bus's newest id when the page was rendered, the
    Last-Event-ID of its first connection (a reconnect's header wins: it is newer)."""
    from reconciler.server.dashboard.live import page_frames

    last = request.headers.get("last-event-id") or (None if after is None else str(after))
    return events.stream(request, last, page_frames)
