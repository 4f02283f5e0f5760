"""`qrm render`: one generated file as apply would write it now, secrets as placeholders; `qrm files`:
which generated file is for which host."""

from __future__ import annotations

from reconciler.core import generated, render
from reconciler.core.errors import (
    AllocationError,
    QrmError,
)
from reconciler.core.plan import services_after
from reconciler.edges import sops
from reconciler.flows.desired import load_desired
from reconciler.flows.plan import plan_workspace
from reconciler.flows.workspace import Workspace


def render_file(ws: Workspace, project: str, environment: str, name: str, *, with_values: bool = False) -> str:
    """One generated file as apply would write it now, secrets as placeholders (no key needed); with
    `with_values`, as apply writes it: the secret values from secrets.enc (the age key is needed)."""
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
    if with_values:
        references = render.secret_references(ctx.desired, project, environment)
        values = _secret_values(ws, set(references.values()))
        secrets = {var: render.SecretValue(key, ctx.desired.secrets.get(key, ""), values.get(key))
                   for var, key in references.items()}
        ports = generated.environment_ports(services, project, environment)
        return render.render_environment(ctx.desired, project, environment, ports, secrets)[name]
    wanted = generated.desired_files(ctx.desired, services)
    return wanted[generated.file_path(project, environment, name)].masked


def _secret_values(ws: Workspace, keys: set[str]) -> dict[str, str]:
    if not keys:
        return {}
    encrypted = sops.read_file(ws.secrets_file, "secrets.enc")
    if encrypted is None:
        return {}
    plain = sops.decrypt(encrypted, sops.load_identities())
    return {key: plain[key] for key in keys if key in plain}


def generated_files_by_host(ws: Workspace, host: str | None = None) -> list[tuple[str, str, bool]]:
    """(host, path, present here) of every generated file the manifests ask for (`host`: only its)."""
    desired = load_desired(ws)
    if host is not None and host not in desired.hosts:
        raise QrmError(f"--host {host}: unknown host; known hosts: {', '.join(desired.host_names())}")
    return [(owner, path, (ws.root / path).is_file()) for path, owner in generated.files_by_host(desired).items()
            if host is None or owner == host]
