"""The manifest kinds, as frozen pydantic models that reject unknown fields.

These are the contract of manifests/*.yaml; `qrm schema` turns them into JSON Schemas so
editors can complete and check manifests. Cross-references between documents (unknown
hosts, duplicate names, ...) are checked in crosscheck.py, not here.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

from reconciler.core import request_parts
from reconciler.core.durations import DURATION_PATTERN
from reconciler.core.notifications import EVENT_KINDS, severity_rank

NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$"
PORT_SPAN_PATTERN = r"^\d{1,5}-\d{1,5}$"
SECRET_REF_PATTERN = r"^secret:[A-Za-z_][A-Za-z0-9_]*$"
PATH_PATTERN = r"^/"
URL_PATTERN = r"^https?://"
BASE_PATH_PATTERN = r"^(/[^/\s]+)*$"
JSON_PATH_PATTERN = r"^\$"
EMAIL_PATTERN = r"^[^@\s<>]+@[^@\s<>]+$"

# What each pattern means, for error messages (a regular expression tells a user little).
PATTERN_HINTS: dict[str, str] = {
    NAME_PATTERN: "a name of lower-case letters, digits, '.', '_' and '-' that starts and ends with a letter or digit",
    DURATION_PATTERN: "a duration such as 500ms, 30s, 2m or 1h30m",
    PORT_SPAN_PATTERN: 'a port span "START-END"',
    SECRET_REF_PATTERN: "a secret reference secret:NAME, never the secret itself "
                        "(store it with `qrm secrets set NAME`)",
    PATH_PATTERN: "a path starting with '/'",
    URL_PATTERN: "a URL starting with http:// or https://",
    BASE_PATH_PATTERN: "\"\" or a path such as /blog (starting with '/', no trailing '/')",
    JSON_PATH_PATTERN: "a JSON path starting with '$'",
    EMAIL_PATTERN: "an email address such as ops@example.com",
}
# Values of fields with these patterns are never repeated in a message: they may be a leaked secret.
SECRET_PATTERNS = frozenset({SECRET_REF_PATTERN})


class FieldError(ValueError):
    """A rule of a whole document that is about one of its fields: the loader points at that field."""

    def __init__(self, path: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.path = path


def _port_or_span(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """One item of a Reservation's ports: a port number or an ordered "START-END" span, in one clear message."""
    try:
        item = handler(value)
    except ValidationError:
        raise ValueError('expected a port number from 1 to 65535 or a span "START-END"') from None
    if isinstance(item, str):
        low, high = (int(part) for part in item.split("-"))
        if not 1 <= low <= high <= 65535:
            raise ValueError('expected a span "START-END" with 1 <= START <= END <= 65535')
    return item


Name = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN, max_length=63),
    Field(description="lower-case letters, digits, '.', '_' and '-'; starts and ends with a letter or digit"),
]
# One RFC 1123 label: letters, digits and '-', neither first nor last, at most 63 characters.
_HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _host_address(value: str) -> str:
    """A host name (RFC 1123 labels, an optional final '.') or an IPv4/IPv6 address: the address is written
    into .env files, compose files and URLs, where a newline, ';' or brace would be read as something else."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    labels = value.removesuffix(".").split(".")
    if len(value) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels):
        return value
    raise ValueError("expected a host name (dot-separated labels of letters, digits and '-', each at most 63 "
                     "characters, not starting or ending with '-') or an IPv4 or IPv6 address")


HostName = Annotated[str, StringConstraints(min_length=1, max_length=253), AfterValidator(_host_address)]
Port = Annotated[int, Field(ge=1, le=65535)]
PortSpan = Annotated[str, StringConstraints(pattern=PORT_SPAN_PATTERN), Field(description="START-END")]
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN), Field(description="e.g. 500ms, 30s, 2m")]
Protocol = Literal["http", "https", "tcp", "grpc"]
SecretRef = Annotated[
    str,
    StringConstraints(pattern=SECRET_REF_PATTERN),
    Field(description="secret:NAME, resolved from secrets.enc (environment, then project, then global)"),
]

LOCALHOST = "localhost"
ANY_HOST = "*"


def default_protocol(port_type: str, protocol: str | None) -> str:
    """A service speaks HTTP when its type is app or web, and plain TCP otherwise, unless it says."""
    if protocol is not None:
        return protocol
    return "http" if port_type in ("app", "web") else "tcp"


class Spec(BaseModel):
    """Base of every manifest part: immutable, and an unknown field is an error."""

    # defer_build: validators are built on first use, not at import; a run whose desired state
    # comes from the state cache never validates and so never pays for them (~70 ms).
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class HealthCheck(Spec):
    path: str | None = Field(None, pattern=PATH_PATTERN, description="HTTP path; absent means a TCP connect check")
    interval: Duration = "30s"
    timeout: Duration = "5s"
    success_before_passing: Annotated[int, Field(ge=0)] = 1
    failures_before_critical: Annotated[int, Field(ge=1)] = 1
    tls_skip_verify: bool | None = Field(
        None, description="https checks: do not verify the certificate (an internal service with a self-signed "
                          "one), as Consul's tls_skip_verify; default: verify")


class Host(Spec):
    kind: Literal["Host"]
    name: Name
    address: HostName
    description: str | None = None


class PortRange(Spec):
    kind: Literal["PortRange"]
    name: Name
    type: Name | None = Field(None, description="the port type this range serves; defaults to the name")
    start: Port
    end: Port
    host: str = Field(ANY_HOST, description='"*" for every host, or one host\'s name (wins over "*")')

    @property
    def port_type(self) -> str:
        return self.type or self.name

    @model_validator(mode="after")
    def _start_before_end(self) -> PortRange:
        if self.start > self.end:
            raise FieldError(("start",), f"start {self.start} is greater than end {self.end}")
        return self


class Reservation(Spec):
    kind: Literal["Reservation"]
    name: Name | None = None
    host: str = LOCALHOST
    ports: Annotated[list[Annotated[Port | PortSpan, WrapValidator(_port_or_span)]], Field(min_length=1)]
    reason: str

    def port_numbers(self) -> list[int]:
        numbers: list[int] = []
        for item in self.ports:
            if isinstance(item, int):
                numbers.append(item)
            else:
                low, high = (int(part) for part in item.split("-"))
                numbers.extend(range(low, high + 1))
        return numbers


class Service(Spec):
    kind: Literal["Service"]
    name: Name
    host: str = LOCALHOST
    type: Name = Field(description="the port type, which picks the range")
    port: Port | None = Field(None, description="pinned port")
    preferred_port: Port | None = Field(None, description="used when free, else the range's lowest free port")
    protocol: Protocol | None = Field(None, description="default: http for app and web, tcp otherwise")
    health: HealthCheck | None = None
    tags: list[str] = []

    @property
    def effective_protocol(self) -> str:
        return default_protocol(self.type, self.protocol)

    @model_validator(mode="after")
    def _pinned_or_preferred(self) -> Service:
        if self.port is not None and self.preferred_port is not None:
            raise FieldError(("preferred_port",), "give either port (pinned) or preferred_port, not both")
        return self


class Environment(Spec):
    host: str = LOCALHOST
    domain: str | None = None
    tls: bool = False
    protected: bool = Field(False, description="tests that write data never run here")
    url: str | None = Field(None, pattern=URL_PATTERN, description="explicit base URL for tests")
    ports: dict[Name, Port] = Field({}, description="pinned ports of this environment's service instances")
    run: Literal["host", "compose"] = Field(
        "host", description="host: the app runs on the host and every file names the host's address and the "
        "allocated ports; compose: every service runs in the generated docker-compose.yml and containers reach "
        "each other by service name and container port")
    tls_certificate: str | None = Field(
        None, pattern=PATH_PATTERN, description="with tls: the certificate (chain) nginx serves; default "
        "/etc/ssl/qrm/<server name>.crt; Let's Encrypt: /etc/letsencrypt/live/<domain>/fullchain.pem")
    tls_certificate_key: str | None = Field(
        None, pattern=PATH_PATTERN, description="with tls: its private key; default /etc/ssl/qrm/<server name>.key; "
        "Let's Encrypt: /etc/letsencrypt/live/<domain>/privkey.pem")

    @model_validator(mode="after")
    def _certificate_with_its_key(self) -> Environment:
        given = {"tls_certificate": self.tls_certificate, "tls_certificate_key": self.tls_certificate_key}
        if any(value is not None for value in given.values()):
            missing = [name for name, value in given.items() if value is None]
            if missing:
                other = "tls_certificate" if missing[0] == "tls_certificate_key" else "tls_certificate_key"
                raise FieldError((missing[0],), f"{other} is set, so {missing[0]} must be too (a certificate "
                                                "and its key go together)")
            if not self.tls:
                raise FieldError(("tls_certificate",), "tls_certificate is set but tls is false; "
                                                       "set tls: true or remove the certificate paths")
        return self


class ProjectService(Spec):
    type: Name
    protocol: Protocol | None = Field(None, description="default: http for app and web, tcp otherwise")
    preferred_port: Port | None = None
    health: HealthCheck | None = None
    tags: list[str] = []

    @property
    def effective_protocol(self) -> str:
        return default_protocol(self.type, self.protocol)


class Datasource(Spec):
    driver: Literal["postgresql", "sqlite", "mysql"]
    service: Name | None = Field(None, description="the project service this datasource connects to")
    database: str
    username: str | None = None
    password: SecretRef | None = None


class Project(Spec):
    kind: Literal["Project"]
    name: Name
    source: str | None = Field(None, description="folder of the Quantum app, relative to the workspace")
    base_path: str = Field("", pattern=BASE_PATH_PATTERN)
    environments: Annotated[dict[Name, Environment], Field(min_length=1)]
    services: dict[Name, ProjectService] = {}
    datasources: dict[Name, Datasource] = {}


class JsonPathCheck(Spec):
    path: str = Field(pattern=JSON_PATH_PATTERN)
    equals: Any = None
    exists: bool | None = None


class SelectorCheck(Spec):
    path: str
    contains: str | None = None
    equals: str | None = None
    count: Annotated[int, Field(ge=0)] | None = None


ASSERTION_KEYS = (
    "status", "status_in", "header", "contains", "not_contains", "regex", "json_path",
    "xpath", "css", "redirect", "flash", "max_ms", "no_errors",
)


class Assertion(Spec):
    """One expectation; exactly one key per list item, as in `expect: [{status: 200}]`."""

    status: Annotated[int, Field(ge=100, le=599)] | None = None
    status_in: list[Annotated[int, Field(ge=100, le=599)]] | None = None
    header: dict[str, str] | None = None
    contains: str | None = None
    not_contains: str | None = None
    regex: str | None = None
    json_path: JsonPathCheck | None = None
    xpath: SelectorCheck | None = None
    css: SelectorCheck | None = None
    redirect: str | None = None
    flash: str | None = None
    max_ms: Annotated[int, Field(ge=1)] | None = None
    no_errors: bool | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Assertion:
        given = [key for key in ASSERTION_KEYS if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f"an assertion has exactly one of {', '.join(ASSERTION_KEYS)}; got {given or 'none'}")
        return self


class UploadFile(Spec):
    """A file a case uploads in a multipart/form-data body: `content` as given, else `size` generated bytes."""

    filename: Annotated[str, StringConstraints(min_length=1)]
    content_type: str = "application/octet-stream"
    size: Annotated[int, Field(ge=0, le=10 * 1024 * 1024)] = 16
    content: str | None = None

    @model_validator(mode="after")
    def _sendable(self) -> UploadFile:  # both go into the part's headers: no header injection through them
        problem = request_parts.text_problem("the filename", self.filename)
        if problem is not None:
            raise FieldError(("filename",), problem)
        problem = request_parts.media_type_problem(self.content_type)
        if problem is not None:
            raise FieldError(("content_type",), problem)
        return self


class TestRequest(Spec):
    __test__ = False  # not a pytest test class
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, defer_build=True)

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    path: str = Field("/", pattern=PATH_PATTERN)
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    form: dict[str, str | int | float | bool] | None = None
    json_body: Any = Field(None, alias="json")
    datasource: str | None = Field(None, description="query tests: the datasource to run sql on")
    sql: str | None = None
    params: dict[str, Any] = {}
    files: dict[str, UploadFile] = Field(
        {}, description="uploads: field name -> file; the request is posted as multipart/form-data, with the "
                        "form: fields in the same body")

    @model_validator(mode="after")
    def _sendable(self) -> TestRequest:
        """Every part can be sent as written (core/request_parts): checked when the manifest loads, not at run time."""
        for name, value in self.headers.items():
            problem = request_parts.header_problem(name, value)
            if problem is not None:
                raise FieldError(("headers", name), problem)
        problem = request_parts.path_problem(self.path)
        if problem is not None:
            raise FieldError(("path",), problem)
        multipart = (("form", self.form or {}), ("files", self.files)) if self.files else ()  # names go in headers
        for field, names in multipart:
            for name in names:
                problem = request_parts.text_problem("the field name", name)
                if problem is not None:
                    raise FieldError((field, name), problem)
        return self


class TestCase(Spec):
    __test__ = False
    id: Annotated[str, StringConstraints(min_length=1)]
    name: str
    type: Literal["smoke", "auth", "action", "form", "query", "endpoint", "custom"]
    component: str | None = None
    writes: bool = Field(False, description="changes data: never run on a protected environment")
    request: TestRequest = TestRequest()
    expect: list[Assertion] = []
    retries: Annotated[int, Field(ge=0, le=10)] = 0
    timeout: Duration | None = None
    skip: str | None = Field(None, description="a reason: the case is not run and is reported as skipped with it "
                                                 "(qrm tests generate writes one for a case that cannot run yet)")


class TestSuite(Spec):
    __test__ = False
    kind: Literal["TestSuite"]
    name: Name
    project: Name
    auto_run: bool = False
    block_on_failure: bool = False
    environments: list[Name] = []
    cases: list[TestCase] = []
    generated_from: dict[str, str] = Field(
        {}, description="written by `qrm tests generate`: component path -> sha256 of the file its cases were "
                        "generated from; cases of a component whose hash changed are regenerated")


EventKind = Literal[
    "*", "apply.failed", "apply.succeeded", "drift.detected", "health.critical", "health.recovered", "tests.failed",
    "tests.flaky", "deploy.blocked", "secret.rotated", "notify.test",
]
Severity = Literal["info", "warning", "critical"]
NotifierProvider = Literal["webhook", "slack", "email", "apprise"]
EmailAddress = Annotated[str, StringConstraints(pattern=EMAIL_PATTERN, max_length=254)]

# The fields each provider needs, and those that only some providers read (set for another one: an error).
_PROVIDER_NEEDS: dict[str, tuple[str, ...]] = {
    "webhook": ("url", "signing_secret"),
    "slack": ("url",),
    "email": ("smtp_host", "sender", "to"),
    "apprise": ("url",),
}
_PROVIDER_FIELDS: dict[str, tuple[str, ...]] = {
    "url": ("webhook", "slack", "apprise"),
    "signing_secret": ("webhook",),
    "smtp_host": ("email",), "smtp_port": ("email",), "username": ("email",), "password": ("email",),
    "sender": ("email",), "to": ("email",), "starttls": ("email",), "tls_ca_file": ("email",),
}


class Notifier(Spec):
    """Where notifications go: a webhook, a Slack incoming webhook, an SMTP mailbox or an apprise URL. Every
    address and credential is a secret reference (global scope): the URL of a webhook is itself a credential."""

    kind: Literal["Notifier"]
    name: Name
    provider: NotifierProvider
    url: SecretRef | None = Field(None, description="webhook, slack and apprise: the URL, as secret:NAME")
    signing_secret: SecretRef | None = Field(
        None, description="webhook: the Standard Webhooks secret (whsec_<base64>), as secret:NAME")
    smtp_host: HostName | None = Field(None, description="email: the SMTP server")
    smtp_port: Port = Field(587, description="email: the SMTP port")
    username: str | None = Field(None, description="email: the SMTP user (needs password)")
    password: SecretRef | None = Field(None, description="email: the SMTP password, as secret:NAME")
    sender: str | None = Field(None, pattern=r"^[^<>@\s]+@[^<>@\s]+$|^[^<>]*<[^<>@\s]+@[^<>@\s]+>$",
                               description="email: the From address, ops@example.com or 'qrm <ops@example.com>'")
    to: list[EmailAddress] = Field([], description="email: the recipients")
    starttls: bool = Field(True, description="email: upgrade the connection with STARTTLS")
    tls_ca_file: str | None = Field(
        None, min_length=1, description="email: a PEM file of the CA to trust for the SMTP server's certificate "
                                        "instead of the system's (a private CA); relative to the workspace root")
    dedupe_window: Duration = Field("5m", description="the same event (by its key) within this window is sent once")

    @model_validator(mode="after")
    def _provider_fields(self) -> Notifier:
        for needed in _PROVIDER_NEEDS[self.provider]:
            if not getattr(self, needed):
                raise FieldError((needed,), f"{self.provider} notifiers need {needed}")
        for name in sorted(self.model_fields_set):
            providers = _PROVIDER_FIELDS.get(name)
            if providers is not None and self.provider not in providers:
                raise FieldError((name,), f"{name} is for {' and '.join(providers)} notifiers, not {self.provider}")
        if (self.username is None) != (self.password is None):
            missing = "password" if self.password is None else "username"
            raise FieldError((missing,), f"username and password go together: {missing} is missing")
        return self

    def secret_references(self) -> list[tuple[str, str]]:
        """(field, secret:NAME) of every field that holds one."""
        return [(name, value) for name in ("url", "signing_secret", "password")
                if (value := getattr(self, name)) is not None]


class Alert(Spec):
    """Which events go to which notifiers: the events (or "*"), the projects and environments (empty: all)
    and the least severity."""

    kind: Literal["Alert"]
    name: Name
    events: list[EventKind] = Field(min_length=1, description='event kinds, or "*" for every one')
    projects: list[Name] = Field([], description="only events of these projects (empty: every project)")
    environments: list[Name] = Field([], description="only events of these environments (empty: every one)")
    min_severity: Severity = Field("warning", description="events below this severity are not sent "
                                                          "(recoveries always are)")
    notifiers: list[Name] = Field(min_length=1, description="the Notifier manifests to send to")

    @model_validator(mode="after")
    def _reachable_events(self) -> Alert:
        # An event named here whose severity is below min_severity would never be sent: say so, rather
        # than leave apply.succeeded silently filtered out.
        for index, kind in enumerate(self.events):
            default = EVENT_KINDS.get(kind)
            if default is None or kind == "health.recovered":  # "*", or a recovery (always sent)
                continue
            if severity_rank(default) < severity_rank(self.min_severity):
                raise FieldError(("events", index), f"{kind} has severity {default}, below min_severity "
                                 f"{self.min_severity}, so it would never be sent; set min_severity: {default}")
        return self


Manifest = Annotated[
    Host | PortRange | Reservation | Service | Project | TestSuite | Notifier | Alert,
    Field(discriminator="kind"),
]
MANIFEST_KINDS: dict[str, type[Spec]] = {
    "Host": Host,
    "PortRange": PortRange,
    "Reservation": Reservation,
    "Service": Service,
    "Project": Project,
    "TestSuite": TestSuite,
    "Notifier": Notifier,
    "Alert": Alert,
}


@functools.cache
def manifest_list() -> TypeAdapter[list[Manifest]]:
    """The validator of a list of manifest documents of any kind (built on first use)."""
    return TypeAdapter(list[Manifest])



# The five port types that exist without any PortRange manifest.
DEFAULT_RANGES: tuple[PortRange, ...] = (
    PortRange.model_construct(kind="PortRange", name="app", start=8000, end=8999),
    PortRange.model_construct(kind="PortRange", name="database", start=5400, end=5499),
    PortRange.model_construct(kind="PortRange", name="cache", start=6370, end=6399),
    PortRange.model_construct(kind="PortRange", name="web", start=3000, end=3099),
    PortRange.model_construct(kind="PortRange", name="queue", start=5670, end=5699),
)


TokenScope = Literal["read", "write", "secrets"]


class ApiToken(Spec):
    """One named token of `qrm serve`, as `qrm token create` writes it: only the sha256 of the token."""

    name: Name
    scopes: list[TokenScope] = Field(min_length=1, description="read, write and/or secrets")
    created: str = Field(description="when it was created, UTC, ISO 8601")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex sha256 of the token; the token itself is "
                                                               "shown once, never stored")


class Settings(Spec):
    """qrm.yaml: optional settings of one workspace."""

    name: Name | None = Field(None, description="workspace identity; defaults to the folder name")
    registry: str | None = Field(None, description="SQLAlchemy URL; default sqlite at .qrm/registry.db")
    lock_timeout: Annotated[float, Field(ge=0)] = Field(
        0, description="seconds apply waits for another apply of this workspace before giving up"
    )
    commit_author: str | None = Field(
        None, pattern=r"^[^<>]+ <[^<>\s]+>$",
        description="author of qrm's report commits, 'Name <email>'; default: git's user, else qrm <qrm@localhost>",
    )
    generated_policy: dict[
        Literal[".env", "docker-compose.yml", "nginx.conf", "quantum.config.yaml", "*"], Literal["overwrite", "warn"]
    ] = Field({}, description="what apply does with a generated file edited by hand: overwrite (default) or warn")
    tokens: list[ApiToken] = Field([], description="the tokens of qrm serve (qrm token create|list|revoke)")
    public_url: str | None = Field(
        None, pattern=URL_PATTERN, description="where qrm serve is reachable, e.g. https://qrm.example.com: "
                                               "notifications link to its dashboard pages")

    @model_validator(mode="after")
    def _unique_token_names(self) -> Settings:
        names = [t.name for t in self.tokens]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"token name {twice[0]!r} is used twice; each token needs its own name")
        return self
