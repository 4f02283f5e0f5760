"""Health checks as pure values: what to check, Consul's status rules, and the health report.

The probing itself is in edges (HTTP(S) in http_client.py, TCP in probes.py); this module only decides.

Consul's semantics, as its agent implements them (agent/checks, StatusHandler):
- a new check starts `critical`;
- a result of `passing` or `warning` counts as a success, `critical` as a failure; each resets the
  other counter;
- the status becomes the result's status only once `success_before_passing` consecutive successes
  (for passing and warning) or `failures_before_critical` consecutive failures (for critical) are
  reached; until then it stays what it was;
- only `passing` is healthy: discovery never returns a `warning` or `critical` instance.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.core.durations import parse_duration
from reconciler.core.state import RecordedService

PASSING, WARNING, CRITICAL = "passing", "warning", "critical"
UNKNOWN = "unknown"  # never checked, or changed since its last check (display only, never stored)
STATUSES = (PASSING, WARNING, CRITICAL)
DEFAULT_TIMEOUT = 5.0
HTTP_PROTOCOLS = ("http", "https")
REPORT_PATH = "reports/health.yaml"
REPORT_VERSION = 1


@dataclass(frozen=True)
class CheckSpec:
    """One check to run: an HTTP(S) GET of a path, or a TCP connect."""

    service: str
    kind: str  # "http" or "tcp"
    scheme: str  # "http", "https" or "tcp"
    address: str  # where to connect: the host's address (an IP or a DNS name)
    port: int
    path: str | None
    timeout: float  # seconds, for connect + TLS + request + response together
    success_before_passing: int = 1
    failures_before_critical: int = 1
    target: str = ""  # what was checked, by host name: a record of another target is not this check's
    tls_skip_verify: bool = False  # https: accept any certificate (still TLS, still the status code)

    @property
    def netloc(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    @property
    def description(self) -> str:
        """What the check does, for reports: "GET http://127.0.0.1:8001/health" or "TCP 127.0.0.1:5400"."""
        if self.kind == "http":
            return f"GET {self.scheme}://{self.netloc}{self.path}"
        return f"TCP {self.netloc}"


@dataclass(frozen=True)
class CheckResult:
    """What one probe found."""

    service: str
    status: str  # passing | warning | critical
    reason: str
    latency_ms: float
    started_at: float  # seconds since the epoch


@dataclass(frozen=True)
class HealthRecord:
    """A service's health as the registry keeps it between rounds."""

    service: str
    status: str
    successes: int  # consecutive
    failures: int  # consecutive
    latency_ms: float | None
    checked_at: str | None  # ISO 8601, UTC
    reason: str
    target: str = ""
    address: str | None = None  # address:port the last check connected to


def check_target(service: RecordedService) -> str:
    """The identity of a service's check: its record is void when the service's address or check changes."""
    health = service.health or {}
    path = health.get("path")
    if service.protocol in HTTP_PROTOCOLS and path:
        return f"{service.protocol}://{service.host}:{service.port}{path}"
    return f"tcp://{service.host}:{service.port}"


def check_spec(service: RecordedService, address: str) -> CheckSpec:
    """The check of a registered service: HTTP(S) GET on its health path for http and https services that
    have one, a TCP connect for everything else (tcp, grpc, and services without a path or check)."""
    health = service.health or {}
    path = health.get("path")
    timeout = parse_duration(str(health["timeout"])) if health.get("timeout") else DEFAULT_TIMEOUT
    http = service.protocol in HTTP_PROTOCOLS and bool(path)
    return CheckSpec(
        service=service.name,
        kind="http" if http else "tcp",
        scheme=service.protocol if http else "tcp",
        address=address,
        port=service.port,
        path=str(path) if http else None,
        timeout=timeout if timeout > 0 else DEFAULT_TIMEOUT,
        success_before_passing=int(health.get("success_before_passing", 1)),
        failures_before_critical=max(1, int(health.get("failures_before_critical", 1))),
        target=check_target(service),
        tls_skip_verify=bool(health.get("tls_skip_verify")) and http and service.protocol == "https",
    )


def http_status(code: int) -> str:
    """The status of an HTTP answer: 2xx passing, 429 warning, anything else critical (as Consul)."""
    if 200 <= code <= 299:
        return PASSING
    if code == 429:
        return WARNING
    return CRITICAL


def transition(previous: HealthRecord | None, spec: CheckSpec, result: CheckResult, checked_at: str) -> HealthRecord:
    """The record after one result, by Consul's rules (see the module docstring).

    A previous record of another target (the service moved, or its check changed) is ignored:
    that is a new check, which starts critical.
    """
    if previous is not None and previous.target != spec.target:
        previous = None
    status = previous.status if previous is not None else CRITICAL
    successes = previous.successes if previous is not None else 0
    failures = previous.failures if previous is not None else 0
    reason = result.reason
    if result.status in (PASSING, WARNING):
        successes, failures = successes + 1, 0
        if successes >= spec.success_before_passing:
            status = result.status
        else:
            reason = f"{result.reason} ({successes} of {spec.success_before_passing} successes before passing)"
    else:
        successes, failures = 0, failures + 1
        if failures >= spec.failures_before_critical:
            status = CRITICAL
        else:
            reason = f"{result.reason} ({failures} of {spec.failures_before_critical} failures before critical)"
    return HealthRecord(
        service=spec.service, status=status, successes=successes, failures=failures,
        latency_ms=round(result.latency_ms, 1), checked_at=checked_at, reason=reason, target=spec.target,
        address=spec.netloc,
    )


def next_round(
    previous: Mapping[str, HealthRecord],
    specs: Sequence[CheckSpec],
    results: Sequence[CheckResult],
    timestamps: Sequence[str],
) -> list[HealthRecord]:
    """Every service's record after a round, sorted by name (specs, results and timestamps align)."""
    records = [transition(previous.get(spec.service), spec, result, at)
               for spec, result, at in zip(specs, results, timestamps, strict=True)]
    return sorted(records, key=lambda r: r.service)


@dataclass(frozen=True)
class ServiceHealth:
    """A registered service with its health as last checked, for list, discover and reports."""

    service: RecordedService
    status: str  # passing | warning | critical | unknown
    reason: str
    latency_ms: float | None = None
    checked_at: str | None = None
    successes: int = 0
    failures: int = 0
    address: str | None = None  # address:port the last check connected to

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def hostport(self) -> str:
        return f"{self.service.host}:{self.service.port}"

    def to_dict(self) -> dict[str, Any]:
        s = self.service
        return {
            "name": s.name, "host": s.host, "port": s.port, "address": self.address, "type": s.type,
            "protocol": s.protocol, "tags": list(s.tags), "project": s.project, "environment": s.environment,
            "check": check_target(s), "status": self.status, "reason": self.reason,
            "latency_ms": self.latency_ms, "checked_at": self.checked_at,
            "successes": self.successes, "failures": self.failures,
        }


def service_health(service: RecordedService, record: HealthRecord | None) -> ServiceHealth:
    """A service with its record; `unknown` when never checked or changed since the last check."""
    if record is None:
        return ServiceHealth(service, UNKNOWN, "never checked (run qrm services health)")
    if record.target != check_target(service):
        return ServiceHealth(service, UNKNOWN, "changed since its last check (run qrm services health)")
    return ServiceHealth(service, record.status, record.reason, record.latency_ms, record.checked_at,
                         record.successes, record.failures, record.address)


def join(services: Iterable[RecordedService], records: Mapping[str, HealthRecord]) -> list[ServiceHealth]:
    """Every service with its health, sorted by name."""
    return [service_health(s, records.get(s.name)) for s in sorted(services, key=lambda s: s.name)]


def select(
    views: Iterable[ServiceHealth], *, type: str | None = None, tag: str | None = None,
    environment: str | None = None,
) -> list[ServiceHealth]:
    return [v for v in views
            if (type is None or v.service.type == type) and (tag is None or tag in v.service.tags)
            and (environment is None or v.service.environment == environment)]


def project_service_name(service: RecordedService) -> str | None:
    """`quantumblog-web` for the instance quantumblog-prod-web (None for a standalone service)."""
    if service.project is None or service.environment is None:
        return None
    prefix = f"{service.project}-{service.environment}-"
    if not service.name.startswith(prefix):
        return None
    return f"{service.project}-{service.name[len(prefix):]}"


def instances_of(name: str, views: Iterable[ServiceHealth]) -> list[ServiceHealth]:
    """The instances NAME means: the service of exactly that name, else every environment's instance of
    the project service PROJECT-SERVICE (quantumblog-web: quantumblog-dev-web, quantumblog-prod-web, ...)."""
    views = list(views)
    exact = [v for v in views if v.name == name]
    if exact:
        return exact
    return sorted((v for v in views if project_service_name(v.service) == name), key=lambda v: v.name)


@dataclass(frozen=True)
class Discovery:
    passing: list[ServiceHealth]  # sorted by name; the first is the answer
    candidates: list[ServiceHealth]  # every instance NAME means, after the filters

    @property
    def found(self) -> bool:
        return bool(self.passing)


def discover(name: str, views: Iterable[ServiceHealth]) -> Discovery:
    candidates = instances_of(name, views)
    return Discovery([v for v in candidates if v.status == PASSING], candidates)


def why_not(discovery: Discovery, name: str) -> str:
    """Why no instance of NAME is passing, naming each instance's status and reason."""
    if not discovery.candidates:
        return f"no service {name!r} is registered (with these filters)"
    parts = [f"{v.name} {v.status} ({v.reason})" for v in discovery.candidates[:20]]
    more = len(discovery.candidates) - len(parts)
    return (f"no passing instance of {name}: " + "; ".join(parts)
            + (f"; and {more} more" if more > 0 else ""))


def counts(statuses: Iterable[str]) -> dict[str, int]:
    totals = {PASSING: 0, WARNING: 0, CRITICAL: 0}
    for status in statuses:
        totals[status] = totals.get(status, 0) + 1
    return totals


def report_entry(view: ServiceHealth, spec: CheckSpec | None) -> dict[str, Any]:
    s = view.service
    return {
        "name": s.name, "host": s.host, "port": s.port,
        "check": spec.description if spec is not None else check_target(s),
        "status": view.status, "reason": view.reason, "latency_ms": view.latency_ms,
        "checked_at": view.checked_at, "successes": view.successes, "failures": view.failures,
    }


_REPORT_HEADER = (
    "# Written by `qrm services health`: every registered service's health after the last round,\n"
    "# sorted by name (Consul's rules: passing | warning | critical). Only times and latencies change\n"
    "# between rounds that find the same.\n"
)


def render_report(checked_at: str, entries: Sequence[dict[str, Any]]) -> str:
    """reports/health.yaml: one JSON flow mapping (valid YAML) per service, so a change is a one-line diff."""
    ordered = sorted(entries, key=lambda e: str(e["name"]))
    total = counts(str(e["status"]) for e in ordered)
    encoder = json.JSONEncoder(separators=(", ", ": "))
    lines = [_REPORT_HEADER, f"version: {REPORT_VERSION}\n", f"checked_at: {encoder.encode(checked_at)}\n",
             f"summary: {encoder.encode(total)}\n", "services:" + (" []\n" if not ordered else "\n")]
    lines.extend(f"- {encoder.encode(entry)}\n" for entry in ordered)
    return "".join(lines)


def report_statuses(text: str | None) -> dict[str, tuple[str, ...]]:
    """service -> (host, port, status, reason) from a reports/health.yaml text: what matters in a commit of it
    (latency and check times change every round and alone are not worth a commit)."""
    found: dict[str, tuple[str, ...]] = {}
    for line in (text or "").splitlines():
        if not line.startswith("- {"):
            continue
        try:
            entry = json.loads(line[2:])
        except ValueError:
            continue
        if isinstance(entry, dict):
            found[str(entry.get("name"))] = tuple(str(entry.get(key) or "") for key in ("host", "port", "status",
                                                                                     "reason"))
    return found
