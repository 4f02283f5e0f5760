"""The read endpoints of `qrm serve`, with the original plan's paths. Each answers from the flow the
CLI command of the same name calls, with the same document as its `--json` (plus pagination where a
list can be long). Unknown hosts, projects and environments are 404; bad parameters 422.

Handlers are plain `def`: the flows block (SQLite, files), so FastAPI runs them in its thread pool.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from reconciler.core.models import ApiToken
from reconciler.core.state import DesiredState
from reconciler.flows.desired import load_desired
from reconciler.flows.workspace import Workspace
from reconciler.server import answers as a
from reconciler.server.answers import answers
from reconciler.server.auth import ApiError, require, workspace

router = APIRouter()
Reader = Annotated[ApiToken, Depends(require("read"))]
Ws = Annotated[Workspace, Depends(workspace)]


def _known(desired: DesiredState, *, host: str | None = None, project: str | None = None,
           environment: str | None = None) -> None:
    """404 naming what is known, for a host, project or environment the manifests do not have."""
    if host is not None and host not in desired.hosts:
        raise ApiError(404, f"unknown host {host!r}; known hosts: {', '.join(desired.host_names())}")
    if project is not None and project not in desired.projects:
        raise ApiError(404, f"unknown project {project!r}; known projects: "
                            f"{', '.join(sorted(desired.projects)) or '(none)'}")
    if project is not None and environment is not None and environment not in desired.projects[project].environments:
        raise ApiError(404, f"project {project!r} has no environment {environment!r}; known environments: "
                            f"{', '.join(sorted(desired.projects[project].environments))}")


@router.get("/health", tags=["server"], response_model=None, responses=answers(a.Health, errors=(500,)))
def health() -> dict[str, Any]:
    """Whether the server answers (no token needed)."""
    return {"status": "ok"}


@router.get("/resources/ports", tags=["ports"],
            response_model=None, responses=answers(a.PortPage, errors=a.PATH_ERRORS))
def ports(ws: Ws, _: Reader, host: str | None = None, project: str | None = None,
          type: Annotated[str | None, Query(description="port type, e.g. app or database")] = None,
          limit: Annotated[int, Query(ge=1, le=1000)] = 100,
          offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
    """Every allocated port (`qrm ports list --json`), filtered, a page at a time: `total` counts all that match."""
    from reconciler.flows.ports import list_ports

    if host is not None or project is not None:
        _known(load_desired(ws), host=host, project=project)
    found = list_ports(ws, host=host, type=type)
    rows = [r for r in found.allocations if project is None or r.get("project") == project]
    return {"source": found.origin, "workspace": found.workspace, "total": len(rows), "limit": limit,
            "offset": offset, "allocations": rows[offset:offset + limit]}


@router.get("/resources/ports/ranges", tags=["ports"],
            response_model=None, responses=answers(a.Ranges, errors=a.READ_ERRORS))
def port_ranges(ws: Ws, _: Reader) -> dict[str, Any]:
    """Use of every port range on every host (`qrm ports ranges --json`)."""
    from reconciler.flows.ports import port_ranges as ranges

    return {"ranges": [{"host": r.host, "type": r.type, "range": r.name, "start": r.start, "end": r.end,
                        "used": r.used, "reserved": r.reserved, "ephemeral": r.unavailable, "free": r.free}
                       for r in ranges(ws)]}


@router.get("/resources/ports/check/{port}", tags=["ports"],
            response_model=None, responses=answers(a.PortCheck, errors=a.PATH_ERRORS))
def port_check(ws: Ws, _: Reader, port: Annotated[int, Path(ge=1, le=65535)],
               host: str = "localhost") -> dict[str, Any]:
    """Whether `port` is free on `host`, and the reasons it is not (`qrm ports check --json`)."""
    from reconciler.flows.ports import check_port

    _known(load_desired(ws), host=host)
    status = check_port(ws, port, host)
    return {"host": status.host, "port": status.port, "free": status.free, "reasons": status.reasons,
            "range": status.range}


@router.get("/resources/services", tags=["services"],
            response_model=None, responses=answers(a.Services, errors=a.PATH_ERRORS))
def services(ws: Ws, _: Reader, service_type: str | None = None, project: str | None = None) -> dict[str, Any]:
    """Every registered service with its last health (`qrm services list --json`)."""
    from reconciler.flows.services import list_services

    if project is not None:
        _known(load_desired(ws), project=project)
    found = list_services(ws, type=service_type)
    rows = [v.to_dict() for v in found.services if project is None or v.service.project == project]
    return {"source": found.origin, "total": len(rows), "services": rows}


@router.get("/resources/secrets", tags=["secrets"],
            response_model=None, responses=answers(a.Secrets, errors=a.READ_ERRORS))
def secrets(ws: Ws, _: Reader) -> dict[str, Any]:
    """Names, scopes and when each secret was last set; never a value (`qrm secrets list --json`)."""
    from reconciler.flows.secrets import list_secrets

    infos, rotated = list_secrets(ws)
    return {"rotated_at": rotated, "secrets": [{"key": i.key, "name": i.name, "scope": i.scope,
                                                "changed_at": i.changed_at} for i in infos]}


@router.get("/plan", tags=["plan"], response_model=None, responses=answers(a.Plan, errors=a.READ_ERRORS))
def plan(ws: Ws, _: Reader, refresh: Annotated[bool, Query(description="read live listeners")] = True,
         ) -> dict[str, Any]:
    """The plan, secrets masked: the document of `qrm plan --json`."""
    from reconciler.core.report import plan_document
    from reconciler.flows.plan import plan_with_components

    context, components = plan_with_components(ws, refresh=refresh)
    document = plan_document(context.plan)
    document["components"] = components
    return document


def _generated(ws: Workspace, project: str, environment: str, name: str, *, with_values: bool) -> dict[str, Any]:
    from reconciler.flows.render import render_file

    _known(load_desired(ws), project=project, environment=environment)
    return {"project": project, "environment": environment, "file": name, "masked": not with_values,
            "content": render_file(ws, project, environment, name, with_values=with_values)}


@router.get("/resources/generate/env/{project}", tags=["generated files"],
            response_model=None, responses=answers(a.GeneratedFile, errors=a.PATH_ERRORS))
def generate_env(ws: Ws, token: Reader, project: str, environment: str) -> dict[str, Any]:
    """The project's .env for `environment`: secret values masked, unless the token has the secrets scope."""
    return _generated(ws, project, environment, ".env", with_values="secrets" in token.scopes)


@router.get("/resources/generate/docker-compose/{project}", tags=["generated files"],
            response_model=None, responses=answers(a.GeneratedFile, errors=a.PATH_ERRORS))
def generate_compose(ws: Ws, _: Reader, project: str, environment: str) -> dict[str, Any]:
    """The project's docker-compose.yml for `environment` (it refers to .env, so it holds no secret)."""
    return _generated(ws, project, environment, "docker-compose.yml", with_values=False)
