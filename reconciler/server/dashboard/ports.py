"""The Ports page (/ui/ports): the allocations, filtered by host and type and searched by name or port in a GET
form (it works without JavaScript), a page at a time from the database (flows.ports.port_page through the app's
flows.cached_reads.Reads, as GET /resources/ports reads them); the reservations, each "◐ reserved"; per host
and type the range usage as a bar with its used, reserved and free counts written beside it; and, for a viewer
with the write scope, a Reserve Port form that writes a Reservation through git (flows.writes.reserve_port:
validated, committed naming the viewer, applied, pushed with `qrm serve --push`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from reconciler.core.errors import ConflictError, QrmError, RequestError
from reconciler.core.escaping import one_line
from reconciler.core.models import Reservation
from reconciler.core.state import DesiredState
from reconciler.flows.cached_reads import Reads
from reconciler.flows.ports import RangeUse
from reconciler.flows.workspace import Workspace
from reconciler.server.auth import workspace
from reconciler.server.dashboard.render import page
from reconciler.server.dashboard.sessions import Viewer, check_post, require_page

router = APIRouter(include_in_schema=False)
PER_PAGE = 50
MAX_SEARCH = 100
Ws = Annotated[Workspace, Depends(workspace)]


@dataclass(frozen=True)
class Bar:
    """One range's use, as the widths of its bar (percent) and its counts."""

    use: RangeUse
    used_pct: float
    reserved_pct: float
    unavailable_pct: float


@dataclass(frozen=True)
class Filters:
    host: str | None
    type: str | None
    search: str | None
    page: int

    def link(self, **changed: Any) -> str:
        """This page's URL with `changed` filters (None drops one)."""
        values = {"host": self.host, "type": self.type, "q": self.search, "page": self.page} | changed
        shown = {k: v for k, v in values.items() if v not in (None, "") and not (k == "page" and v == 1)}
        return "/ui/ports" + (f"?{urlencode(shown)}" if shown else "")


def _reads(request: Request) -> Reads:
    reads: Reads = request.app.state.reads
    return reads


def _bars(desired: DesiredState, ranges: list[RangeUse], host: str | None, type: str | None) -> list[Bar]:
    rows = [r for r in ranges if host in (None, r.host) and type in (None, r.type)]
    return [Bar(r, 100 * r.used / r.size, 100 * r.reserved / r.size, 100 * r.unavailable / r.size) for r in rows]


def _reservations(desired: DesiredState, host: str | None, type: str | None,
                  search: str | None) -> list[tuple[Reservation, str]]:
    """The reservations the filters keep, each with the range types its ports fall in."""
    kept = []
    for reservation in desired.reservations:
        numbers = reservation.port_numbers()
        types = sorted({t for t in desired.port_types() for r in desired.ranges_for(reservation.host, t)
                        if any(r.start <= p <= r.end for p in numbers)})
        if host not in (None, reservation.host) or (type is not None and type not in types):
            continue
        if search and not (search in (reservation.name or "") or search in reservation.reason
                           or (search.isdigit() and int(search) in numbers)):
            continue
        kept.append((reservation, ", ".join(types) or "(no range)"))
    return sorted(kept, key=lambda kept_one: (kept_one[0].host, min(kept_one[0].port_numbers())))


def _view(request: Request, ws: Workspace, filters: Filters) -> dict[str, Any]:
    """What the page shows for `filters` (the database pages the allocations; the range use is kept in the
    app's Reads until the registry or the manifests change)."""
    from reconciler.edges import probes
    from reconciler.flows.ports import port_page, range_usage, recorded_places

    reads = _reads(request)
    desired = reads.desired(ws)
    registry = reads.registry(ws)
    mark = reads.mark(ws, registry)
    offset = (filters.page - 1) * PER_PAGE
    found = reads.answer(("ui-ports", mark, filters.host, filters.type, filters.search, offset),
                         lambda: port_page(ws, registry, host=filters.host, type=filters.type, limit=PER_PAGE,
                                           offset=offset, search=filters.search),
                         lambda kept: 200 * len(kept.allocations))
    ephemeral = probes.ephemeral_range()
    ranges = reads.answer(("ui-ranges", mark, desired.digest, ephemeral),
                          lambda: range_usage(desired, recorded_places(ws, registry), ephemeral),
                          lambda kept: 100 * len(kept))
    reserved = desired.reserved_ports()
    pages = max(1, math.ceil(found.total / PER_PAGE))
    return {"filters": filters, "hosts": desired.host_names(), "types": desired.port_types(),
            "rows": found.allocations, "workspace_name": found.workspace,
            "total": found.total, "origin": found.origin, "pages": pages,
            "per_page": PER_PAGE, "offset": offset, "reserved": reserved,
            "bars": _bars(desired, ranges, filters.host, filters.type),
            "reservations": _reservations(desired, filters.host, filters.type, filters.search)}


def _filters(host: str | None, type: str | None, q: str | None, page_number: int) -> Filters:
    search = one_line((q or "").strip())[:MAX_SEARCH] or None
    return Filters(host or None, type or None, search, page_number)


def _render(request: Request, ws: Workspace, seen: Viewer, filters: Filters, status: int = 200, *,
            form: dict[str, str] | None = None, problem: str | None = None,
            done: dict[str, str] | None = None) -> HTMLResponse:
    try:
        view = _view(request, ws, filters)
    except QrmError as exc:  # invalid manifests, a damaged registry: said on the page, as the API says it
        view = {"filters": filters, "rows": [], "bars": [], "reservations": [], "hosts": [], "types": [],
                "total": 0, "pages": 1, "offset": 0, "per_page": PER_PAGE, "reserved": {}, "origin": "",
                "workspace_name": ""}
        problem, status = problem or str(exc), 409 if status == 200 else status
    return page(request, "ports.html", seen, status=status, form=form or {}, problem=problem, done=done, **view)


@router.get("/ui/ports")
def ports(request: Request, ws: Ws, seen: Annotated[Viewer, require_page("read")],
          host: str | None = None, type: str | None = None, q: str | None = None,
          page_number: Annotated[int, Query(alias="page", ge=1, le=1_000_000)] = 1,
          reserved: str | None = None, commit: str | None = None) -> HTMLResponse:
    """Plain `def`: the reads block (the registry), so FastAPI runs it in its thread pool."""
    done = None
    if reserved and commit:  # after a reservation (POST, then 303 here): what was written, and its commit
        done = {"name": one_line(reserved)[:80], "commit": one_line(commit)[:40]}
    return _render(request, ws, seen, _filters(host, type, q, page_number), done=done)


@router.post("/ui/ports/reserve")
async def reserve(request: Request, ws: Ws, seen: Annotated[Viewer, require_page("write")]) -> Response:
    """The Reserve Port form: a Reservation written through git; back to the page on the new reservation, or
    the page again with the form as it was sent and the reason it was refused (nothing written)."""
    from reconciler.flows.writes import reserve_port

    await check_post(request, seen)
    form = await request.form()
    sent = {key: value.strip() if isinstance(value, str) else "" for key, value in form.items() if key != "csrf"}
    host, port_text, reason, name = (sent.get(k, "") for k in ("host", "port", "reason", "name"))
    filters = Filters(None, None, None, 1)
    if not port_text.isdigit():
        return await run_in_threadpool(_render, request, ws, seen, filters, 422, form=sent,
                                       problem=f"port: {one_line(port_text)[:20]!r} is not a port (1-65535)")
    push = bool(getattr(request.app.state, "push", False))
    try:
        made = await run_in_threadpool(reserve_port, ws, host, int(port_text), reason, name or None,
                                       caller=seen.name, push=push)
    except QrmError as exc:
        status = 409 if isinstance(exc, ConflictError) else 422 if isinstance(exc, RequestError) else 409
        return await run_in_threadpool(_render, request, ws, seen, filters, status, form=sent, problem=str(exc))
    target = Filters(made.host, None, str(made.port), 1).link()
    return RedirectResponse(f"{target}&{urlencode({'reserved': made.name, 'commit': made.commit})}",
                            status_code=303)
