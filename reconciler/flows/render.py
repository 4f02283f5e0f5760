"""`qrm render`: one generated file as apply would write it now, secrets as placeholders."""

from __future__ import annotations

from reconciler.core import generated
from reconciler.core.errors import (
    AllocationError,
    QrmError,
)
from reconciler.core.plan import services_after
from reconciler.flows.plan import plan_workspace
from reconciler.flows.workspace import Workspace


def render_file(ws: Workspace, project: str, environment: str, name: str) -> str:
    """One generated file as apply would write it now, secrets as placeholders (no key needed)."""
    with plan_workspace(ws, refresh=False) as ctx:
        pass  # only the plan and the states are needed; the registry is closed
    if project not in ctx.desired.projects:
        known = ", ".join(sorted(ctx.desired.projects)) or "(none)"
        raise QrmError(f"unknown project {project!r}; known projects: {known}")
    if environment not in ctx.desired.projects[project].environments:
        raise QrmError(f"project {project!r} has no environment {environment!r}; expected one of: "
                       f"{', '.join(sorted(ctx.desired.projects[project].environments))}")
    if ctx.plan.blocked:
        raise AllocationError("; ".join([c.message for c in ctx.plan.conflicts] + list(ctx.plan.errors)))
    services = services_after(ctx.recorded, ctx.plan.changes)
    wanted = generated.desired_files(ctx.desired, services)
    return wanted[generated.file_path(project, environment, name)].masked
