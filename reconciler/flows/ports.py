"""`qrm ports`: the allocated ports with their owners, range usage per host and type, and whether one
port is free (and why not)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconciler.core.errors import QrmError
from reconciler.core.models import LOCALHOST
from reconciler.core.state import DesiredState, RecordedService, service_to_dict
from reconciler.edges import probes
from reconciler.flows.desired import load_desired
from reconciler.flows.recorded import open_registry, read_recorded
from reconciler.flows.workspace import Workspace

if TYPE_CHECKING:
    from reconciler.edges.registry import Registry


@dataclass(frozen=True)
class PortList:
    origin: str  # where the allocations were read: "registry", "lockfile" (registry empty) or "reports" (none)
    workspace: str
    allocations: list[dict[str, Any]]  # sorted by host and port, each with its "owner" (a workspace name)
    own: int  # this workspace's allocations before the filters; 0 until it is applied


@dataclass(frozen=True)
class PortPage:
    origin: str  # as PortList's
    workspace: str
    total: int  # the allocations that match the filters, on every page
    allocations: list[dict[str, Any]]  # this page of them, sorted by host, port and name, each with its "owner"
    own: int  # as PortList's


@contextmanager
def _opened(ws: Workspace) -> Iterator[Registry | None]:
    registry = open_registry(ws, create=False)
    try:
        yield registry
    finally:
        if registry is not None:
            registry.close()


def list_ports(ws: Workspace, *, host: str | None = None, type: str | None = None, mine: bool = False) -> PortList:
    """Every allocated port: this workspace's, and unless `mine` the other workspaces' in a shared registry;
    only those on `host` and of port `type` when given."""
    with _opened(ws) as registry:
        page = port_page(ws, registry, host=host, type=type, mine=mine)
    return PortList(page.origin, page.workspace, page.allocations, page.own)


def port_page(ws: Workspace, registry: Registry | None, *, host: str | None = None, type: str | None = None,
              project: str | None = None, mine: bool = False, limit: int | None = None, offset: int = 0,
              search: str | None = None) -> PortPage:
    """One page of `list_ports` (`limit` None: all from `offset` on), also filtered by `project` and by `search`
    (a part of the name, or the port). From a
    registry that holds this workspace's record, the database filters, sorts and pages, and only the page
    becomes dictionaries; else the committed reports are the record (a fresh clone), read whole."""
    if registry is not None and registry.has_records():
        own, total, rows = registry.port_rows(host=host, type=type, project=project, foreign=not mine,
                                              limit=limit, offset=offset, search=search)
        return PortPage("registry", ws.name, total, [
            {**service_to_dict(r), "owner": ws.name} if isinstance(r, RecordedService) else
            {"name": r[0], "host": r[1], "port": r[2], "type": r[3], "owner": r[4]} for r in rows], own)
    recorded = read_recorded(ws, registry)
    found: list[dict[str, Any]] = [{**service_to_dict(s), "owner": ws.name} for s in recorded.services.values()]
    if not mine:
        found += [{"name": f.service, "host": f.host, "port": f.port, "type": f.type, "owner": f.owner}
                  for f in recorded.foreign]
    found = sorted((r for r in found if host in (None, r["host"]) and type in (None, r["type"])
                    and project in (None, r.get("project")) and _matches(r, search)),
                   key=lambda r: (r["host"], r["port"], r["name"]))
    end = None if limit is None else offset + limit
    return PortPage(recorded.origin, ws.name, len(found), found[offset:end], len(recorded.services))


def _matches(row: dict[str, Any], search: str | None) -> bool:
    return not search or search in row["name"] or (search.isdigit() and int(search) == row["port"])


def recorded_places(ws: Workspace, registry: Registry | None) -> dict[str, tuple[str, int]]:
    """Service name -> (host, port) of this workspace's recorded services (the registry, else the committed
    reports): what the range use and a port's check need, read without decoding the services."""
    if registry is not None and registry.has_records():
        return {name: (host, port) for name, host, port in registry.service_places()}
    return {s.name: (s.host, s.port) for s in read_recorded(ws, registry).services.values()}


@dataclass(frozen=True)
class RangeUse:
    host: str
    type: str
    name: str
    start: int
    end: int
    used: int
    reserved: int
    unavailable: int  # in the ephemeral range

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    @property
    def free(self) -> int:
        return self.size - self.used - self.reserved - self.unavailable


def range_usage(desired: DesiredState, places: dict[str, tuple[str, int]], ephemeral: tuple[int, int] | None,
                ) -> list[RangeUse]:
    """The use of every range of every host, given the recorded services' places (`recorded_places`)."""
    reserved = desired.reserved_ports()
    by_host: dict[str, set[int]] = {}
    for host, port in places.values():
        by_host.setdefault(host, set()).add(port)
    rows = []
    for host in desired.host_names():
        used_ports = by_host.get(host, set())
        for port_type in desired.port_types():
            for r in desired.ranges_for(host, port_type):
                span = range(r.start, r.end + 1)
                used = sum(1 for p in used_ports if r.start <= p <= r.end)
                held = {p for p in reserved.get(host, {}) if r.start <= p <= r.end} - used_ports
                eph = 0
                if ephemeral:
                    eph = sum(1 for p in span if ephemeral[0] <= p <= ephemeral[1] and p not in used_ports
                              and p not in held)
                rows.append(RangeUse(host, port_type, r.name, r.start, r.end, used, len(held), eph))
    return rows


def port_ranges(ws: Workspace) -> list[RangeUse]:
    """The use of every port range on every host, this machine's ephemeral range counted as unavailable."""
    desired = load_desired(ws)
    with _opened(ws) as registry:
        places = recorded_places(ws, registry)
    return range_usage(desired, places, probes.ephemeral_range())


@dataclass(frozen=True)
class PortStatus:
    host: str
    port: int
    free: bool
    reasons: list[str]
    range: str | None


def check_port(ws: Workspace, port: int, host: str) -> PortStatus:
    desired = load_desired(ws)
    with _opened(ws) as registry:
        places = recorded_places(ws, registry)
    return port_status(desired, places, port, host)


def port_status(desired: DesiredState, places: dict[str, tuple[str, int]], port: int, host: str) -> PortStatus:
    """Whether `port` is free on `host` and why not, given the recorded services' places (`recorded_places`);
    whether a process listens on it is probed now."""
    if host not in desired.hosts:
        raise QrmError(f"unknown host {host!r}; known hosts: {', '.join(desired.host_names())}")
    reasons = [f"allocated to {name}" for name, place in places.items() if place == (host, port)]
    for inst in desired.instances.values():
        if inst.host == host and inst.pinned == port and inst.name not in places:
            reasons.append(f"pinned by {inst.name} in {inst.source.file} (not applied yet)")
    reason = desired.reserved_ports().get(host, {}).get(port)
    if reason is not None:
        reasons.append(f"reserved ({reason})")
    if host == LOCALHOST:
        listening = port in probes.local_listeners()
    else:
        listening = port in probes.remote_listeners(desired.hosts[host].address, [port])
    if listening and not any(r.startswith("allocated") for r in reasons):
        reasons.append("a process is listening on it")
    ephemeral = probes.ephemeral_range()
    if ephemeral and ephemeral[0] <= port <= ephemeral[1]:
        reasons.append(f"in the kernel's ephemeral range {ephemeral[0]}-{ephemeral[1]}")
    in_range = None
    for port_type in desired.port_types():
        for r in desired.ranges_for(host, port_type):
            if r.start <= port <= r.end:
                in_range = f"{port_type} ({r.name} {r.start}-{r.end})"
    return PortStatus(host, port, not reasons, reasons, in_range)
