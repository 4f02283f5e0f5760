"""The Components page (/ui/components): per project the .q components its last scan recorded (GET
/projects/{p}/components: flows/scan.last_scan), each with its actions, forms and queries and the project's
totals, and the problems of the files the scan repaired or could not parse (file, line, reason). The Rescan and
Generate tests buttons (write scope) run the flows of POST /projects/{p}/components/scan and POST
/projects/{p}/test-suites/generate and show what they did on the page."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from reconciler.core.errors import QrmError
from reconciler.core.escaping import one_line
from reconciler.core.report import component_summary
from reconciler.flows.workspace import Workspace
from reconciler.server.auth import ApiError, workspace
from reconciler.server.dashboard.render import page, templates
from reconciler.server.dashboard.sessions import Viewer, check_post, require_page

router = APIRouter(include_in_schema=False)
LINE = re.compile(r"line (\d+): (.*)", re.S)


def _problems(component: dict[str, Any]) -> list[dict[str, Any]]:
    """The component's problems ("line N: reason") as file, line and reason rows."""
    rows = []
    for problem in component.get("problems", ()):
        found = LINE.fullmatch(problem)
        line, reason = (int(found.group(1)), found.group(2)) if found else (None, problem)
        rows.append({"file": component["path"], "line": line or None, "reason": reason})
    return rows


def _project(ws: Workspace, name: str) -> dict[str, Any]:
    from reconciler.flows.scan import last_scan

    scan = last_scan(ws, name)
    summaries = [component_summary(c) for c in scan["components"]]
    return {"name": name, "scanned_at": scan["scanned_at"], "components": summaries, "totals": scan["stats"],
            "problems": [p for c in scan["components"] for p in _problems(c)]}


def _projects(ws: Workspace, only: str | None = None) -> list[dict[str, Any]]:
    from reconciler.flows.desired import load_desired

    return [_project(ws, name) for name in load_desired(ws).projects if only is None or name == only]


@router.get("/ui/components")
async def components(request: Request, seen: Annotated[Viewer, require_page("read")]) -> HTMLResponse:
    return page(request, "components.html", seen, projects=await run_in_threadpool(_projects, workspace(request)))


def _rescan(ws: Workspace, project: str) -> str:
    from reconciler.core.report import totals_line
    from reconciler.flows.scan import scan_workspace

    found = scan_workspace(ws, project)[0]
    changes = [f"{len(paths)} {what}" for what, paths in (("added", found.added), ("changed", found.changed),
                                                          ("removed", found.removed)) if paths]
    return f"Rescanned {project}: {totals_line(found.totals)}" + (f" ({', '.join(changes)})" if changes else "")


def _generate(ws: Workspace, project: str, caller: str, push: bool) -> str:
    from reconciler.flows.named_suites import generate_named_suite
    from reconciler.server.suites import _generating

    with _generating:
        made = generate_named_suite(ws, project, caller=caller, push=push)
    counts = ", ".join(f"{n} {kind}" for kind, n in made.counts.items() if n)
    written = f"wrote {made.path.relative_to(ws.root).as_posix()}" if made.written else "nothing changed"
    commit = f", commit {made.commit[:10]}" if made.commit else ""
    return f"Generated suite {made.suite}: {made.total} cases ({counts}); {written}{commit}"


async def _act(request: Request, seen: Viewer, project: str, action: str) -> HTMLResponse:
    """A button's post: the action on a known project, then the page (or, for htmx, the project's section)
    with what it did or why it could not."""
    await check_post(request, seen)
    ws = workspace(request)
    projects = await run_in_threadpool(_projects, ws)
    if project not in [p["name"] for p in projects]:
        raise ApiError(404, f"unknown project {project!r}")
    done = problem = None
    try:
        if action == "scan":
            done = await run_in_threadpool(_rescan, ws, project)
        else:
            push = bool(getattr(request.app.state, "push", False))
            done = await run_in_threadpool(_generate, ws, project, seen.name, push)
    except QrmError as exc:
        problem = one_line(str(exc))
    outcome = {"project": project, "done": done, "problem": problem}
    if request.headers.get("hx-request") == "true":  # 200 either way: htmx swaps only a 2xx answer in
        [section] = await run_in_threadpool(_projects, ws, project)
        return templates.TemplateResponse(request, "components_project.html",
                                          {"viewer": seen, "project": section, "outcome": outcome},
                                          headers={"Cache-Control": "no-store"})
    return page(request, "components.html", seen, status=200 if problem is None else 409, outcome=outcome,
                projects=await run_in_threadpool(_projects, ws))


@router.post("/ui/components/{project}/scan")
async def rescan(request: Request, seen: Annotated[Viewer, require_page("write")], project: str) -> HTMLResponse:
    return await _act(request, seen, project, "scan")


@router.post("/ui/components/{project}/generate")
async def generate(request: Request, seen: Annotated[Viewer, require_page("write")], project: str) -> HTMLResponse:
    return await _act(request, seen, project, "generate")
