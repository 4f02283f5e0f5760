"""The answers of `qrm serve` as pydantic models, for the OpenAPI document (/openapi.json, /docs): each
endpoint's 200 or 202 body, and the one shape of every error ({"error": ...}, see app.py and guard.py).

They document; they do not filter: the routes hand them to FastAPI as `responses=` (see `answers()`), with
`response_model=None` (else the handlers' `dict[str, Any]` would be merged into the schema), so an
answer is the flow's document as the CLI's `--json` prints it, sent without a second validation (the list
endpoints answer thousands of rows; bench/api.py times them). tests/server/test_openapi.py checks that real
answers of a running server validate against these schemas, so the two cannot drift apart unseen.
Models are open (`extra="allow"`) where the CLI's document may grow a field; the fields listed are always
there.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel


class Answer(BaseModel):
    """A JSON object answer: the fields listed, and possibly more (a newer qrm may add some)."""

    model_config = ConfigDict(extra="allow")


# --- errors ----------------------------------------------------------------------------------------------

class Problem(BaseModel):
    """One problem of an invalid manifest: where it is and what was expected."""

    file: str | None
    line: int | None
    column: int | None
    field: str | None
    message: str


class Error(BaseModel):
    """Every answer that is not 2xx: one line saying why, never a secret value or a traceback."""

    error: str = Field(description="the reason, on one line")
    field: str | None = Field(None, description="a write's request field at fault (service_name, host, key, ...)")
    errors: list[Problem] | None = Field(None, description="409 for invalid manifests: each problem")


ERRORS: dict[int, str] = {
    400: "a webhook's body is not a JSON object",
    401: "no token, or one this workspace does not know (header WWW-Authenticate: Bearer)",
    403: "the token lacks the scope this path needs",
    404: "an unknown host, project, environment, suite, run or service",
    409: "the workspace refuses: invalid or uncommitted manifests, a conflict, no age key, a locked registry, a "
         "push that failed",
    413: "the request body is larger than 1 MB",
    422: "a bad parameter or body: names the parameter or field",
    500: "a bug or an operating-system error: named by its type and place, or the file",
    503: "a webhook is not set up: secrets.enc has no secret for it, or the server has no age key",
}


def answers(model: type[BaseModel] | None = None, status: int = 200, *,
            errors: tuple[int, ...] = (401, 403, 409, 422, 500), media: str | None = None,
            description: str = "") -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: its answer (`model` as JSON, or a text `media` type such as
    text/event-stream) under `status`, and the errors it can give, each as `Error`."""
    documented: dict[int | str, dict[str, Any]] = {}
    if media is not None:
        documented[status] = {"description": description or "a stream",
                              "content": {media: {"schema": {"type": "string", "description": description}}}}
    elif model is not None:
        documented[status] = {"model": model, "description": description or (model.__doc__ or "").strip()}
    for code in errors:
        if media is None:
            documented[code] = {"model": Error, "description": ERRORS[code]}
        else:  # "model" would put the error under the route's media type; errors are JSON whatever the route sends
            documented[code] = {"description": ERRORS[code],
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return documented


READ_ERRORS = (401, 403, 409, 422, 500)  # 409: the workspace refuses (a damaged registry, invalid manifests)
PATH_ERRORS = (401, 403, 404, 409, 422, 500)
WRITE_ERRORS = (401, 403, 404, 409, 413, 422, 500)


# --- reads -----------------------------------------------------------------------------------------------

class Health(Answer):
    """The server answers."""

    status: str = Field(examples=["ok"])


class PortAllocation(Answer):
    """One allocated port, as `qrm ports list --json` shows it."""

    name: str
    host: str
    port: int
    type: str
    protocol: str
    pinned: bool
    health: Any = None
    tags: list[str]
    project: str | None = None
    environment: str | None = None


class PortPage(Answer):
    """A page of the allocated ports that match the filters; `total` counts them all."""

    source: str = Field(description="registry, or the lock file reports/allocations.yaml")
    workspace: str | None
    total: int
    limit: int
    offset: int
    allocations: list[PortAllocation]


class RangeUse(BaseModel):
    host: str
    type: str
    range: str
    start: int
    end: int
    used: int
    reserved: int
    ephemeral: int
    free: int


class Ranges(Answer):
    """Each port range on each host, and how much of it is used (`qrm ports ranges --json`)."""

    ranges: list[RangeUse]


class PortCheck(Answer):
    """Whether a port is free on a host, and why not (`qrm ports check --json`)."""

    host: str
    port: int
    free: bool
    reasons: list[str]
    range: str | None


class ServiceEntry(Answer):
    """A registered service and its last health."""

    name: str
    host: str
    port: int | None
    type: str
    protocol: str
    tags: list[str]
    project: str | None = None
    environment: str | None = None
    status: str = Field(description="passing, warning, critical or unknown")
    reason: str | None = None
    checked_at: str | None = None


class Services(Answer):
    """The registered services (`qrm services list --json`)."""

    source: str
    total: int = Field(description="how many services match, on every page")
    limit: int | None = Field(None, description="with ?limit=: the page size asked for")
    offset: int | None = Field(None, description="with ?limit=: where this page starts")
    services: list[ServiceEntry]


class SecretEntry(BaseModel):
    key: str = Field(description="the scoped key: NAME, project/NAME or project/environment/NAME")
    name: str
    scope: str
    changed_at: str | None


class Secrets(Answer):
    """The secrets' names, scopes and when each was last set: never a value."""

    rotated_at: str | None
    secrets: list[SecretEntry]


class Change(Answer):
    action: str = Field(description="create, update, delete or repair")
    symbol: str
    address: str = Field(examples=["service.quantumblog-prod-web"])
    reason: str
    changed: list[str]
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class PlanSummary(Answer):
    create: int
    update: int
    delete: int
    repair: int
    conflicts: int
    errors: int
    services: int
    blocked: bool
    empty: bool


class Plan(Answer):
    """The plan, secrets masked: `qrm plan --json`'s document (format_version 1)."""

    format_version: int
    qrm_version: str
    summary: PlanSummary
    changes: list[Change]
    conflicts: list[dict[str, Any]]
    errors: list[str]
    warnings: list[str]
    components: list[dict[str, Any]] | None = None


class GeneratedFile(Answer):
    """A generated file of a project's environment, as `qrm render` writes it."""

    project: str
    environment: str
    file: str = Field(examples=[".env", "docker-compose.yml"])
    masked: bool = Field(description="secret values are placeholders (the token has no secrets scope)")
    content: str


# --- components and test suites --------------------------------------------------------------------------

class ComponentStats(Answer):
    components: int
    actions: int
    forms: int
    queries: int


class Scan(Answer):
    """`qrm scan PROJECT --json`'s project: what changed since the last scan, every component, its totals."""

    project: str
    report: str = Field(description="the scan's report, a path in the workspace")
    added: list[str]
    changed: list[str]
    removed: list[str]
    components: list[dict[str, Any]]
    stats: ComponentStats


class Components(Answer):
    """The project's components as its last scan recorded them."""

    project: str
    scanned_at: str | None
    components: list[dict[str, Any]]
    stats: ComponentStats


class GeneratedSuite(Answer):
    """The suite written (and the files committed, `commit`; null when nothing changed)."""

    project: str
    suite: str
    path: str
    total: int
    counts: dict[str, int]
    types: list[str] = Field(description="the case types of a named suite; [] = every type")
    written: list[str]
    commit: str | None


class RunStarted(Answer):
    """A test run started in the background: GET /test-runs/{run_id} follows it."""

    run_id: int
    status: str = Field(examples=["running"])
    suite: str
    environment: str


class CaseOutcome(BaseModel):
    id: str
    name: str
    type: str
    outcome: str = Field(description="passed, failed, error or skipped")
    reason: str | None


class TestRun(Answer):
    """A run's status, its counts and each finished case."""

    run_id: int
    suite: str
    environment: str
    status: str = Field(description="running, passed, failed, error or interrupted (its server stopped or died)")
    passed: int
    failed: int
    skipped: int
    results: list[CaseOutcome]
    error: str | None = Field(None, description="with status error: why the run could not go on")


# --- writes ----------------------------------------------------------------------------------------------

class Allocated(Answer):
    """A service's port (`qrm ports allocate --json`); `created` is false when it was already there."""

    success: bool
    port: int
    service: str
    host: str
    type: str
    commit: str | None = Field(description="the commit that wrote the service; null when nothing was written")
    created: bool
    project: str | None
    file: str | None


class Released(Answer):
    """A released service and the port freed (`qrm ports release --json`)."""

    success: bool
    service: str
    host: str
    port: int | None
    commit: str | None
    file: str | None


class SecretSet(Answer):
    """The secret's scoped key and scope, and the commit of secrets.enc: never the value."""

    success: bool
    key: str
    scope: str
    commit: str | None


class HealthRound(Answer):
    """One health round (`qrm services health --json`)."""

    checked_at: str
    summary: dict[str, int]
    services: list[dict[str, Any]]


class Applied(Plan):
    """The applied plan (as GET /plan), then what the apply recorded and committed."""

    applied: bool
    apply_id: int | str | None
    commit: str | None
    committed: list[str]


# --- events and hooks ------------------------------------------------------------------------------------

class Subscribers(Answer):
    subscribers: int


class HookStatus(Answer):
    """What the webhooks' worker has done and is doing."""

    reconciles: int
    test_runs: int
    busy: bool
    pending: bool
    queued_tests: int


class HookAccepted(Answer):
    """202: the work is queued (`reconcile`, or `tests` on `environment`)."""

    accepted: str
    delivery: str | None = None
    environment: str | None = None


class Pong(Answer):
    """A GitHub `ping`: the hook is set up."""

    pong: bool
    delivery: str | None = None


class Ignored(Answer):
    """An event, ref or deployment qrm does not act on, and why."""

    ignored: str


class Duplicate(Answer):
    """A delivery id seen before: nothing done again."""

    duplicate: bool
    delivery: str | None


class HookAnswered(RootModel[Pong | Ignored | Duplicate]):
    """200: nothing to do: a ping, an event not acted on, or a replayed delivery."""


HOOK_ERRORS = (400, 401, 413, 503)


def hook_answers() -> dict[int | str, dict[str, Any]]:
    """The hooks' answers: 200 (nothing to do) and 202 (accepted), and their errors."""
    documented = answers(HookAnswered, 200, errors=HOOK_ERRORS)
    documented[202] = {"model": HookAccepted, "description": (HookAccepted.__doc__ or "").strip()}
    return documented
