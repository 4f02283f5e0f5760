"""`qrm services list | discover | health` as a user runs them: services registered by a real apply,
real servers on the allocated ports, a real SQLite registry, and reports/health.yaml."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from reconciler.core.state import RecordedService
from reconciler.edges.registry import SCHEMA_VERSION, Registry
from tests.support.healthservers import Servers, Switch, running
from tests.support.workspace import Workspace

FLEET = """
kind: Service
name: api
type: app
protocol: http
health: {path: /health, timeout: 1s}
tags: [public]
---
kind: Service
name: admin
type: app
protocol: http
health: {path: /health, timeout: 1s, failures_before_critical: 2}
tags: [internal]
---
kind: Service
name: db
type: database
---
kind: Service
name: cache
type: cache
---
kind: Host
name: ghost
address: nonexistent.invalid
---
kind: Service
name: remote
host: ghost
type: app
health: {path: /health, timeout: 1s}
---
kind: Project
name: shop
environments:
  dev: {host: localhost}
  prod: {host: localhost}
services:
  web: {type: app, health: {path: /health, timeout: 1s}}
"""


@dataclass
class Fleet:
    ws: Workspace
    ports: dict[str, int]
    switches: dict[str, Switch]

    def health(self, *args: str) -> dict[str, Any]:
        result = self.ws.qrm("services", "health", "--json", *args)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with running() as started:
        yield started


def registry_of(ws: Workspace) -> Registry:
    return Registry(f"sqlite:///{ws.root / '.qrm' / 'registry.db'}")


def allocated(ws: Workspace) -> dict[str, int]:
    registry = registry_of(ws)
    try:
        return {name: s.port for name, s in registry.recorded_services().items()}
    finally:
        registry.close()


@pytest.fixture
def fleet(workspace: Workspace, servers: Servers) -> Fleet:
    """The fleet applied, then servers started on the ports apply chose: api and shop-prod-web answer 200,
    admin 200 until switched, shop-dev-web 500, db a listening socket; cache and remote have nothing."""
    workspace.manifest("fleet.yaml", FLEET)
    applied = workspace.qrm("apply", "--yes")
    assert applied.exit_code == 0, applied.output
    ports = allocated(workspace)
    switches = {"api": Switch(200), "admin": Switch(200), "shop-prod-web": Switch(200), "shop-dev-web": Switch(500)}
    for name, switch in switches.items():
        servers.status(switch, port=ports[name])
    servers.listener(port=ports["db"])
    return Fleet(workspace, ports, switches)


def by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in document["services"]}


def test_list_shows_every_registered_service_as_unknown_until_the_first_round(fleet: Fleet) -> None:
    result = fleet.ws.qrm("services", "list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "ADDRESS", "TYPE", "PROTOCOL", "HEALTH", "LATENCY", "LAST", "CHECK", "TAGS"]
    assert re.search(rf"^api\s+localhost:{fleet.ports['api']}\s+app\s+http\s+unknown\s+public$", result.output, re.M)
    assert re.search(rf"^remote\s+ghost:{fleet.ports['remote']}\s+app\s+http\s+unknown$", result.output, re.M)

    listed = json.loads(fleet.ws.qrm("services", "list", "--json").output)
    assert listed["source"] == "registry"
    assert [s["name"] for s in listed["services"]] == [
        "admin", "api", "cache", "db", "remote", "shop-dev-web", "shop-prod-web"]
    assert {s["status"] for s in listed["services"]} == {"unknown"}


def test_health_checks_every_service_records_statuses_and_writes_the_report(fleet: Fleet) -> None:
    result = fleet.ws.qrm("services", "health")
    assert result.exit_code == 0, result.output  # statuses are findings, not errors (see --fail-on)
    assert "7 services: 4 passing, 0 warning, 3 critical" in result.output
    assert "wrote reports/health.yaml" in result.output

    report = yaml.safe_load((fleet.ws.root / "reports" / "health.yaml").read_text())
    assert report["summary"] == {"passing": 4, "warning": 0, "critical": 3}
    entries = by_name(report)
    assert list(entries) == sorted(entries)
    got = {name: (e["status"], e["reason"]) for name, e in entries.items()}
    assert got == {
        "admin": ("passing", "HTTP 200"),
        "api": ("passing", "HTTP 200"),
        "cache": ("critical", f"connection refused by 127.0.0.1:{fleet.ports['cache']}"),
        "db": ("passing", f"TCP connect to 127.0.0.1:{fleet.ports['db']} succeeded"),
        "remote": ("critical", got["remote"][1]),
        "shop-dev-web": ("critical", "HTTP 500"),
        "shop-prod-web": ("passing", "HTTP 200"),
    }
    assert got["remote"][1].startswith("cannot resolve nonexistent.invalid")  # the Host's address was used
    assert entries["api"]["check"] == f"GET http://127.0.0.1:{fleet.ports['api']}/health"
    assert entries["remote"]["check"] == f"GET http://nonexistent.invalid:{fleet.ports['remote']}/health"
    assert all(e["latency_ms"] >= 0 and e["checked_at"].endswith("Z") for e in entries.values())

    listed = fleet.ws.qrm("services", "list").output
    assert re.search(rf"^api\s+localhost:{fleet.ports['api']}\s+app\s+http\s+passing\s+[\d.]+ ms\s+"
                     r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+public$", listed, re.M), listed
    assert re.search(r"^cache\s+\S+\s+cache\s+tcp\s+critical\s", listed, re.M), listed


def test_the_report_and_json_are_deterministic_apart_from_times(fleet: Fleet) -> None:
    def without_times(document: dict[str, Any]) -> dict[str, Any]:
        return {**document, "checked_at": None,
                "services": [{**e, "checked_at": None, "latency_ms": None} for e in document["services"]]}

    first = fleet.health()
    report_1 = yaml.safe_load((fleet.ws.root / "reports" / "health.yaml").read_text())
    second = fleet.health()
    report_2 = yaml.safe_load((fleet.ws.root / "reports" / "health.yaml").read_text())

    assert without_times(report_1) == without_times({**first, "version": 1})
    assert without_times(report_2) == without_times({**second, "version": 1})
    # the second round only adds to the counters
    assert [e["successes"] for e in second["services"]] == [
        2 * e["successes"] for e in first["services"]]
    assert without_times({**report_1, "services": [{**e, "successes": 0, "failures": 0} for e in
                                                   report_1["services"]]}) == \
        without_times({**report_2, "services": [{**e, "successes": 0, "failures": 0} for e in report_2["services"]]})


def test_fail_on_picks_the_exit_code(fleet: Fleet) -> None:
    assert fleet.ws.qrm("services", "health").exit_code == 0
    assert fleet.ws.qrm("services", "health", "--fail-on", "critical").exit_code == 1
    assert fleet.ws.qrm("services", "health", "--fail-on", "warning").exit_code == 1


def test_fail_on_warning_and_critical_with_a_throttled_service(workspace: Workspace, servers: Servers) -> None:
    workspace.manifest("api.yaml", "kind: Service\nname: api\ntype: app\nprotocol: http\n"
                                   "health: {path: /health, timeout: 1s}\n")
    assert workspace.qrm("apply", "--yes").exit_code == 0
    switch = Switch(200)
    servers.status(switch, port=allocated(workspace)["api"])
    assert workspace.qrm("services", "health", "--fail-on", "warning").exit_code == 0

    switch.status = 429
    assert workspace.qrm("services", "health", "--fail-on", "critical").exit_code == 0
    throttled = workspace.qrm("services", "health", "--fail-on", "warning")
    assert throttled.exit_code == 1
    assert re.search(r"^api\s+GET \S+\s+warning\s+[\d.]+ ms\s+HTTP 429$", throttled.output, re.M), throttled.output


def test_failures_before_critical_damp_a_failure_across_rounds(fleet: Fleet) -> None:
    assert by_name(fleet.health())["admin"]["status"] == "passing"
    fleet.switches["admin"].status = 500
    held = by_name(fleet.health())["admin"]
    assert (held["status"], held["reason"], held["failures"]) == (
        "passing", "HTTP 500 (1 of 2 failures before critical)", 1)
    critical = by_name(fleet.health())["admin"]
    assert (critical["status"], critical["reason"], critical["failures"], critical["successes"]) == (
        "critical", "HTTP 500", 2, 0)
    fleet.switches["admin"].status = 200
    assert by_name(fleet.health())["admin"]["status"] == "passing"


def test_discover_prints_the_address_of_a_passing_instance(fleet: Fleet) -> None:
    never = fleet.ws.qrm("services", "discover", "api")
    assert never.exit_code == 1
    assert "api unknown (never checked (run qrm services health))" in never.output

    fleet.health()
    ports = fleet.ports
    assert fleet.ws.qrm("services", "discover", "api").output == f"127.0.0.1:{ports['api']}\n"
    assert fleet.ws.qrm("services", "discover", "shop-prod-web").output == f"127.0.0.1:{ports['shop-prod-web']}\n"
    # the project service in any environment: only prod passes
    assert fleet.ws.qrm("services", "discover", "shop-web").output == f"127.0.0.1:{ports['shop-prod-web']}\n"
    fleet.switches["shop-dev-web"].status = 200
    fleet.health()
    both = fleet.ws.qrm("services", "discover", "shop-web", "--all").output.split()
    assert both == [f"127.0.0.1:{ports['shop-dev-web']}", f"127.0.0.1:{ports['shop-prod-web']}"]
    assert fleet.ws.qrm("services", "discover", "db", "--type", "database").exit_code == 0
    assert fleet.ws.qrm("services", "discover", "api", "--tag", "public").exit_code == 0

    for args, reason in [
        (("cache",), "no passing instance of cache: cache critical "
                     f"(connection refused by 127.0.0.1:{ports['cache']})"),
        (("remote",), "no passing instance of remote: remote critical (cannot resolve nonexistent.invalid"),
        (("api", "--tag", "internal"), "no service 'api' is registered (with these filters)"),
        (("db", "--type", "app"), "no service 'db' is registered (with these filters)"),
        (("nope",), "no service 'nope' is registered"),
    ]:
        result = fleet.ws.qrm("services", "discover", *args)
        assert result.exit_code == 1, args
        assert result.output.startswith(f"error: {reason}"), result.output

    fleet.switches["shop-prod-web"].status = 503
    fleet.switches["shop-dev-web"].status = 429
    fleet.health()
    none = fleet.ws.qrm("services", "discover", "shop-web")
    assert none.exit_code == 1
    assert none.output == ("error: no passing instance of shop-web: shop-dev-web warning (HTTP 429); "
                           "shop-prod-web critical (HTTP 503)\n")


def test_a_removed_service_loses_its_health_record(fleet: Fleet) -> None:
    fleet.health()
    fleet.ws.manifest("fleet.yaml", FLEET.replace("kind: Service\nname: cache\ntype: cache\n---\n", ""))
    assert fleet.ws.qrm("apply", "--yes").exit_code == 0
    assert "cache" not in by_name(fleet.health())
    registry = registry_of(fleet.ws)
    try:
        assert "cache" not in registry.recorded_health()
        assert len(registry.recorded_health()) == 6
    finally:
        registry.close()


def test_a_fresh_clone_checks_the_services_of_the_lock_file(fleet: Fleet) -> None:
    (fleet.ws.root / ".qrm" / "registry.db").unlink()
    document = fleet.health()
    assert by_name(document)["api"]["status"] == "passing"
    listed = json.loads(fleet.ws.qrm("services", "list", "--json").output)
    assert listed["source"] == "lockfile"
    assert {s["name"]: s["status"] for s in listed["services"]}["api"] == "passing"


def test_no_services_registered(workspace: Workspace) -> None:
    assert workspace.qrm("services", "list").output == "No services registered. Run qrm apply.\n"
    result = workspace.qrm("services", "health")
    assert (result.exit_code, result.output) == (0, "No services registered. Run qrm apply.\n")
    assert yaml.safe_load((workspace.root / "reports" / "health.yaml").read_text())["services"] == []
    assert workspace.qrm("services", "discover", "api").exit_code == 1


def test_a_version_3_registry_is_upgraded_to_4_and_later_keeping_its_data(workspace: Workspace) -> None:
    url = f"sqlite:///{workspace.root / '.qrm' / 'registry.db'}"
    old = Registry(url, upgrade_to=3)
    api = RecordedService(name="api", host="localhost", port=8000, type="app", tags=("a",),
                          health={"path": "/health", "timeout": "1s"})
    old.write([], [api], revision="abc", summary={"n": 1}, started_at="2024-01-01T00:00:00.000000Z",
              secrets={"TOKEN": "f00"})
    assert old.schema_version() == 3
    old.close()

    registry = Registry(url, upgrade_to=4)
    try:
        assert registry.schema_version() == 4
        assert registry.recorded_services() == {"api": api}
        assert registry.recorded_secrets() == {"TOKEN": "f00"}
        assert [(h.revision, h.outcome) for h in registry.history()] == [("abc", "success")]
        assert [(r["service"], r["port"]) for r in registry.allocation_rows()] == [("api", 8000)]
        assert registry.recorded_health() == {}
    finally:
        registry.close()

    listed = json.loads(workspace.qrm("services", "list", "--json").output)  # opening upgrades to the latest
    assert [(s["name"], s["port"], s["status"]) for s in listed["services"]] == [("api", 8000, "unknown")]
    workspace.qrm("services", "health")
    registry = Registry(url)
    try:
        assert registry.schema_version() == SCHEMA_VERSION >= 4
        assert registry.recorded_services() == {"api": api}
        assert set(registry.recorded_health()) == {"api"}
    finally:
        registry.close()
