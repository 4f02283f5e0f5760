"""The plan page (/ui/plan): what apply would change, as GET /plan answers it (secrets masked), grouped by
kind with a glyph and a word per action, and each generated file's diff in a collapsible <details>."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from reconciler.core.errors import QrmError
from reconciler.flows.workspace import Workspace
from reconciler.server.auth import workspace
from reconciler.server.dashboard.render import page
from reconciler.server.dashboard.sessions import Viewer, require_page

router = APIRouter(include_in_schema=False)

# action -> (glyph, word, status class of qrm.css): never colour alone
ACTIONS = {"create": ("+", "create", "passed"), "update": ("~", "update", "warning"),
           "delete": ("-", "delete", "critical"), "repair": ("!", "repair", "running")}
KINDS = {"service": "Services", "file": "Generated files", "reservation": "Reservations"}


def kind_of(address: str) -> str:
    """The kind of a change's address: its first part (service.web -> service, file.generated/... -> file)."""
    return address.split(".", 1)[0]


def grouped(changes: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The plan document's changes by kind (services first, then files, then the rest by name), in plan order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        groups.setdefault(kind_of(change["address"]), []).append(change)
    order = [*(k for k in KINDS if k in groups), *sorted(k for k in groups if k not in KINDS)]
    return [(KINDS.get(k, k.capitalize()), groups[k]) for k in order]


def diff_of(change: dict[str, Any]) -> str:
    """A generated file change's unified diff (masked by the plan: secret values are placeholders)."""
    after = change.get("after") or {}
    return str(after.get("diff") or "") if change["address"].startswith("file.") else ""


def service_detail(change: dict[str, Any]) -> str:
    """Where a service change puts it: host:port (type) for a create or delete, what changes for an update."""
    before, after = change.get("before") or {}, change.get("after") or {}
    if change["action"] == "update":
        return "; ".join(f"{name} {before.get(name)} → {after.get(name)}" for name in change.get("changed", ()))
    shown = after or before
    return f"{shown.get('host')}:{shown.get('port')} ({shown.get('type')})" if shown else ""


@router.get("/ui/plan")
def plan(request: Request, seen: Annotated[Viewer, require_page("read")],
         ws: Annotated[Workspace, Depends(workspace)]) -> HTMLResponse:
    from reconciler.core.report import plan_document, summary_line
    from reconciler.flows.plan import plan_with_components

    try:
        context, components = plan_with_components(ws, refresh=True)
    except QrmError as exc:
        return page(request, "plan.html", seen, problem=str(exc), document=None)
    document = plan_document(context.plan)
    return page(request, "plan.html", seen, problem=None, document=document, groups=grouped(document["changes"]),
                components=components, summary=summary_line(context.plan), actions=ACTIONS, diff_of=diff_of,
                service_detail=service_detail)
