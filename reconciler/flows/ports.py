"""`qrm ports`: the allocated ports with their owners, range usage per host and type, and whether one
port is free (and why not)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.core.errors import QrmError
from reconciler.core.models import LOCALHOST
from reconciler.core.state import DesiredState, RecordedState, service_to_dict
from reconciler.edges import probes
from reconciler.flows.desired import load_desired
from reconciler.flows.recorded import recorded_state
from reconciler.flows.workspace import Workspace


@dataclass(frozen=True)
class PortList:
    origin: str  # where the allocations were read: "registry", "lockfile" (registry empty) or "reports" (none)
    workspace: str
    allocations: list[dict[str, Any]]  # sorted by host and port, each with its "owner" (a workspace name)
    own: int  # this workspace's allocations before the filters; 0 until it is applied


def list_ports(ws: Workspace, *, host: str | None = None, type: str | None = None, mine: bool = False) -> PortList:
    """Every allocated port: this workspace's, and unless `mine` the other workspaces' in a shared registry;
    only those on `host` and of port `type` when given."""
    recorded = recorded_state(ws)
    rows: list[dict[str, Any]] = [{**service_to_dict(s), "owner": ws.name} for s in recorded.services.values()]
    if not mine:
        rows += [{"name": f.service, "host": f.host, "port": f.port, "type": f.type, "owner": f.owner}
                 for f in recorded.foreign]
    rows = sorted((r for r in rows if host in (None, r["host"]) and type in (None, r["type"])),
                  key=lambda r: (r["host"], r["port"]))
    return PortList(recorded.origin, ws.name, rows, len(recorded.services))


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


def range_usage(desired: DesiredState, recorded: RecordedState, ephemeral: tuple[int, int] | None) -> list[RangeUse]:
    reserved = desired.reserved_ports()
    by_host: dict[str, set[int]] = {}
    for svc in recorded.services.values():
        by_host.setdefault(svc.host, set()).add(svc.port)
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
    return range_usage(load_desired(ws), recorded_state(ws), probes.ephemeral_range())


@dataclass(frozen=True)
class PortStatus:
    host: str
    port: int
    free: bool
    reasons: list[str]
    range: str | None


def check_port(ws: Workspace, port: int, host: str) -> PortStatus:
    desired = load_desired(ws)
    if host not in desired.hosts:
        raise QrmError(f"unknown host {host!r}; known hosts: {', '.join(desired.host_names())}")
    recorded = recorded_state(ws)
    reasons = []
    for svc in recorded.services.values():
        if svc.host == host and svc.port == port:
            reasons.append(f"allocated to {svc.name}")
    for inst in desired.instances.values():
        if inst.host == host and inst.pinned == port and inst.name not in recorded.services:
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
