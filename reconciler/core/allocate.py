"""The port allocator: a pure function from desired services and what is taken to port choices.

Order of precedence, per DESIGN.md: a pinned port; else the port the service already has
(allocations are sticky); else its preferred port when free; else the lowest free port of
its type's range on its host. Free means not allocated, not reserved, not listening and not
in the kernel's ephemeral range. Nothing here does I/O: the taken sets arrive as arguments,
so one pass over sorted candidates serves 10,000 services without a query per port.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from reconciler.core.models import PortRange
from reconciler.core.state import DesiredState, ForeignAllocation, LiveState, RecordedService, ServiceInstance


@dataclass(frozen=True)
class Conflict:
    """A blocking problem with one service's port: the plan cannot be applied until it is solved."""

    service: str
    host: str
    port: int
    message: str


@dataclass
class Allocation:
    ports: dict[str, int] = field(default_factory=dict)
    # Why a service got its port: "pinned", "kept", "preferred", "lowest free"; or why it moved.
    reasons: dict[str, str] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _in_ranges(port: int, ranges: list[PortRange]) -> bool:
    return any(r.start <= port <= r.end for r in ranges)


def _candidates(ranges: list[PortRange], ephemeral: tuple[int, int] | None) -> Iterator[int]:
    for r in ranges:
        for port in range(r.start, r.end + 1):
            if ephemeral is None or not ephemeral[0] <= port <= ephemeral[1]:
                yield port


def ephemeral_overlaps(desired: DesiredState, ephemeral: tuple[int, int] | None) -> list[str]:
    if ephemeral is None:
        return []
    low, high = ephemeral
    return [
        f"range {r.name} {r.start}-{r.end} (host {r.host}) overlaps the kernel's ephemeral port range "
        f"{low}-{high}; ports in the overlap are never allocated"
        for r in sorted(desired.ranges, key=lambda r: (r.name, r.host))
        if r.start <= high and low <= r.end
    ]


def allocate(desired: DesiredState, recorded: dict[str, RecordedService], live: LiveState,
             foreign: Sequence[ForeignAllocation] = ()) -> Allocation:
    """`foreign`: other workspaces' allocations in a shared registry: taken, whatever they are."""
    result = Allocation(warnings=ephemeral_overlaps(desired, live.ephemeral))
    reserved = desired.reserved_ports()
    taken: dict[str, set[int]] = {host: set(ports) for host, ports in reserved.items()}
    theirs = {(f.host, f.port): f for f in foreign}
    owner_of = {f.service: f.owner for f in foreign}
    for f in foreign:
        taken.setdefault(f.host, set()).add(f.port)

    def taken_on(host: str) -> set[int]:
        return taken.setdefault(host, set())

    instances = []
    for name in sorted(desired.instances):
        inst = desired.instances[name]
        if name in owner_of:  # service names are global in a shared registry, like Consul's catalog
            result.conflicts.append(Conflict(
                name, inst.host, 0, f"service {name} is registered by workspace {owner_of[name]!r} in the shared "
                                    "registry; service names are shared: rename one of them"))
            continue
        instances.append(inst)
    recorded_at = {(svc.host, svc.port): svc.name for svc in recorded.values()}

    # 1. Pins first: they win over every automatic choice.
    for inst in instances:
        if inst.pinned is None:
            continue
        port = inst.pinned
        other = theirs.get((inst.host, port))
        if other is not None:
            result.conflicts.append(Conflict(
                inst.name, inst.host, port, f"port {port} on {inst.host} is pinned by {inst.name} but is allocated "
                                            f"to {other.service} of workspace {other.owner!r}"))
            continue
        before = recorded.get(inst.name)
        already_ours = before is not None and before.host == inst.host and before.port == port
        in_use = port in live.listeners.get(inst.host, frozenset())
        # A listener on a port qrm gave another service is that service; it moves, so no conflict.
        if in_use and not already_ours and (inst.host, port) not in recorded_at:
            result.conflicts.append(Conflict(
                inst.name, inst.host, port,
                f"port {port} on {inst.host} is pinned by {inst.name} but another process is listening on it"))
        result.ports[inst.name] = port
        result.reasons[inst.name] = "pinned"
        taken_on(inst.host).add(port)

    # 2. Sticky: a service keeps the port it has while its host and type stay and the port stays valid.
    unplaced: list[ServiceInstance] = []
    for inst in instances:
        if inst.pinned is not None:
            continue
        before = recorded.get(inst.name)
        why_moved = _why_not_sticky(inst, before, desired, taken_on(inst.host), reserved.get(inst.host, {}))
        if before is not None and (before.host, before.port) in theirs:
            other = theirs[(before.host, before.port)]
            why_moved = f"port {before.port} is allocated to {other.service} of workspace {other.owner!r}"
        if before is not None and why_moved is None:
            result.ports[inst.name] = before.port
            result.reasons[inst.name] = "kept"
            taken_on(inst.host).add(before.port)
        else:
            if why_moved:
                result.reasons[inst.name] = why_moved
            unplaced.append(inst)

    # 3. Everything else: preferred when free, else the lowest free port, one cursor per (host, type).
    cursors: dict[tuple[str, str], Iterator[int]] = {}
    short: dict[tuple[str, str], int] = {}
    for inst in unplaced:
        busy = taken_on(inst.host)
        listening = live.listeners.get(inst.host, frozenset())
        ranges = desired.ranges_for(inst.host, inst.type)
        preferred = inst.preferred
        if preferred is not None and preferred not in busy and preferred not in listening and \
                not _ephemeral(preferred, live.ephemeral):
            result.ports[inst.name] = preferred
            result.reasons.setdefault(inst.name, "preferred")
            busy.add(preferred)
            continue
        cursor = cursors.setdefault((inst.host, inst.type), _candidates(ranges, live.ephemeral))
        chosen = next((p for p in cursor if p not in busy and p not in listening), None)
        if chosen is None:
            short[(inst.host, inst.type)] = short.get((inst.host, inst.type), 0) + 1
            continue
        result.ports[inst.name] = chosen
        result.reasons.setdefault(inst.name, "lowest free")
        busy.add(chosen)

    for (host, port_type), missing in sorted(short.items()):
        ranges = desired.ranges_for(host, port_type)
        spans = ", ".join(f"{r.name} {r.start}-{r.end}" for r in ranges) or "(none)"
        asked = sum(1 for i in unplaced if i.host == host and i.type == port_type)
        result.errors.append(
            f"port range exhausted: range {spans} on host {host} has no free port left for {missing} of the "
            f"{asked} {port_type} service{'s' if asked != 1 else ''} asking for a new port"
        )
    return result


def _ephemeral(port: int, ephemeral: tuple[int, int] | None) -> bool:
    return ephemeral is not None and ephemeral[0] <= port <= ephemeral[1]


def _why_not_sticky(
    inst: ServiceInstance,
    before: RecordedService | None,
    desired: DesiredState,
    busy: set[int],
    reserved: dict[int, str],
) -> str | None:
    """None when the recorded port can be kept; else why the service needs a new one."""
    if before is None:
        return None
    if before.host != inst.host:
        return f"moved from host {before.host}"
    if before.type != inst.type:
        return f"type changed from {before.type}"
    if before.port in reserved:
        return f"port {before.port} is now reserved ({reserved[before.port]})"
    if before.port in busy:
        return f"port {before.port} is now pinned by another service"
    if before.port != inst.preferred and not _in_ranges(before.port, desired.ranges_for(inst.host, inst.type)):
        return f"port {before.port} is outside the {inst.type} range"
    return None
