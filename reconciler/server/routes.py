"""The read endpoints of `qrm serve`, with the original plan's paths. Each answers from the flow the
CLI command of the same name calls, with the same document as its `--json` (plus pagination where a
list can be long). Unknown hosts, projects and environments are 404; bad parameters 422.

Handlers are plain `def`: the flows block (SQLite, files), so FastAPI runs them in its thread pool.
The reads that scale with the services (ports, ranges, a port's check, services) take the registry, the
desired state and their finished answers from the app's flows.cached_reads.Reads: a burst of reads between
two writes reads the registry once, and the next read after any write reads it again.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from reconciler.core.models import ApiToken
from reconciler.core.state import DesiredState
from reconciler.flows.cached_reads import Reads
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


def _reads(request: Request) -> Reads:
    reads: Reads = request.app.state.reads
    return reads


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def _encoded(document: dict[str, Any]) -> bytes:
    return bytes(JSONResponse(document).body)  # FastAPI's own encoding of a returned dict


@router.get("/resources/ports", tags=["ports"], response_class=JSONResponse,
            response_model=None, responses=answers(a.PortPage, errors=a.PATH_ERRORS))
def ports(request: Request, ws: Ws, _: Reader, host: str | None = None, project: str | None = None,
          type: Annotated[str | None, Query(description="port type, e.g. app or database")] = None,
          limit: Annotated[int, Query(ge=1, le=1000)] = 100,
          offset: Annotated[int, Query(ge=0)] = 0) -> Response:
    """Every allocated port (`qrm ports list --json`), filtered, a page at a time: `total` counts all that match."""
    from reconciler.flows.ports import port_page

    reads = _reads(request)
    if host is not None or project is not None:
        _known(reads.desired(ws), host=host, project=project)
    registry = reads.registry(ws)

    def page() -> bytes:
        found = port_page(ws, registry, host=host, type=type, project=project, limit=limit, offset=offset)
        return _encoded({"source": found.origin, "workspace": found.workspace, "total": found.total,
                         "limit": limit, "offset": offset, "allocations": found.allocations})

    return _json(reads.answer(("ports", reads.mark(ws, registry), host, project, type, limit, offset), page, len))


@router.get("/resources/ports/ranges", tags=["ports"], response_class=JSONResponse,
            response_model=None, responses=answers(a.Ranges, errors=a.READ_ERRORS))
def port_ranges(request: Request, ws: Ws, _: Reader) -> Response:
    """Use of every port range on every host (`qrm ports ranges --json`)."""
    from reconciler.edges import probes
    from reconciler.flows.ports import range_usage, recorded_places

    reads = _reads(request)
    desired = reads.desired(ws)
    registry = reads.registry(ws)
    ephemeral = probes.ephemeral_range()

    def ranges() -> bytes:
        return _encoded({"ranges": [
            {"host": r.host, "type": r.type, "range": r.name, "start": r.start, "end": r.end, "used": r.used,
             "reserved": r.reserved, "ephemeral": r.unavailable, "free": r.free}
            for r in range_usage(desired, recorded_places(ws, registry), ephemeral)]})

    key = ("ranges", reads.mark(ws, registry), desired.digest, ephemeral)
    return _json(reads.answer(key, ranges, len))


@router.get("/resources/ports/check/{port}", tags=["ports"],
            response_model=None, responses=answers(a.PortCheck, errors=a.PATH_ERRORS))
def port_check(request: Request, ws: Ws, _: Reader, port: Annotated[int, Path(ge=1, le=65535)],
               host: str = "localhost") -> dict[str, Any]:
    """Whether `port` is free on `host`, and the reasons it is not (`qrm ports check --json`)."""
    from reconciler.flows.ports import port_status, recorded_places

    reads = _reads(request)
    desired = reads.desired(ws)
    _known(desired, host=host)
    registry = reads.registry(ws)
    places = reads.answer(("places", reads.mark(ws, registry)), lambda: recorded_places(ws, registry),
                          lambda kept: 200 * len(kept))  # bytes, roughly: a name and a tuple per service
    status = port_status(desired, places, port, host)  # listeners are probed now: never kept
    return {"host": status.host, "port": status.port, "free": status.free, "reasons": status.reasons,
            "range": status.range}


@router.get("/resources/services", tags=["services"], response_class=JSONResponse,
            response_model=None, responses=answers(a.Services, errors=a.PATH_ERRORS))
def services(request: Request, ws: Ws, _: Reader, service_type: str | None = None, project: str | None = None,
             limit: Annotated[int | None, Query(ge=1, le=1000, description="a page of this many; all if none")] = None,
             offset: Annotated[int, Query(ge=0)] = 0) -> Response:
    """Every registered service with its last health (`qrm services list --json`); with `limit`, a page at a
    time (`total` counts all that match; the answer then also says `limit` and `offset`)."""
    from reconciler.core import health
    from reconciler.flows.services import list_services

    reads = _reads(request)
    if project is not None:
        _known(reads.desired(ws), project=project)
    registry = reads.registry(ws)
    mark = reads.mark(ws, registry, health=True)

    def answer() -> bytes:
        found = reads.answer(("catalog", mark), lambda: list_services(ws),
                             lambda kept: 1000 * len(kept.services))  # bytes, roughly: a service and its health
        rows = [v for v in health.select(found.services, type=service_type)
                if project is None or v.service.project == project]
        document: dict[str, Any] = {"source": found.origin, "total": len(rows)}
        if limit is not None:
            document |= {"limit": limit, "offset": offset}
        end = None if limit is None else offset + limit
        return _encoded({**document, "services": [v.to_dict() for v in rows[offset:end]]})

    return _json(reads.answer(("services", mark, service_type, project, limit, offset), answer, len))


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
