"""The write endpoints of `qrm serve` that go through git: allocate and release a port, set a secret,
run a health-check round, apply the committed workspace.

Each is the flow the command of the same name calls (flows/writes: `qrm ports allocate|release`, `qrm
secrets set`, `qrm services health`, `qrm apply --commit`), with the token's name as the caller the
commit names. The flows block (git, the apply, probes), so they run in a worker thread and the server
answers reads meanwhile; they queue behind each other on the workspace's write lock. With `qrm serve
--push` each write's commit is pushed before it is applied.

Errors: a refused request is 422 {"error", "field"}, an unknown service 404, a clash (a name on another
host, an Idempotency-Key reused for another request) 409 with its field, and a workspace that refuses
(uncommitted changes, not a git repository, invalid committed manifests) 409 with the reason. A secret's
value is never in an answer, a log line or a commit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from reconciler.core.errors import ConflictError, NotFoundError, RequestError, SecretsError
from reconciler.core.escaping import one_line
from reconciler.core.models import ApiToken
from reconciler.flows.workspace import Workspace
from reconciler.server import answers as a
from reconciler.server.answers import answers
from reconciler.server.auth import require, workspace
from reconciler.server.suites import _body, _schema

if TYPE_CHECKING:
    from reconciler.flows.services import HealthRound

router = APIRouter()
Writer = Annotated[ApiToken, Depends(require("write"))]
Keeper = Annotated[ApiToken, Depends(require("secrets"))]
Ws = Annotated[Workspace, Depends(workspace)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key",
                                              description="the same key answers the first success again")]
Answer = TypeVar("Answer")


class AllocateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service_name: str
    port_type: str
    host: str
    project: str | None = None
    preferred_port: int | None = None


class ReleaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service_name: str
    host: str


class SecretBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str
    value: str = Field(min_length=1, json_schema_extra={"writeOnly": True})
    project: str | None = None
    environment: str | None = None

    def __repr__(self) -> str:  # never the value, whatever prints the body
        return f"SecretBody(key={self.key!r}, project={self.project!r}, environment={self.environment!r})"


class ApplyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh: bool = True


def _push(request: Request) -> bool:
    return bool(getattr(request.app.state, "push", False))


async def _answer(work: Callable[[], Answer]) -> Answer | JSONResponse:
    """`work` in a worker thread; a refused request as its status with the field at fault."""
    try:
        return await run_in_threadpool(work)
    except RequestError as exc:
        status = 404 if isinstance(exc, NotFoundError) else 409 if isinstance(exc, ConflictError) else 422
        return JSONResponse({"error": one_line(str(exc)), "field": exc.field}, status_code=status)


@router.post("/resources/ports/allocate", tags=["ports"], openapi_extra=_schema(AllocateBody),
             response_model=None, responses=answers(a.Allocated, errors=a.WRITE_ERRORS))
async def allocate(request: Request, ws: Ws, token: Writer, idempotency_key: IdempotencyKey = None) -> Any:
    """A port for a service (`qrm ports allocate`): a Service document under manifests/services, validated,
    committed naming the token, applied; the port it got. The same service on the same host again answers its
    port with no commit (`created: false`)."""
    from reconciler.flows.writes import allocate_service

    body = await _body(request, AllocateBody)
    push = _push(request)

    def work() -> dict[str, Any]:
        return allocate_service(ws, body.service_name, body.port_type, body.host, project=body.project,
                                preferred_port=body.preferred_port, caller=token.name,
                                idempotency_key=idempotency_key, push=push).as_dict()

    return await _answer(work)


@router.post("/resources/ports/release", tags=["ports"], openapi_extra=_schema(ReleaseBody),
             response_model=None, responses=answers(a.Released, errors=a.WRITE_ERRORS))
async def release(request: Request, ws: Ws, token: Writer, idempotency_key: IdempotencyKey = None) -> Any:
    """Remove a service's document (the rest of its file kept), commit naming the token, apply: its port is free."""
    from reconciler.flows.writes import release_service

    body = await _body(request, ReleaseBody)
    push = _push(request)

    def work() -> dict[str, Any]:
        return release_service(ws, body.service_name, body.host, caller=token.name, idempotency_key=idempotency_key,
                               push=push).as_dict()

    return await _answer(work)


@router.post("/resources/secrets", tags=["secrets"], openapi_extra=_schema(SecretBody),
             response_model=None, responses=answers(a.SecretSet, errors=a.WRITE_ERRORS))
async def set_secret(request: Request, ws: Ws, token: Keeper) -> Any:
    """Set a secret in secrets.enc (`qrm secrets set`), committed naming the token when the workspace is a git
    repository; answers its key and scope, never the value."""
    from reconciler.core import secret_scope
    from reconciler.flows.secrets import check_scope
    from reconciler.flows.writes import set_secret as set_and_commit

    body = await _body(request, SecretBody)
    try:
        secret_scope.scoped_name(body.key, body.project, body.environment)
    except ValueError as exc:
        return JSONResponse({"error": one_line(str(exc)), "field": "key"}, status_code=422)
    push = _push(request)

    def work() -> dict[str, Any]:
        try:
            check_scope(ws, body.project, body.environment)
        except SecretsError as exc:
            raise RequestError(str(exc), field="environment" if body.environment else "project") from None
        return set_and_commit(ws, body.key, body.project, body.environment, body.value, caller=token.name,
                              push=push).as_dict()

    return await _answer(work)


@router.post("/resources/services/health-check", tags=["services"],
             response_model=None, responses=answers(a.HealthRound, errors=a.WRITE_ERRORS))
async def health_check(request: Request, ws: Ws, _: Writer) -> Any:
    """One health round over every registered service (`qrm services health --json`): it records the statuses
    and writes reports/health.yaml."""
    publish = request.app.state.events.publish

    def work() -> dict[str, Any]:
        outcome = health_round(ws, publish)
        return {"checked_at": outcome.checked_at, "summary": outcome.counts(), "services": outcome.entries()}

    return await _answer(work)


def health_round(ws: Workspace, publish: Callable[[str, dict[str, Any]], None]) -> HealthRound:
    """One health round (flows/services.check_health), publishing a `health` event for each service whose status
    it changed (GET /events); the API's POST and the dashboard's Run health check button both run it."""
    from reconciler.flows.services import check_health, list_services

    before = {v.service.name: v.status for v in list_services(ws).services}
    outcome = check_health(ws)
    for view in outcome.services:
        if before.get(view.service.name) != view.status:
            publish("health", {"service": view.service.name, "previous": before.get(view.service.name),
                               "status": view.status, "reason": view.reason})
    return outcome


@router.post("/apply", tags=["plan"], openapi_extra=_schema(ApplyBody),
             response_model=None, responses=answers(a.Applied, errors=a.WRITE_ERRORS))
async def apply(request: Request, ws: Ws, _: Writer) -> Any:
    """Apply the committed workspace (`qrm apply --commit --yes --no-tests`): 409 when manifests/, secrets.enc
    or qrm.yaml differ from HEAD; the applied plan (secrets masked), then the report commit."""
    from reconciler.core.report import plan_document
    from reconciler.flows.writes import apply_committed

    body = await _body(request, ApplyBody)

    def work() -> dict[str, Any]:
        outcome, made = apply_committed(ws, refresh=body.refresh)
        return {"applied": outcome.applied, "apply_id": outcome.apply_id, "commit": made.sha,
                "committed": made.paths, **plan_document(outcome.plan)}

    return await _answer(work)
