"""make_plan as a table: desired manifests + recorded services + live state -> the changes it must list.

Each Case is one rule of DESIGN.md "What apply does", item 1 (ports), written as data:

    desired   manifest dicts, validated as manifests/*.yaml would be
    recorded  what the registry holds (RecordedService)
    live      listeners per host and the kernel's ephemeral range
    changes   (symbol, address, port, reason substring); port is the port after the change
              (before it, for a delete), None for a repair

The lock file is in sync with `recorded` unless a case says otherwise, so only the
service changes show. Conflicts, errors and warnings are given as tuples of substrings
that one message must all contain; a case lists every message the plan must have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from reconciler.core.changes import Change, Plan
from reconciler.core.crosscheck import build_desired
from reconciler.core.models import manifest_list
from reconciler.core.plan import make_plan
from reconciler.core.report import render_lockfile
from reconciler.core.state import DesiredState, LiveState, RecordedService, RecordedState, SourceRef

IN_SYNC = "<the lock file render_lockfile gives for the recorded services>"


def desired_of(docs: list[dict[str, Any]]) -> DesiredState:
    models = manifest_list().validate_python(docs)
    desired, problems = build_desired((SourceRef("manifests/case.yaml", i), m) for i, m in enumerate(models))
    assert problems == [], problems
    return desired


def svc(name: str, type: str = "app", host: str = "localhost", **fields: Any) -> dict[str, Any]:
    return {"kind": "Service", "name": name, "type": type, "host": host, **fields}


def rec(name: str, port: int, type: str = "app", host: str = "localhost", **fields: Any) -> RecordedService:
    return RecordedService(name=name, host=host, port=port, type=type, **fields)


def host(name: str) -> dict[str, Any]:
    return {"kind": "Host", "name": name, "address": f"10.0.0.{len(name)}"}


def port_range(name: str, start: int, end: int, host: str = "*", type: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": "PortRange", "name": name, "start": start, "end": end, "host": host}
    if type is not None:
        doc["type"] = type
    return doc


def reservation(ports: list[int | str], reason: str, host: str = "localhost") -> dict[str, Any]:
    return {"kind": "Reservation", "host": host, "ports": ports, "reason": reason}


def listening(*ports: int, on: str = "localhost", ephemeral: tuple[int, int] | None = None) -> LiveState:
    return LiveState(listeners={on: frozenset(ports)}, ephemeral=ephemeral)


QUANTUMBLOG = {
    "kind": "Project",
    "name": "quantumblog",
    "environments": {
        "dev": {"host": "localhost"},
        "staging": {"host": "localhost"},
        "prod": {"host": "forge", "domain": "blog.example.com", "tls": True, "ports": {"web": 8443}},
    },
    "services": {
        "web": {"type": "app", "health": {"path": "/health"}},
        "blog-db": {"type": "database"},
    },
}


@dataclass(frozen=True)
class Case:
    id: str
    desired: list[dict[str, Any]]
    changes: list[tuple[str, str, int | None, str]]
    recorded: list[RecordedService] = field(default_factory=list)
    live: LiveState = field(default_factory=LiveState)
    origin: str = "registry"
    lockfile: str | None = IN_SYNC
    conflicts: list[tuple[str, ...]] = field(default_factory=list)
    errors: list[tuple[str, ...]] = field(default_factory=list)
    warnings: list[tuple[str, ...]] = field(default_factory=list)
    # address -> the fields an update changes, when that is the point of the case
    changed: dict[str, list[str]] = field(default_factory=dict)


CASES = [
    # --- a new service gets: pinned, else preferred if free, else the lowest free port -------------
    Case("empty registry: new services get the lowest free port of their type's range",
         [svc("api"), svc("worker"), svc("db", "database")],
         [("+", "service.api", 8000, "lowest free"),
          ("+", "service.db", 5400, "lowest free"),
          ("+", "service.worker", 8001, "lowest free")]),
    Case("a pinned port is used as given",
         [svc("api", port=8500)],
         [("+", "service.api", 8500, "pinned")]),
    Case("a pinned port may lie outside the type's range",
         [svc("api", port=80)],
         [("+", "service.api", 80, "pinned")]),
    Case("a free preferred port is used",
         [svc("api", preferred_port=8042)],
         [("+", "service.api", 8042, "preferred")]),
    Case("a preferred port that is reserved is not used: lowest free instead, skipping reserved ports",
         [svc("api", preferred_port=8042), reservation([8000, 8042], "ops")],
         [("+", "service.api", 8001, "lowest free")]),
    Case("a preferred port with a live listener is not used: lowest free instead, skipping listeners",
         [svc("api", preferred_port=8042)],
         [("+", "service.api", 8001, "lowest free")],
         live=listening(8000, 8042)),
    Case("a preferred port recorded for another service is not used",
         [svc("api", preferred_port=8042), svc("other")],
         [("+", "service.api", 8000, "lowest free")],
         recorded=[rec("other", 8042)]),
    Case("a preferred port pinned by another service is not used",
         [svc("api", preferred_port=8042), svc("pinned", port=8042)],
         [("+", "service.api", 8000, "lowest free"),
          ("+", "service.pinned", 8042, "pinned")]),
    Case("a preferred port in the kernel's ephemeral range is not used",
         [svc("api", preferred_port=40000)],
         [("+", "service.api", 8000, "lowest free")],
         live=LiveState(ephemeral=(32768, 60999))),

    # --- sticky: a port changes only when the manifest changes ---------------------------------
    Case("sticky: a recorded service keeps its port although a lower one is free",
         [svc("api")],
         [],
         recorded=[rec("api", 8005)]),
    Case("sticky: a recorded service keeps its port while its own process listens on it",
         [svc("api")],
         [],
         recorded=[rec("api", 8005)],
         live=listening(8005)),
    Case("sticky: a recorded service keeps its port even when that port is now in the ephemeral range",
         [svc("api")],
         [],
         recorded=[rec("api", 8005)],
         live=LiveState(ephemeral=(8000, 8010)),
         warnings=[("app 8000-8999", "ephemeral", "8000-8010")]),
    Case("sticky: a recorded service keeps a preferred port that lies outside its range",
         [svc("api", preferred_port=9500)],
         [],
         recorded=[rec("api", 9500)]),
    Case("a new service does not take a port recorded for a service that stays",
         [svc("api"), svc("new")],
         [("+", "service.new", 8001, "lowest free")],
         recorded=[rec("api", 8000)]),

    # --- removing releases ------------------------------------------------------------------------
    Case("removing a service deletes it and releases its port",
         [],
         [("-", "service.old", 8000, "releases localhost:8000")],
         recorded=[rec("old", 8000)]),
    Case("a port released in this plan is handed to a new service in the same plan",
         [svc("new")],
         [("+", "service.new", 8000, "lowest free"),
          ("-", "service.old", 8000, "releases localhost:8000")],
         recorded=[rec("old", 8000)]),

    # --- ranges -----------------------------------------------------------------------------------
    Case('a host-specific PortRange wins over the one for "*"',
         [host("h1"), port_range("app-h1", 9000, 9009, host="h1", type="app"),
          svc("on-h1", host="h1"), svc("on-localhost")],
         [("+", "service.on-h1", 9000, "lowest free"),
          ("+", "service.on-localhost", 8000, "lowest free")]),
    Case('a declared "*" range replaces the built-in default of its type',
         [port_range("app", 7000, 7099), svc("api")],
         [("+", "service.api", 7000, "lowest free")]),
    Case("an exhausted range: an error naming the range, the host and how many asked; no change for the rest",
         [port_range("app", 8000, 8001), svc("a"), svc("b"), svc("c")],
         [("+", "service.a", 8000, "lowest free"),
          ("+", "service.b", 8001, "lowest free")],
         errors=[("exhausted", "app 8000-8001", "host localhost", "1 of the 3")]),
    Case("an exhausted host-specific range names that host",
         [host("h1"), port_range("small", 9000, 9000, host="h1", type="app"),
          svc("a", host="h1"), svc("b", host="h1"), svc("c")],
         [("+", "service.a", 9000, "lowest free"),
          ("+", "service.c", 8000, "lowest free")],
         errors=[("exhausted", "small 9000-9000", "host h1", "1 of the 2")]),
    Case("reserved ports count against a range: two free ports, three asking",
         [port_range("app", 8000, 8003), reservation(["8001-8002"], "ops"), svc("a"), svc("b"), svc("c")],
         [("+", "service.a", 8000, "lowest free"),
          ("+", "service.b", 8003, "lowest free")],
         errors=[("exhausted", "app 8000-8003", "host localhost", "1 of the 3")]),
    Case("a range overlapping the ephemeral range: a warning, and ephemeral ports are skipped",
         [svc("a"), svc("b")],
         [("+", "service.a", 8000, "lowest free"),
          ("+", "service.b", 8003, "lowest free")],
         live=LiveState(ephemeral=(8001, 8002)),
         warnings=[("app 8000-8999", "ephemeral", "8001-8002")]),
    Case("a range lying at the edge of the ephemeral range runs out where the ephemeral range starts",
         [port_range("app", 32766, 32770), svc("a"), svc("b"), svc("c")],
         [("+", "service.a", 32766, "lowest free"),
          ("+", "service.b", 32767, "lowest free")],
         live=LiveState(ephemeral=(32768, 60999)),
         warnings=[("app 32766-32770", "ephemeral", "32768-60999")],
         errors=[("exhausted", "app 32766-32770", "1 of the 3")]),

    # --- pins and listeners -----------------------------------------------------------------------
    Case("a pinned port with an unknown live listener is a conflict naming the port; the plan is blocked",
         [svc("api", port=8500)],
         [("+", "service.api", 8500, "pinned")],
         live=listening(8500),
         conflicts=[("8500", "localhost", "api", "listening")]),
    Case("a pinned port whose listener is the same service at its recorded port is no conflict",
         [svc("api", port=8500)],
         [],
         recorded=[rec("api", 8500, pinned=True)],
         live=listening(8500)),
    Case("a listener on another host does not conflict with a pin on localhost",
         [host("h1"), svc("api", port=8500)],
         [("+", "service.api", 8500, "pinned")],
         live=listening(8500, on="h1")),
    Case("a new pin displaces another service's automatic port: that service moves, with the reason",
         [svc("auto"), svc("pin", port=8000)],
         [("~", "service.auto", 8001, "pinned by another service"),
          ("+", "service.pin", 8000, "pinned")],
         recorded=[rec("auto", 8000)]),
    Case("a new pin over another service's port is no conflict although that service's process listens there",
         [svc("auto"), svc("pin", port=8000)],
         [("~", "service.auto", 8001, "pinned by another service"),
          ("+", "service.pin", 8000, "pinned")],
         recorded=[rec("auto", 8000)],
         live=listening(8000)),
    Case("changing a pin moves the service to the new pin",
         [svc("api", port=8600)],
         [("~", "service.api", 8600, "pinned")],
         recorded=[rec("api", 8500, pinned=True)]),
    Case("dropping a pin keeps the port when it lies in the range",
         [svc("api")],
         [("~", "service.api", 8500, "")],
         recorded=[rec("api", 8500, pinned=True)],
         changed={"service.api": ["pinned"]}),

    # --- what moves a recorded service --------------------------------------------------------------
    Case('a reservation added over a recorded port moves the service, with the reason "reserved"',
         [svc("api"), reservation([8000], "nginx")],
         [("~", "service.api", 8001, "reserved")],
         recorded=[rec("api", 8000)]),
    Case("a type change gives a new port in the new type's range (and the new type's default protocol)",
         [svc("api", "database")],
         [("~", "service.api", 5400, "type changed from app")],
         recorded=[rec("api", 8000)],
         changed={"service.api": ["port", "protocol", "type"]}),
    Case("a host change gives a port on the new host",
         [host("h1"), svc("api", host="h1")],
         [("~", "service.api", 8000, "moved from host localhost")],
         recorded=[rec("api", 8003)],
         changed={"service.api": ["host", "port"]}),
    Case("a range change that leaves the recorded port outside moves the service into the new range",
         [port_range("app", 9000, 9099), svc("api")],
         [("~", "service.api", 9000, "outside the app range")],
         recorded=[rec("api", 8000)]),
    Case("a protocol change updates the registration and keeps the port",
         [svc("api", protocol="grpc")],
         [("~", "service.api", 8005, "")],
         recorded=[rec("api", 8005)],
         changed={"service.api": ["protocol"]}),
    Case("a tag change updates the registration and keeps the port",
         [svc("api", tags=["admin"])],
         [("~", "service.api", 8005, "")],
         recorded=[rec("api", 8005)],
         changed={"service.api": ["tags"]}),
    Case("a health check change updates the registration and keeps the port",
         [svc("api", health={"path": "/healthz"})],
         [("~", "service.api", 8005, "")],
         recorded=[rec("api", 8005, health={"path": "/health", "interval": "30s", "timeout": "5s",
                                            "success_before_passing": 1, "failures_before_critical": 1})],
         changed={"service.api": ["health"]}),

    # --- projects -----------------------------------------------------------------------------------
    Case("a project expands to one instance per environment, with the Environment's port pins",
         [host("forge"), QUANTUMBLOG],
         [("+", "service.quantumblog-dev-blog-db", 5400, "lowest free"),
          ("+", "service.quantumblog-dev-web", 8000, "lowest free"),
          ("+", "service.quantumblog-prod-blog-db", 5400, "lowest free"),
          ("+", "service.quantumblog-prod-web", 8443, "pinned"),
          ("+", "service.quantumblog-staging-blog-db", 5401, "lowest free"),
          ("+", "service.quantumblog-staging-web", 8001, "lowest free")]),
    Case("removing an environment deletes its instances only",
         [{**QUANTUMBLOG, "environments": {"dev": {"host": "localhost"}}}],
         [("-", "service.quantumblog-staging-blog-db", 5401, "releases localhost:5401"),
          ("-", "service.quantumblog-staging-web", 8001, "releases localhost:8001")],
         recorded=[
             rec("quantumblog-dev-blog-db", 5400, "database", protocol="tcp", project="quantumblog",
                 environment="dev"),
             rec("quantumblog-dev-web", 8000, protocol="http", project="quantumblog", environment="dev",
                 health={"path": "/health", "interval": "30s", "timeout": "5s", "success_before_passing": 1,
                         "failures_before_critical": 1}),
             rec("quantumblog-staging-blog-db", 5401, "database", protocol="tcp", project="quantumblog",
                 environment="staging"),
             rec("quantumblog-staging-web", 8001, protocol="http", project="quantumblog", environment="staging",
                 health={"path": "/health"}),
         ]),

    # --- the lock file and the registry -------------------------------------------------------------
    Case("a missing lock file is repaired",
         [svc("api")],
         [("!", "file.reports/allocations.yaml", None, "missing")],
         recorded=[rec("api", 8000)],
         lockfile=None),
    Case("an edited lock file is repaired",
         [svc("api")],
         [("!", "file.reports/allocations.yaml", None, "edited")],
         recorded=[rec("api", 8000)],
         lockfile=render_lockfile([rec("api", 8001)])),
    Case("no services and no lock file: nothing to repair",
         [],
         [],
         lockfile=None),
    Case("the lock file apply writes once the last service is removed is in sync",
         [],
         [],
         lockfile=render_lockfile([])),
    Case("an empty registry seeded from the lock file is restored, keeping every port",
         [svc("api"), svc("web", "web")],
         [("!", "registry", None, "restored from reports/allocations.yaml")],
         recorded=[rec("api", 8004), rec("web", 3007, "web")],
         origin="lockfile"),
]


def plan_for(case: Case) -> Plan:
    recorded = RecordedState({s.name: s for s in case.recorded}, origin=case.origin)
    lockfile = render_lockfile(case.recorded) if case.lockfile == IN_SYNC else case.lockfile
    live = LiveState(listeners=case.live.listeners, ephemeral=case.live.ephemeral, lockfile_text=lockfile)
    return make_plan(desired_of(case.desired), recorded, live)


def summary(change: Change) -> tuple[str, str, int | None]:
    side = change.before if change.action == "delete" else change.after
    port = side["port"] if side is not None and "port" in side else None
    return change.symbol, change.address, port


def assert_messages(kind: str, messages: list[str], expected: list[tuple[str, ...]]) -> None:
    """As many messages as expected, and each expected tuple of substrings found in its own message."""
    assert len(messages) == len(expected), f"{kind}s: {messages}"
    unmatched = list(messages)
    for parts in expected:
        match = next((m for m in unmatched if all(p in m for p in parts)), None)
        assert match is not None, f"no {kind} mentions all of {parts}: {messages}"
        unmatched.remove(match)


def without_generated(changes: tuple[Change, ...]) -> list[Change]:
    """The changes these cases are about: ports, services and reports (generated files have their own cases)."""
    return [c for c in changes if not c.address.startswith("file.generated/")]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan_case(case: Case) -> None:
    plan = plan_for(case)
    changes = without_generated(plan.changes)
    assert [summary(c) for c in changes] == [(s, a, p) for s, a, p, _ in case.changes]
    for change, (_, address, _, reason) in zip(changes, case.changes, strict=True):
        assert reason in change.reason, f"{address}: reason {change.reason!r} does not mention {reason!r}"
        if address in case.changed:
            assert change.changed_fields() == case.changed[address]
    assert_messages("conflict", [c.message for c in plan.conflicts], case.conflicts)
    assert_messages("error", list(plan.errors), case.errors)
    assert_messages("warning", list(plan.warnings), case.warnings)
    assert plan.blocked == bool(case.conflicts or case.errors)


def test_a_conflict_names_the_service_host_and_port_as_fields() -> None:
    plan = plan_for(Case("", [svc("api", port=8500)], [], live=listening(8500)))
    assert [(c.service, c.host, c.port) for c in plan.conflicts] == [("api", "localhost", 8500)]
    assert plan.blocked


def test_an_update_that_keeps_the_port_gives_no_allocation_reason() -> None:
    """'kept' or 'lowest free' would be noise next to a protocol change; the diff says what changed."""
    plan = plan_for(Case("", [svc("api", protocol="tcp")], [], recorded=[rec("api", 8005)]))
    assert [(c.action, c.reason) for c in plan.changes] == [("update", "")]


def test_the_plan_counts_services_and_actions() -> None:
    plan = plan_for(Case("", [svc("a"), svc("b", tags=["x"])], [], recorded=[rec("b", 8001), rec("gone", 8002)],
                         lockfile=None))
    assert plan.services == 2
    assert plan.counts() == {"create": 1, "update": 1, "delete": 1, "repair": 1}


# --- --target / --exclude: Plan.filtered -----------------------------------------------------------------

FILTER_CASE = Case(
    "",
    [host("forge"), QUANTUMBLOG, svc("quantum-admin"), svc("api")],
    [],
    recorded=[rec("old", 8100)],
    lockfile=None,
)


def addresses(plan: Plan) -> list[str]:
    return [c.address for c in without_generated(plan.changes)]


def test_filtered_without_patterns_is_the_whole_plan() -> None:
    plan = plan_for(FILTER_CASE)
    assert plan.filtered() is plan


def test_a_bare_target_name_matches_its_service() -> None:
    plan = plan_for(FILTER_CASE).filtered(targets=["quantum-admin"])
    assert addresses(plan) == ["service.quantum-admin"]
    assert plan.filters == {"target": ["quantum-admin"], "exclude": []}


def test_a_target_glob_matches_a_projects_environment() -> None:
    plan = plan_for(FILTER_CASE).filtered(targets=["quantumblog-dev-*"])
    assert addresses(plan) == ["service.quantumblog-dev-blog-db", "service.quantumblog-dev-web"]


def test_a_full_address_targets_the_lock_file_repair() -> None:
    plan = plan_for(FILTER_CASE).filtered(targets=["file.reports/*"])
    assert [c.address for c in plan.changes] == ["file.reports/allocations.yaml"]


def test_exclude_removes_matches_from_the_whole_plan() -> None:
    whole = plan_for(FILTER_CASE)
    plan = whole.filtered(excludes=["quantumblog-*", "old", "file.generated/*"])
    assert [c.address for c in plan.changes] == [
        "service.api", "service.quantum-admin", "file.reports/allocations.yaml"]
    assert plan.filters == {"target": [], "exclude": ["quantumblog-*", "old", "file.generated/*"]}


def test_exclude_wins_over_target() -> None:
    plan = plan_for(FILTER_CASE).filtered(targets=["quantumblog-*"], excludes=["*-prod-*"])
    assert addresses(plan) == [
        "service.quantumblog-dev-blog-db", "service.quantumblog-dev-web",
        "service.quantumblog-staging-blog-db", "service.quantumblog-staging-web",
    ]


def test_filtering_keeps_the_digests_conflicts_and_errors() -> None:
    whole = plan_for(Case("", [port_range("app", 8000, 8000), svc("a"), svc("b"), svc("pin", "web", port=3000)],
                          [], live=listening(3000)))
    part = whole.filtered(targets=["nothing-matches"])
    assert part.empty
    assert (part.desired_digest, part.recorded_digest) == (whole.desired_digest, whole.recorded_digest)
    assert (part.conflicts, part.errors) == (whole.conflicts, whole.errors)
    assert part.blocked
