"""Properties of the allocator and planner over random workspaces (hypothesis).

A generated World is a workspace: hosts among localhost/h1/h2, small PortRanges per type
(some for one host only), reservations, and services that are automatic, pinned or have a
preferred port, all crowded into a few dozen ports so that they collide. The recorded state
comes from applying the plan of an earlier World (some services absent, changed or since
removed), so it is one qrm could really have written.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.core.allocate import Allocation, allocate
from reconciler.core.changes import Plan
from reconciler.core.crosscheck import build_desired
from reconciler.core.errors import AllocationError
from reconciler.core.models import manifest_list
from reconciler.core.plan import make_plan, services_after
from reconciler.core.report import LOCKFILE_PATH, render_lockfile
from reconciler.core.state import (
    DesiredState,
    ForeignAllocation,
    LiveState,
    RecordedService,
    RecordedState,
    SourceRef,
)
from reconciler.flows.apply import apply_workspace
from reconciler.flows.plan import plan_workspace
from reconciler.flows.workspace import open_workspace

HOSTS = ("localhost", "h1", "h2")
TYPES = ("app", "database", "cache")
# Most generated ranges, reservations, pins and listeners lie in this small span, so they collide.
LOW, HIGH = 10000, 10050

PURE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WITH_REGISTRY = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Draw = Callable[[st.SearchStrategy[Any]], Any]


@dataclass(frozen=True)
class World:
    hosts: tuple[str, ...]
    ranges: tuple[dict[str, Any], ...]
    reservations: dict[str, frozenset[int]]
    services: dict[str, dict[str, Any]]

    def documents(self) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = [
            {"kind": "Host", "name": h, "address": f"192.0.2.{i + 1}"} for i, h in enumerate(self.hosts)
            if h != "localhost"
        ]
        docs += list(self.ranges)
        docs += [{"kind": "Reservation", "name": f"held-{h}", "host": h, "ports": sorted(ports), "reason": "held"}
                 for h, ports in sorted(self.reservations.items()) if ports]
        docs += [self.services[name] for name in sorted(self.services)]
        return docs

    def desired(self) -> DesiredState:
        return desired_of(self.documents())

    def without(self, services: set[str], reservation_hosts: set[str]) -> World:
        return replace(
            self,
            services={n: s for n, s in self.services.items() if n not in services},
            reservations={h: p for h, p in self.reservations.items() if h not in reservation_hosts},
        )


def desired_of(docs: list[dict[str, Any]]) -> DesiredState:
    models = manifest_list().validate_python(docs)
    desired, problems = build_desired((SourceRef("manifests/world.yaml", i), m) for i, m in enumerate(models))
    assert problems == [], problems
    return desired


# --- strategies -----------------------------------------------------------------------------------------

# Strategies are built once: building one per draw costs more than the draw.
PORT = st.integers(LOW, HIGH)
NEAR_PORT = st.integers(LOW - 5, HIGH + 5)
RANGE_SHAPE = st.tuples(st.integers(0, len(HOSTS)), PORT, st.integers(0, 16))  # host index (0: "*"), start, length
RANGE_SHAPES = st.lists(RANGE_SHAPE, min_size=1, max_size=4)
SERVICE_SHAPE = st.tuples(
    st.integers(0, len(HOSTS) - 1),                             # host index
    st.sampled_from(TYPES),
    st.sampled_from(("http", "tcp")),
    st.sampled_from(("auto", "auto", "pinned", "preferred")),
    NEAR_PORT,                                                   # the pin or the preferred port
    st.booleans(),                                               # tagged
)
FATE = st.sampled_from(("same", "same", "absent", "changed"))
SOME_PORTS = st.sets(PORT, max_size=6)
STRANGERS = st.sets(NEAR_PORT, max_size=8)
EPHEMERAL = st.one_of(
    st.none(),
    st.just((32768, 60999)),
    st.tuples(PORT, st.integers(0, 15)).map(lambda t: (t[0], t[0] + t[1])),
)


def draw_ranges(draw: Draw, hosts: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    """1-4 ranges per type; usually one for every host ("*"), some for one host only, none overlapping."""
    ranges: list[dict[str, Any]] = []
    for port_type in TYPES:
        wanted = [("*" if index == 0 else hosts[(index - 1) % len(hosts)], start, length)
                  for index, start, length in draw(RANGE_SHAPES)]
        kept: list[tuple[str, int, int]] = []
        for host, start, length in wanted:
            end = start + length
            if any(h == host and start <= e and s <= end for h, s, e in kept):
                continue  # two ranges of one type on one host must not overlap
            kept.append((host, start, end))
        for index, (host, start, end) in enumerate(kept):
            label = "all" if host == "*" else host
            ranges.append({"kind": "PortRange", "name": f"{port_type}-{label}-{index}", "type": port_type,
                           "start": start, "end": end, "host": host})
    return tuple(ranges)


def draw_service(draw: Draw, name: str, hosts: tuple[str, ...], reserved: dict[str, frozenset[int]],
                 pins: dict[str, set[int]]) -> dict[str, Any]:
    host_index, port_type, protocol, mode, port, tagged = draw(SERVICE_SHAPE)
    host = hosts[host_index % len(hosts)]
    doc: dict[str, Any] = {"kind": "Service", "name": name, "host": host, "type": port_type, "protocol": protocol}
    if mode == "pinned":
        while port in reserved.get(host, ()) or port in pins[host]:
            port += 1  # pins are unique per host and never reserved (validation refuses both)
        pins[host].add(port)
        doc["port"] = port
    elif mode == "preferred":
        doc["preferred_port"] = port  # may be reserved, taken or listening: it is only a wish
    if tagged:
        doc["tags"] = ["t"]
    return doc


@st.composite
def world_pairs(draw: Draw, max_services: int = 60) -> tuple[World, World]:
    """(earlier, now): two Worlds over the same hosts; the earlier one's plan makes the recorded state."""
    hosts = ("localhost", *draw(st.lists(st.sampled_from(HOSTS[1:]), unique=True, max_size=2)))
    reserved = {h: frozenset(draw(SOME_PORTS)) for h in hosts}
    pins: dict[str, set[int]] = {h: set() for h in hosts}
    count = draw(st.integers(0, max_services))
    services = {f"s{i}": draw_service(draw, f"s{i}", hosts, reserved, pins) for i in range(count)}
    now = World(hosts, draw_ranges(draw, hosts), reserved, services)

    # The earlier World: fewer reservations, maybe other ranges, services absent, changed or since removed.
    earlier_reserved = {h: ports & draw(SOME_PORTS) for h, ports in reserved.items()}
    earlier_ranges = now.ranges if draw(st.booleans()) else draw_ranges(draw, hosts)
    earlier_pins: dict[str, set[int]] = {h: set() for h in hosts}
    earlier_services: dict[str, dict[str, Any]] = {}
    for name, doc in sorted(services.items()):
        fate = draw(FATE)
        if fate == "same" and doc.get("port") is not None and doc["port"] in earlier_pins[doc["host"]]:
            fate = "changed"
        if fate == "same":
            earlier_services[name] = doc
            if doc.get("port") is not None:
                earlier_pins[doc["host"]].add(doc["port"])
        elif fate == "changed":
            earlier_services[name] = draw_service(draw, name, hosts, earlier_reserved, earlier_pins)
    for i in range(draw(st.integers(0, 8))):
        earlier_services[f"old{i}"] = draw_service(draw, f"old{i}", hosts, earlier_reserved, earlier_pins)
    earlier = World(hosts, earlier_ranges, earlier_reserved, earlier_services)
    return earlier, now


def draw_live(draw: Draw, world: World, own: dict[str, RecordedService]) -> LiveState:
    """Random listeners and maybe an ephemeral range.

    Listeners are strangers on random ports, strangers on ports some service wants (pinned or
    preferred), and recorded services' own processes.
    """
    listeners = {}
    for host in world.hosts:
        strangers = draw(STRANGERS)
        wanted = sorted({p for doc in world.services.values() if doc["host"] == host
                         for p in (doc.get("port"), doc.get("preferred_port")) if p is not None})
        squatters = set(draw(st.sets(st.sampled_from(wanted), max_size=4))) if wanted else set()
        own_ports = sorted(s.port for s in own.values() if s.host == host)
        running = set(draw(st.sets(st.sampled_from(own_ports)))) if own_ports else set()
        listeners[host] = frozenset(strangers | squatters | running)
    return LiveState(listeners=listeners, ephemeral=draw(EPHEMERAL))


@dataclass(frozen=True)
class Scenario:
    earlier: World
    now: World
    desired: DesiredState
    recorded: RecordedState
    live: LiveState


def applied(plan: Plan, recorded: RecordedState) -> RecordedState:
    return RecordedState(services_after(recorded, plan.changes))


@st.composite
def scenarios(draw: Draw) -> Scenario:
    earlier, now = draw(world_pairs())
    first = make_plan(earlier.desired(), RecordedState({}), draw_live(draw, earlier, {}))
    # Applied as planned, even when blocked: a --target apply leaves such partial states too.
    recorded = applied(first, RecordedState({}))
    live = draw_live(draw, now, recorded.services)
    live = replace(live, lockfile_text=render_lockfile(recorded.services.values()))
    return Scenario(earlier, now, now.desired(), recorded, live)


# --- helpers --------------------------------------------------------------------------------------------

def in_ranges(desired: DesiredState, host: str, port_type: str, port: int) -> bool:
    return any(r.start <= port <= r.end for r in desired.ranges_for(host, port_type))


def ephemeral(live: LiveState, port: int) -> bool:
    return live.ephemeral is not None and live.ephemeral[0] <= port <= live.ephemeral[1]


def newly_allocated(s: Scenario, allocation: Allocation) -> dict[str, int]:
    """Services whose port is not the one recorded for them on that host."""
    fresh = {}
    for name, port in allocation.ports.items():
        before = s.recorded.services.get(name)
        inst = s.desired.instances[name]
        if before is None or (before.host, before.port) != (inst.host, port):
            fresh[name] = port
    return fresh


def unavailable(s: Scenario, allocation: Allocation, host: str) -> set[int]:
    """Ports on a host that no service may newly get: allocated, reserved, listening (ephemeral aside)."""
    allocated = {p for n, p in allocation.ports.items() if s.desired.instances[n].host == host}
    return allocated | s.desired.reserved_ports().get(host, {}).keys() | s.live.listeners.get(host, frozenset())


def host_ports(services: dict[str, RecordedService]) -> list[tuple[str, int]]:
    return [(svc.host, svc.port) for svc in services.values()]


# --- (a)-(c): what the allocator hands out ----------------------------------------------------------------

@PURE
@given(scenarios())
def test_no_two_services_get_the_same_host_and_port(s: Scenario) -> None:
    allocation = allocate(s.desired, s.recorded.services, s.live)
    chosen = [(s.desired.instances[n].host, p) for n, p in allocation.ports.items()]
    assert len(chosen) == len(set(chosen))
    plan = make_plan(s.desired, s.recorded, s.live)
    if not plan.blocked:
        after = applied(plan, s.recorded).services
        assert sorted(after) == sorted(s.desired.instances)
        assert len(set(host_ports(after))) == len(after)


@PURE
@given(scenarios())
def test_an_automatic_port_lies_in_its_types_effective_range_on_its_host(s: Scenario) -> None:
    """Pinned ports may lie anywhere, and so may a preferred port; every other port is in range."""
    allocation = allocate(s.desired, s.recorded.services, s.live)
    for name, port in allocation.ports.items():
        inst = s.desired.instances[name]
        if inst.pinned is not None:
            assert port == inst.pinned
        elif port != inst.preferred:
            assert in_ranges(s.desired, inst.host, inst.type, port), (name, port, inst.host, inst.type)


@PURE
@given(scenarios())
def test_a_new_port_is_never_reserved_listening_or_ephemeral(s: Scenario) -> None:
    allocation = allocate(s.desired, s.recorded.services, s.live)
    reserved = s.desired.reserved_ports()
    for name, port in newly_allocated(s, allocation).items():
        inst = s.desired.instances[name]
        if inst.pinned is not None:
            continue
        assert port not in reserved.get(inst.host, {}), (name, port, "reserved")
        assert port not in s.live.listeners.get(inst.host, frozenset()), (name, port, "listening")
        assert not ephemeral(s.live, port), (name, port, "ephemeral")


@PURE
@given(scenarios())
def test_the_lowest_free_port_is_the_lowest_one_and_exhaustion_is_reported(s: Scenario) -> None:
    """Below an automatic port, and anywhere in the range of a service left without one, nothing is free."""
    allocation = allocate(s.desired, s.recorded.services, s.live)
    fresh = newly_allocated(s, allocation)
    for name, inst in s.desired.instances.items():
        if inst.pinned is not None or (name in allocation.ports and name not in fresh):
            continue
        port = allocation.ports.get(name)
        if port is not None and port == inst.preferred:
            continue
        taken = unavailable(s, allocation, inst.host)
        lower_free = [p for r in s.desired.ranges_for(inst.host, inst.type) for p in range(r.start, r.end + 1)
                      if (port is None or p < port) and p not in taken and not ephemeral(s.live, p)]
        assert lower_free == [], (name, port, lower_free)
        if port is None:
            assert any(f"host {inst.host} " in e and "exhausted" in e for e in allocation.errors), allocation.errors


@PURE
@given(scenarios())
def test_a_service_keeps_its_recorded_port_unless_something_about_it_changed(s: Scenario) -> None:
    allocation = allocate(s.desired, s.recorded.services, s.live)
    reserved = s.desired.reserved_ports()
    pinned_elsewhere = {(i.host, i.pinned) for i in s.desired.instances.values() if i.pinned is not None}
    for name, before in s.recorded.services.items():
        inst = s.desired.instances.get(name)
        if inst is None or inst.pinned is not None:
            continue
        unchanged = (before.host == inst.host and before.type == inst.type
                     and before.port not in reserved.get(inst.host, {})
                     and (inst.host, before.port) not in pinned_elsewhere
                     and (before.port == inst.preferred or in_ranges(s.desired, inst.host, inst.type, before.port)))
        if unchanged:
            assert allocation.ports[name] == before.port
            assert allocation.reasons[name] == "kept"
        else:
            # It is placed afresh (possibly on the same port again, when the new range holds it),
            # and the plan says why it was not kept.
            assert allocation.reasons[name] not in ("kept", "lowest free", "preferred"), allocation.reasons[name]


# --- (d) apply then plan is empty ---------------------------------------------------------------------------

@PURE
@given(scenarios())
def test_applying_a_plan_then_planning_again_gives_no_changes(s: Scenario) -> None:
    plan = make_plan(s.desired, s.recorded, s.live)
    if plan.errors:
        return  # an exhausted range: apply refuses the plan
    after = applied(plan, s.recorded)
    # The applied services start and listen on their ports; that must not move them.
    running = {h: s.live.listeners.get(h, frozenset()) | {svc.port for svc in after.services.values()
                                                          if svc.host == h} for h in s.now.hosts}
    live = LiveState(listeners=running, ephemeral=s.live.ephemeral,
                     lockfile_text=render_lockfile(after.services.values()))
    again = make_plan(s.desired, after, live)
    assert again.changes == ()
    assert again.conflicts == () and again.errors == ()


# --- (d2) a shared registry: other workspaces' ports -----------------------------------------------------------

@PURE
@given(scenarios(), st.data())
def test_another_workspaces_ports_and_names_are_never_taken(s: Scenario, data: st.DataObject) -> None:
    """Whatever another workspace holds (some of it on ports this one has or wants), no service here
    gets one of its ports, a service with one of its names is a conflict, and applying then planning
    again with the same neighbours changes nothing."""
    foreign = []
    for host in s.now.hosts:
        mine = sorted(svc.port for svc in s.recorded.services.values() if svc.host == host)
        ports = data.draw(SOME_PORTS) | (data.draw(st.sets(st.sampled_from(mine), max_size=3)) if mine else set())
        foreign += [ForeignAllocation(host, port, f"theirs-{host}-{port}", "other") for port in sorted(ports)]
    if s.desired.instances and data.draw(st.booleans()):
        clash = data.draw(st.sampled_from(sorted(s.desired.instances)))
        foreign.append(ForeignAllocation("elsewhere", 1, clash, "other"))
    theirs = {(f.host, f.port) for f in foreign}
    names = {f.service for f in foreign}

    allocation = allocate(s.desired, s.recorded.services, s.live, foreign)
    for name, port in allocation.ports.items():
        assert (s.desired.instances[name].host, port) not in theirs, name
        assert name not in names
    assert {c.service for c in allocation.conflicts} >= names & set(s.desired.instances)

    recorded = replace(s.recorded, foreign=tuple(foreign))
    plan = make_plan(s.desired, recorded, s.live)
    if plan.blocked:
        return  # a conflict or an exhausted range: apply refuses
    after = replace(applied(plan, recorded), foreign=tuple(foreign))
    running = {h: s.live.listeners.get(h, frozenset()) | {svc.port for svc in after.services.values()
                                                          if svc.host == h} for h in s.now.hosts}
    live = LiveState(listeners=running, ephemeral=s.live.ephemeral,
                     lockfile_text=render_lockfile(after.services.values()))
    assert make_plan(s.desired, after, live).changes == ()


# --- (e) stickiness when other manifests go away -------------------------------------------------------------

@PURE
@given(scenarios(), st.data())
def test_removing_manifests_never_moves_a_service_that_stays(s: Scenario, data: st.DataObject) -> None:
    plan = make_plan(s.desired, s.recorded, s.live)
    if plan.errors:
        return
    after = applied(plan, s.recorded)
    gone = data.draw(st.sets(st.sampled_from(sorted(s.now.services))) if s.now.services else st.just(set()))
    unreserved = data.draw(st.sets(st.sampled_from(s.now.hosts)))
    smaller = s.now.without(gone, unreserved)
    live = replace(s.live, lockfile_text=render_lockfile(after.services.values()))
    again = make_plan(smaller.desired(), after, live)
    assert [(c.action, c.address) for c in again.changes] == [("delete", f"service.{n}") for n in sorted(gone)]
    kept = applied(again, after).services
    assert {n: (v.host, v.port) for n, v in kept.items()} == \
        {n: (v.host, v.port) for n, v in after.services.items() if n not in gone}


# --- (f) the same with the real registry, the lock file and the workflow ---------------------------------------

def write_world(root: Path, world: World) -> None:
    manifests = root / "manifests"
    if manifests.exists():
        shutil.rmtree(manifests)
    manifests.mkdir(parents=True)
    (manifests / "world.yaml").write_text(yaml.safe_dump_all(world.documents(), sort_keys=False))


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Path]:
    return lambda: tmp_path_factory.mktemp("ws")


@WITH_REGISTRY
@given(world_pairs(max_services=25))
def test_apply_then_plan_is_empty_and_the_lock_file_rebuilds_the_registry(
    workspaces: Callable[[], Path], pair: tuple[World, World]
) -> None:
    earlier, now = pair
    root = workspaces()
    write_world(root, earlier)
    ws = open_workspace(root)
    with contextlib.suppress(AllocationError):
        # An earlier World that does not fit leaves the registry empty; the one below starts afresh.
        apply_workspace(ws, refresh=False)

    write_world(root, now)
    expected = plan_workspace(ws, refresh=False).plan
    if expected.blocked:
        lock_before = (root / LOCKFILE_PATH).read_bytes() if (root / LOCKFILE_PATH).exists() else None
        with pytest.raises(AllocationError, match="nothing was applied"):
            apply_workspace(ws, refresh=False)
        lock_after = (root / LOCKFILE_PATH).read_bytes() if (root / LOCKFILE_PATH).exists() else None
        assert lock_after == lock_before
        return

    outcome = apply_workspace(ws, refresh=False)
    assert outcome.plan.changes == expected.changes
    assert plan_workspace(ws, refresh=False).plan.changes == ()
    lock = (root / LOCKFILE_PATH).read_bytes() if (root / LOCKFILE_PATH).exists() else None

    # A fresh clone: no registry, only the committed lock file. Plan reads it as the record (no change);
    # apply creates an empty registry and rebuilds it with the same ports.
    shutil.rmtree(root / ".qrm")
    assert plan_workspace(ws, refresh=False).plan.changes == ()
    restore = apply_workspace(ws, refresh=False).plan
    expected_restore = [("repair", "registry")] if now.services else []
    assert [(c.action, c.address) for c in restore.changes] == expected_restore
    assert ((root / LOCKFILE_PATH).read_bytes() if (root / LOCKFILE_PATH).exists() else None) == lock
    assert plan_workspace(ws, refresh=False).plan.changes == ()
