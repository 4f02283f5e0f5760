"""Use cases of `qrm services`: the catalog with health, discovery, and a health round.

A round reads the registered services (the registry, or the lock file in a fresh clone), turns
each into a check (pure), runs all checks at once on one asyncio loop (HTTP(S) checks through
reconciler.edges.http_client, TCP connects through probes, name lookups shared), applies Consul's status rules to the
previous records inside one registry transaction (pure rules, one bulk write), and writes
reports/health.yaml atomically.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.core import health
from reconciler.core.errors import QrmError
from reconciler.core.health import CheckResult, CheckSpec, Discovery, HealthRecord, ServiceHealth
from reconciler.core.models import LOCALHOST
from reconciler.core.state import RecordedService
from reconciler.edges import files, probes
from reconciler.flows import notify_events
from reconciler.flows.recorded import open_registry, read_recorded
from reconciler.flows.workspace import Workspace

log = logging.getLogger(__name__)
LOCALHOST_ADDRESS = "127.0.0.1"
# Every check of a 1,000-service fleet in flight at once: with fewer slots, a slot a hanging service holds
# is held for its whole timeout, and the checks queued behind them end a round late.
DEFAULT_CONCURRENCY = 1000


@dataclass(frozen=True)
class Catalog:
    services: list[ServiceHealth]  # sorted by name
    origin: str  # "registry", or "lockfile" when the registry is empty (a fresh clone)


def catalog(ws: Workspace) -> Catalog:
    """Every registered service with its health as the last round left it."""
    registry = open_registry(ws, create=False)
    try:
        recorded = read_recorded(ws, registry)
        records = registry.recorded_health() if registry is not None else {}
    finally:
        if registry is not None:
            registry.close()
    return Catalog(health.join(recorded.services.values(), records), recorded.origin)


def list_services(ws: Workspace, *, type: str | None = None, tag: str | None = None) -> Catalog:
    found = catalog(ws)
    return Catalog(health.select(found.services, type=type, tag=tag), found.origin)


def discover(ws: Workspace, name: str, *, type: str | None = None, tag: str | None = None,
             environment: str | None = None) -> Discovery:
    """The passing instances NAME means (the service of that name, or PROJECT-SERVICE in every environment).

    In a shared registry a NAME that none of this workspace's services answers to is looked up among
    the other workspaces' services (service names are shared, as in Consul's catalog), with the health
    their own rounds recorded."""
    views = health.select(catalog(ws).services, type=type, tag=tag, environment=environment)
    found = health.discover(name, views)
    if found.candidates:
        return found
    others = health.select(foreign_catalog(ws), type=type, tag=tag, environment=environment)
    return health.discover(name, others) if others else found


def foreign_catalog(ws: Workspace) -> list[ServiceHealth]:
    """The other workspaces' services in a shared registry, with their health (none in a private one)."""
    registry = open_registry(ws, create=False)
    if registry is None:
        return []
    try:
        return health.join(registry.recorded_services(foreign=True).values(), registry.recorded_health(foreign=True))
    finally:
        registry.close()


@dataclass
class HealthRound:
    checked_at: str
    services: list[ServiceHealth]  # every service after the round, sorted by name
    specs: dict[str, CheckSpec]
    origin: str
    report: Path
    report_written: bool = False
    probe_seconds: float = 0.0
    write_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return health.counts(v.status for v in self.services)

    def entries(self) -> list[dict[str, Any]]:
        return [health.report_entry(v, self.specs.get(v.name)) for v in self.services]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def host_addresses(ws: Workspace, services: list[RecordedService]) -> dict[str, str]:
    """Host name -> address to check, from the Host manifests (read only when a service is elsewhere than
    localhost). A host no manifest names any more is looked up by its name."""
    addresses = {LOCALHOST: LOCALHOST_ADDRESS}
    if all(s.host == LOCALHOST for s in services):
        return addresses
    try:
        from reconciler.flows.desired import validate  # here: the manifests only for services on other hosts

        desired, problems = validate(ws)
    except QrmError as exc:
        log.warning("cannot read Host addresses from the manifests (%s); checking hosts by name", exc)
        return addresses
    if problems:
        log.warning("the manifests have %d problem(s); using the Host addresses that could be read", len(problems))
    addresses.update({name: host.address for name, host in desired.hosts.items()})
    return addresses


def run_checks(specs: list[CheckSpec], concurrency: int = DEFAULT_CONCURRENCY) -> list[CheckResult]:
    """Every check at once on one loop, at most `concurrency` in flight (and no more than the open-files limit,
    raised if it can be, allows); one result per spec, in order.

    HTTP(S) checks go to the aiohttp edge, TCP checks to probes; they share one bound and one set of
    name lookups, so a round takes about the longest timeout whatever the mix. Never raises for what a
    service does."""
    if not specs:
        return []
    import asyncio  # here: `qrm services list` and discover need neither asyncio nor aiohttp

    http = [s for s in specs if s.kind == "http"]
    tcp = [s for s in specs if s.kind != "http"]

    async def round_() -> list[CheckResult]:
        limit = asyncio.Semaphore(probes.open_files_for(min(max(1, concurrency), len(specs))))
        lookups = probes.Lookups()
        try:
            if http:
                from reconciler.edges import http_client

                http_results, tcp_results = await asyncio.gather(
                    http_client.check_all(http, limit, lookups.resolve), probes.check_all(tcp, limit, lookups))
            else:
                http_results, tcp_results = [], await probes.check_all(tcp, limit, lookups)
        finally:
            lookups.close()
        by_kind = {"http": iter(http_results), "tcp": iter(tcp_results)}
        return [next(by_kind["http" if s.kind == "http" else "tcp"]) for s in specs]

    return asyncio.run(round_())


def check_health(ws: Workspace, *, concurrency: int = DEFAULT_CONCURRENCY) -> HealthRound:
    """One round: check every registered service at once, record the statuses, write reports/health.yaml."""
    registry = open_registry(ws, create=False)
    try:
        recorded = read_recorded(ws, registry)
        services = sorted(recorded.services.values(), key=lambda s: s.name)
        if registry is None and services:
            registry = open_registry(ws, create=True)  # a fresh clone: the lock file's services
        addresses = host_addresses(ws, services)
        specs = [health.check_spec(s, addresses.get(s.host, s.host)) for s in services]
        round_start = time.time()
        start = time.perf_counter()
        results = run_checks(specs, concurrency)
        probe_seconds = time.perf_counter() - start
        timestamps = [_iso(r.started_at) for r in results]

        def update(previous: dict[str, HealthRecord]) -> list[HealthRecord]:
            return health.next_round(previous, specs, results, timestamps)

        start = time.perf_counter()
        if registry is not None:
            records = registry.record_health(update, prune=recorded.origin == "registry")
        else:
            records = update({})
        write_seconds = time.perf_counter() - start
    finally:
        if registry is not None:
            registry.close()
    # health.critical / health.recovered: the transitions of the damped statuses (only enqueued: never slower)
    notify_events.health_round(ws, records, {s.service: s for s in specs}, {s.name: s for s in services})
    by_name = {r.service: r for r in records}
    outcome = HealthRound(
        checked_at=_iso(round_start), services=health.join(services, by_name), specs={s.service: s for s in specs},
        origin=recorded.origin, report=ws.root / health.REPORT_PATH, probe_seconds=probe_seconds,
        write_seconds=write_seconds)
    start = time.perf_counter()
    outcome.report_written = files.write_atomic(outcome.report, health.render_report(outcome.checked_at,
                                                                                     outcome.entries()), root=ws.root)
    outcome.timings["report"] = time.perf_counter() - start
    log.info("health round: %d services in %.2f s (%s); registry write %.3f s", len(specs), probe_seconds,
             outcome.counts(), write_seconds)
    return outcome
