"""The pure health core: checks from registered services, Consul's status rules, discovery, the report."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import yaml

from reconciler.core import health
from reconciler.core.health import (
    CRITICAL,
    PASSING,
    UNKNOWN,
    WARNING,
    CheckResult,
    CheckSpec,
    HealthRecord,
    check_spec,
    discover,
    join,
    render_report,
    report_entry,
    transition,
)
from reconciler.core.state import RecordedService

# --- checks from services --------------------------------------------------------------------------


def svc(name: str = "api", protocol: str = "http", health_check: dict[str, object] | None = None, *,
        port: int = 8000, host: str = "localhost", **extra: object) -> RecordedService:
    return RecordedService(name=name, host=host, port=port, type="app", protocol=protocol, health=health_check,
                           **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(("protocol", "health_check", "kind", "path", "timeout"), [
    ("http", {"path": "/health", "timeout": "2s"}, "http", "/health", 2.0),
    ("https", {"path": "/ready", "timeout": "500ms"}, "http", "/ready", 0.5),
    ("http", {"timeout": "3s"}, "tcp", None, 3.0),  # no path: a TCP connect, still with its own timeout
    ("http", None, "tcp", None, 5.0),  # no check at all: TCP connect, Consul's default timeout
    ("tcp", {"path": "/health"}, "tcp", None, 5.0),
    ("grpc", {"path": "/health"}, "tcp", None, 5.0),
])
def test_the_check_of_a_service(protocol: str, health_check: dict[str, object] | None, kind: str,
                                path: str | None, timeout: float) -> None:
    spec = check_spec(svc(protocol=protocol, health_check=health_check), "127.0.0.1")
    assert (spec.kind, spec.path, spec.timeout) == (kind, path, timeout)
    assert spec.scheme == (protocol if kind == "http" else "tcp")


def test_a_check_describes_what_it_does_and_brackets_ipv6() -> None:
    assert check_spec(svc(health_check={"path": "/h"}), "127.0.0.1").description == "GET http://127.0.0.1:8000/h"
    assert check_spec(svc(protocol="tcp"), "::1").description == "TCP [::1]:8000"


@pytest.mark.parametrize(("protocol", "health_check", "skips"), [
    ("https", {"path": "/h", "tls_skip_verify": True}, True),
    ("https", {"path": "/h"}, False),
    ("http", {"path": "/h", "tls_skip_verify": True}, False),  # no TLS to skip
    ("https", {"tls_skip_verify": True}, False),  # no path: a TCP connect
])
def test_tls_skip_verify_applies_to_https_checks_only(protocol: str, health_check: dict[str, object],
                                                      skips: bool) -> None:
    assert check_spec(svc(protocol=protocol, health_check=health_check), "127.0.0.1").tls_skip_verify is skips


def test_thresholds_come_from_the_health_check() -> None:
    spec = check_spec(svc(health_check={"path": "/h", "success_before_passing": 2, "failures_before_critical": 3}),
                      "10.0.0.1")
    assert (spec.success_before_passing, spec.failures_before_critical) == (2, 3)


@pytest.mark.parametrize(("code", "status"), [
    (200, PASSING), (204, PASSING), (299, PASSING), (429, WARNING), (301, CRITICAL), (302, CRITICAL),
    (404, CRITICAL), (500, CRITICAL), (503, CRITICAL), (199, CRITICAL),
])
def test_http_status_codes_as_consul_maps_them(code: int, status: str) -> None:
    assert health.http_status(code) == status


# --- Consul's state machine ------------------------------------------------------------------------

P, W, C = PASSING, WARNING, CRITICAL


@dataclass(frozen=True)
class Flow:
    id: str
    success_before_passing: int
    failures_before_critical: int
    results: str  # one letter per round: P passing, W warning, C critical
    statuses: str  # the status after each round
    counters: tuple[int, int] | None = None  # (successes, failures) after the last round


LETTER = {"P": PASSING, "W": WARNING, "C": CRITICAL}

FLOWS = [
    Flow("a new check that passes is passing at once (1 success needed)", 1, 1, "P", "P", (1, 0)),
    Flow("a new check that fails is critical", 1, 1, "C", "C", (0, 1)),
    Flow("a new check starts critical until 2 successes", 2, 1, "PP", "CP", (2, 0)),
    Flow("0 successes needed: passing on the first", 0, 1, "P", "P"),
    Flow("three successes needed, a failure restarts the count", 3, 1, "PPCPPP", "CCCCCP", (3, 0)),
    Flow("3 failures before critical: passing holds for two failures", 1, 3, "PCCC", "PPPC", (0, 3)),
    Flow("a success between failures resets the failure count", 1, 3, "PCCPCC", "PPPPPP", (0, 2)),
    Flow("a new check that fails stays critical (it starts critical)", 1, 3, "CC", "CC", (0, 2)),
    Flow("flapping is damped by both thresholds", 2, 2, "PPCPCPCC", "CPPPPPPC"),
    Flow("warning (429) counts as a success and shows as warning", 1, 1, "PWP", "PWP"),
    Flow("warning also waits for success_before_passing", 2, 1, "WW", "CW", (2, 0)),
    Flow("warning and passing count together towards passing", 2, 1, "WP", "CP"),
    Flow("a warning service holds warning through failures below the threshold", 1, 2, "WCCW", "WWCW"),
    Flow("critical to passing after recovery", 1, 1, "CCP", "CCP", (1, 0)),
]


def run_flow(flow: Flow) -> list[HealthRecord]:
    spec = CheckSpec(service="api", kind="http", scheme="http", address="127.0.0.1", port=8000, path="/h",
                     timeout=1, success_before_passing=flow.success_before_passing,
                     failures_before_critical=flow.failures_before_critical, target="http://localhost:8000/h")
    record: HealthRecord | None = None
    records = []
    for index, letter in enumerate(flow.results):
        result = CheckResult("api", LETTER[letter], f"result {index}", 1.0, 0.0)
        record = transition(record, spec, result, f"t{index}")
        records.append(record)
    return records


@pytest.mark.parametrize("flow", FLOWS, ids=[f.id for f in FLOWS])
def test_consul_state_machine(flow: Flow) -> None:
    records = run_flow(flow)
    assert "".join(r.status[0].upper() for r in records) == flow.statuses
    if flow.counters is not None:
        assert (records[-1].successes, records[-1].failures) == flow.counters
    assert [r.checked_at for r in records] == [f"t{i}" for i in range(len(flow.results))]


def test_a_held_status_says_why_in_its_reason() -> None:
    pending, *_ = run_flow(Flow("", 2, 1, "P", "C"))
    assert pending.reason == "result 0 (1 of 2 successes before passing)"
    _, held = run_flow(Flow("", 1, 3, "PC", "PP"))
    assert held.reason == "result 1 (1 of 3 failures before critical)"


def test_a_record_of_another_target_is_a_new_check_that_starts_critical() -> None:
    spec = CheckSpec(service="api", kind="tcp", scheme="tcp", address="127.0.0.1", port=8001, path=None, timeout=1,
                     success_before_passing=2, target="tcp://localhost:8001")
    old = HealthRecord("api", PASSING, 5, 0, 1.0, "t0", "ok", target="tcp://localhost:8000")
    after = transition(old, spec, CheckResult("api", PASSING, "ok", 1.0, 0.0), "t1")
    assert (after.status, after.successes) == (CRITICAL, 1)


def test_next_round_is_sorted_by_name() -> None:
    specs = [CheckSpec(service=n, kind="tcp", scheme="tcp", address="127.0.0.1", port=1, path=None, timeout=1)
             for n in ("b", "a")]
    results = [CheckResult(n, PASSING, "ok", 1.234, 0.0) for n in ("b", "a")]
    records = health.next_round({}, specs, results, ["t", "t"])
    assert [(r.service, r.status, r.latency_ms, r.address) for r in records] == [
        ("a", PASSING, 1.2, "127.0.0.1:1"), ("b", PASSING, 1.2, "127.0.0.1:1")]


# --- views, discovery ------------------------------------------------------------------------------


def record_for(service: RecordedService, status: str) -> HealthRecord:
    return HealthRecord(service.name, status, 1, 0, 2.0, "2026-01-01T00:00:00.000000Z", f"was {status}",
                        health.check_target(service), f"127.0.0.1:{service.port}")


def test_a_service_never_checked_or_changed_since_is_unknown() -> None:
    api = svc(health_check={"path": "/h"})
    assert health.service_health(api, None).status == UNKNOWN
    moved = replace(api, port=8009)
    view = health.service_health(moved, record_for(api, PASSING))
    assert (view.status, view.reason) == (UNKNOWN, "changed since its last check (run qrm services health)")
    assert health.service_health(api, record_for(api, PASSING)).status == PASSING


def instance(project: str, env: str, service: str, port: int) -> RecordedService:
    return svc(f"{project}-{env}-{service}", port=port, project=project, environment=env)


def test_discover_an_exact_name_or_a_project_service_in_any_environment() -> None:
    services = [instance("blog", "dev", "web", 8000), instance("blog", "prod", "web", 8001),
                instance("blog", "prod", "db", 8002), svc("blog-web-admin", port=8003)]
    status = {"blog-dev-web": CRITICAL, "blog-prod-web": PASSING, "blog-prod-db": PASSING,
              "blog-web-admin": PASSING}
    views = join(services, {s.name: record_for(s, status[s.name]) for s in services})

    assert [v.address for v in discover("blog-web", views).passing] == ["127.0.0.1:8001"]
    assert [v.name for v in discover("blog-web", views).candidates] == ["blog-dev-web", "blog-prod-web"]
    assert [v.name for v in discover("blog-prod-db", views).passing] == ["blog-prod-db"]
    assert [v.name for v in discover("blog-web-admin", views).passing] == ["blog-web-admin"]
    dev_only = health.select(views, environment="dev")
    found = discover("blog-web", dev_only)
    assert not found.found
    assert health.why_not(found, "blog-web") == (
        "no passing instance of blog-web: blog-dev-web critical (was critical)")
    assert health.why_not(discover("nope", views), "nope") == "no service 'nope' is registered (with these filters)"


@pytest.mark.parametrize("status", [WARNING, CRITICAL, UNKNOWN])
def test_only_passing_instances_are_discovered(status: str) -> None:
    api = svc()
    records = {} if status == UNKNOWN else {"api": record_for(api, status)}
    found = discover("api", join([api], records))
    assert not found.found and [v.status for v in found.candidates] == [status]


def test_filters_by_type_and_tag() -> None:
    views = join([svc("a", tags=("x",)), replace(svc("b"), type="database")], {})
    assert [v.name for v in health.select(views, tag="x")] == ["a"]
    assert [v.name for v in health.select(views, type="database")] == ["b"]


# --- the report ------------------------------------------------------------------------------------


def test_the_report_is_sorted_yaml_with_a_summary() -> None:
    services = [svc("b", port=8001), svc("a", port=8000, protocol="tcp")]
    views = join(services, {s.name: record_for(s, PASSING if s.name == "a" else CRITICAL) for s in services})
    entries = [report_entry(v, check_spec(v.service, "127.0.0.1")) for v in reversed(views)]
    text = render_report("2026-01-01T00:00:00.000000Z", entries)
    data = yaml.safe_load(text)

    assert data["version"] == 1
    assert data["summary"] == {"passing": 1, "warning": 0, "critical": 1}
    assert [(e["name"], e["status"], e["check"]) for e in data["services"]] == [
        ("a", PASSING, "TCP 127.0.0.1:8000"), ("b", CRITICAL, "TCP 127.0.0.1:8001")]
    assert render_report("2026-01-01T00:00:00.000000Z", list(reversed(entries))) == text
    assert yaml.safe_load(render_report("t", []))["services"] == []
