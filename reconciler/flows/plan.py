"""`qrm plan`: desired, recorded and live state read, then make_plan (pure); saved plans written
and checked before `qrm apply FILE` applies one exactly.

Data flows one way: load + registry + probes -> DesiredState / RecordedState / LiveState ->
make_plan (pure) -> Plan -> apply effects -> report. Every run reads everything afresh.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reconciler.core import generated
from reconciler.core.changes import Plan
from reconciler.core.errors import (
    QrmError,
    StalePlanError,
)
from reconciler.core.models import LOCALHOST
from reconciler.core.plan import make_plan
from reconciler.core.report import (
    LOCKFILE_PATH,
    PLAN_FORMAT_VERSION,
    STATE_PATH,
    plan_document,
)
from reconciler.core.state import DesiredState, LiveState, RecordedState
from reconciler.edges import files, machine_key, probes
from reconciler.edges.registry import Registry, display_url
from reconciler.flows import generated_files
from reconciler.flows.desired import load_desired
from reconciler.flows.recorded import open_registry, read_recorded
from reconciler.flows.workspace import Workspace

log = logging.getLogger(__name__)

MAX_PROBE_ROUNDS = 10


def read_live(ws: Workspace, desired: DesiredState, refresh: bool,
              recorded: RecordedState | None = None, local_host: str | None = None) -> LiveState:
    """`local_host`: this machine is that host (`--host`): its listeners are read here, locally,
    and no other host is probed (from this machine, `localhost` would be the wrong one)."""
    lockfile_text = files.read_text_or_none(ws.root / LOCKFILE_PATH)
    state_text = files.read_text_or_none(ws.root / STATE_PATH)
    # Generated files are the workspace's own: read even with --no-refresh (that skips hosts only).
    file_shas: dict[str, str | None] = {}
    file_texts: dict[str, str] = {}
    file_modes: dict[str, int | None] = {}
    if recorded is not None and recorded.origin == "reports":
        # A clone's working tree is not the deployment: no drift, only what the manifests change.
        file_shas = {path: f.written_sha for path, f in recorded.files.items()}
    elif recorded is not None:
        file_shas = generated_files.disk_digests(ws.root, recorded.files, machine_key.read_key())
        file_texts = generated_files.edited_texts(ws.root, recorded.files, file_shas)
        file_modes = generated_files.disk_modes(ws.root, recorded.files)
    if not refresh:
        return LiveState(refreshed=False, lockfile_text=lockfile_text, file_shas=file_shas, file_texts=file_texts,
                         file_modes=file_modes, state_text=state_text)
    if local_host is not None:
        return LiveState(listeners={local_host: probes.local_listeners()}, ephemeral=probes.ephemeral_range(),
                         lockfile_text=lockfile_text, file_shas=file_shas, file_texts=file_texts,
                         file_modes=file_modes, state_text=state_text)
    listeners: dict[str, frozenset[int]] = {LOCALHOST: probes.local_listeners()}
    for host in desired.hosts:
        if host != LOCALHOST:
            pinned = {i.pinned or i.preferred for i in desired.instances.values() if i.host == host}
            address = desired.hosts[host].address
            listeners[host] = probes.remote_listeners(address, {p for p in pinned if p})
    return LiveState(listeners=listeners, ephemeral=probes.ephemeral_range(), lockfile_text=lockfile_text,
                     file_shas=file_shas, file_texts=file_texts, file_modes=file_modes, state_text=state_text)


def _probe_new_remote_ports(desired: DesiredState, live: LiveState, plan: Plan,
                            probed: dict[str, set[int]]) -> LiveState | None:
    """Ports the plan would newly hand out on other hosts, asked once; a new LiveState if any is busy."""
    wanted: dict[str, set[int]] = {}
    for change in plan.service_changes():
        after = change.after
        moved = after is not None and (change.before is None or change.before["port"] != after["port"])
        if not (after and moved and after["host"] != LOCALHOST):
            continue
        if after["port"] not in probed.setdefault(after["host"], set()):
            wanted.setdefault(after["host"], set()).add(after["port"])
    busy = dict(live.listeners)
    found = False
    for host, ports in wanted.items():
        probed[host] |= ports
        open_ports = probes.remote_listeners(desired.hosts[host].address, ports)
        if open_ports:
            found = True
            busy[host] = busy.get(host, frozenset()) | open_ports
    if not found:
        return None
    return replace(live, listeners=busy)


@dataclass
class PlanContext:
    """A plan with the states it was made from. It holds the registry it read open (apply goes on to
    write through it): close it, or use the context as a `with` block."""

    ws: Workspace
    desired: DesiredState
    recorded: RecordedState
    live: LiveState
    plan: Plan
    registry: Registry | None = None

    def close(self) -> None:
        if self.registry is not None:
            self.registry.close()

    def __enter__(self) -> PlanContext:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def plan_workspace(ws: Workspace, *, refresh: bool = True, targets: tuple[str, ...] = (),
                   excludes: tuple[str, ...] = (), registry: Registry | None = None,
                   desired: DesiredState | None = None, host: str | None = None) -> PlanContext:
    """`host`: plan as that host's own machine (`--host`): probe its listeners locally and keep only
    its services, the files of its environments and the shared records (generated.only_host)."""
    if desired is None:
        desired = load_desired(ws)
    if host is not None and host not in desired.hosts:
        raise QrmError(f"--host {host}: unknown host; known hosts: {', '.join(desired.host_names())}")
    if registry is None:
        registry = open_registry(ws, create=False)
    recorded = read_recorded(ws, registry)
    live = read_live(ws, desired, refresh, recorded, local_host=host)
    plan = make_plan(desired, recorded, live)
    log.debug("plan: %s (recorded from %s, %d services, %d secrets)", plan.counts(), recorded.origin,
              len(recorded.services), len(recorded.secrets))
    if refresh and len(desired.hosts) > 1 and host is None:
        probed: dict[str, set[int]] = {}
        for _ in range(MAX_PROBE_ROUNDS):
            busier = _probe_new_remote_ports(desired, live, plan, probed)
            if busier is None:
                break
            live = busier
            plan = make_plan(desired, recorded, live)
    if host is not None:
        plan = replace(plan, changes=generated.only_host(plan.changes, desired, host))
    plan = plan.filtered(targets, excludes)
    if host is not None:
        plan = replace(plan, filters={**plan.filters, "host": [host]})
    return PlanContext(ws, desired, recorded, live, plan, registry)


def plan_with_components(ws: Workspace, *, refresh: bool = True, targets: tuple[str, ...] = (),
                         excludes: tuple[str, ...] = (),
                         host: str | None = None) -> tuple[PlanContext, list[dict[str, str]]]:
    """What `qrm plan` shows: the plan, and the .q files added, changed or removed since the last scan.
    The context's registry is closed."""
    from reconciler.flows.scan import component_changes  # here: apply plans without loading the scanner

    with plan_workspace(ws, refresh=refresh, targets=targets, excludes=excludes, host=host) as context:
        components = component_changes(context.ws, context.desired, context.registry)
    return context, components


def saved_plan_document(ctx: PlanContext) -> dict[str, Any]:
    document = plan_document(ctx.plan)
    document["workspace"] = str(ctx.ws.root)
    document["registry"] = display_url(ctx.ws.registry_url())
    return document


def save_plan(ctx: PlanContext, path: Path) -> None:
    """Write the plan where `qrm apply FILE` reads it back (load_saved_plan) and applies exactly it."""
    files.write_atomic(path, json.dumps(saved_plan_document(ctx), indent=2) + "\n",
                       root=files.within(ctx.ws.root, path))


def load_saved_plan(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QrmError(f"plan file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise QrmError(f"plan file {path} is not a saved qrm plan: {exc}") from None
    if not isinstance(document, dict) or document.get("format_version") != PLAN_FORMAT_VERSION:
        raise QrmError(f"plan file {path} is not a saved qrm plan of format version {PLAN_FORMAT_VERSION}")
    return document


def check_saved_plan(saved: dict[str, Any], ctx: PlanContext) -> None:
    """Refuse a saved plan unless applying it now does exactly what it says."""
    if saved.get("workspace") not in (None, str(ctx.ws.root)):
        raise StalePlanError(f"the saved plan is for workspace {saved['workspace']}, not {ctx.ws.root}")
    if saved.get("desired_digest") != ctx.plan.desired_digest:
        raise StalePlanError("the saved plan is stale: the manifests changed since it was made; run qrm plan again")
    if saved.get("recorded_digest") != ctx.plan.recorded_digest:
        raise StalePlanError("the saved plan is stale: the registry changed since it was made (another apply?); "
                             "run qrm plan again")
    now = [c.to_dict() for c in ctx.plan.changes]
    if saved.get("changes") != now:
        raise StalePlanError("the saved plan is stale: live state changed since it was made (a port it hands out "
                             "is now in use, or a generated file changed); run qrm plan again")
