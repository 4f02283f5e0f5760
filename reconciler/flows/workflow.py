"""Use cases: what each command does, composed from the pure core and the edges.

Data flows one way: load + registry + probes -> DesiredState / RecordedState / LiveState ->
make_plan (pure) -> Plan -> apply effects -> report. Every run reads everything afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.core import crosscheck, generated, models, render, secret_scope, state, summary
from reconciler.core.changes import Plan
from reconciler.core.crosscheck import build_desired
from reconciler.core.errors import (
    AllocationError,
    ManifestError,
    NoRegistryError,
    Problem,
    QrmError,
    SecretsError,
    StalePlanError,
)
from reconciler.core.models import LOCALHOST
from reconciler.core.plan import REGISTRY_ADDRESS, digest, make_plan, secrets_after, services_after
from reconciler.core.report import (
    LOCKFILE_PATH,
    PLAN_FORMAT_VERSION,
    STATE_PATH,
    plan_document,
    render_lockfile,
    render_state,
)
from reconciler.core.schema import MODELINE, json_schemas
from reconciler.core.state import DesiredState, ForeignAllocation, LiveState, RecordedService, RecordedState
from reconciler.edges import files, git_repo, manifest_files, probes, sops, state_cache
from reconciler.edges.locks import workspace_lock
from reconciler.edges.registry import Registry, display_url
from reconciler.flows import committed_reports, generated_files
from reconciler.flows.workspace import Workspace

log = logging.getLogger(__name__)
MAX_PROBE_ROUNDS = 10
SECRETS_FILE = "secrets.enc"
# The code that turns manifests into a DesiredState: a change to it invalidates the state cache.
_STATE_CODE = state_cache.code_fingerprint([models, crosscheck, state, manifest_files, sops, secret_scope, render])


def open_workspace(directory: Path, registry: str | None = None) -> Workspace:
    root = directory.resolve()
    if not root.is_dir():
        raise QrmError(f"workspace folder {directory} does not exist")
    settings = manifest_files.load_settings(root)
    # The identity that owns rows in a shared registry: qrm.yaml name, else the git remote, else the folder.
    identity = settings.name or git_repo.remote_identity(root) or root.name
    return Workspace(root=root, settings=settings, registry_override=registry, identity=identity[:200])


def validate(ws: Workspace) -> tuple[DesiredState, list[Problem]]:
    """The desired state and every problem with the manifests (none when the state is usable)."""
    files = manifest_files.manifest_digests(ws.root, ws.manifests)
    secrets_text = _read_bytes(ws.secrets_file)
    secrets_digest = hashlib.sha256(secrets_text).hexdigest() if secrets_text is not None else "none"
    manifests_digest = digest(sorted(files.items()))
    key = f"{manifests_digest}-{secrets_digest}-{_STATE_CODE}"
    cached = state_cache.read(ws.state_cache_file, key)
    if isinstance(cached, DesiredState):
        log.debug("desired state from cache: %d manifest files, %d services, %d secret names",
                  len(files), len(cached.instances), len(cached.secrets))
        return cached, []
    loaded = manifest_files.load_manifests(ws.root, ws.manifests, ws.cache_file)
    secret_problems: list[Problem] = []
    fingerprints: dict[str, str] | None = None
    if secrets_text is not None:
        try:
            encrypted = sops.read_encrypted(secrets_text.decode("utf-8", "replace"), SECRETS_FILE)
            fingerprints = encrypted.fingerprints()
        except SecretsError as exc:
            secret_problems.append(Problem(SECRETS_FILE, None, None, str(exc).removeprefix(f"{SECRETS_FILE}: ")))
    desired, problems = build_desired(loaded.documents, fingerprints)
    problems = secret_problems + problems
    log.debug("read %d manifest files: %d documents, %d services, %d secret names, %d problems",
              len(loaded.files), len(loaded.documents), len(desired.instances), len(desired.secrets), len(problems))
    desired = replace(desired, digest=digest(sorted(loaded.files.items())))
    located = manifest_files.locate(ws.root, loaded.problems + problems)
    if not located and loaded.files == files:
        state_cache.write(ws.state_cache_file, key, desired)
    return desired, located


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def load_desired(ws: Workspace) -> DesiredState:
    desired, problems = validate(ws)
    desired = replace(desired, file_policies={str(k): str(v) for k, v in ws.settings.generated_policy.items()})
    if problems:
        raise ManifestError(problems)
    return desired


def _sqlite_file(url: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(url[len(prefix):]) if url.startswith(prefix) else None


def open_registry(ws: Workspace, create: bool) -> Registry | None:
    """The registry, or None when it does not exist yet and may not be created (plan never creates one)."""
    url = ws.registry_url()
    path = _sqlite_file(url)
    if not create and path is not None and not path.exists():
        return None
    # A shared registry (named by --registry, QRM_REGISTRY or qrm.yaml) is scoped to this workspace's
    # rows; the private .qrm/registry.db holds only this workspace's rows, whatever its name was.
    try:
        return Registry(url, owner=ws.name, scoped=not ws.private_registry, create=create)
    except NoRegistryError:
        return None  # an empty server database: read-only commands leave it empty


def read_recorded(ws: Workspace, registry: Registry | None) -> RecordedState:
    services = registry.recorded_services() if registry is not None else {}
    secrets = registry.recorded_secrets() if registry is not None else {}
    generated_files = registry.recorded_files() if registry is not None else {}
    foreign = tuple(ForeignAllocation(*row) for row in registry.foreign_allocations()) if registry else ()
    if services or secrets or generated_files:
        return RecordedState(services, secrets, generated_files, foreign=foreign)
    # No registry (a fresh clone, a PR check): the committed reports are the record. An empty one
    # (.qrm/ deleted, then apply created it): they seed it, and apply restores the registry from them.
    from_reports = committed_reports.recorded_from_reports(ws.root, "reports" if registry is None else "lockfile")
    return replace(from_reports if from_reports is not None else RecordedState({}), foreign=foreign)


def recorded_state(ws: Workspace) -> RecordedState:
    """What was applied, for read-only commands: the registry if there is one, else the lock file."""
    registry = open_registry(ws, create=False)
    try:
        return read_recorded(ws, registry)
    finally:
        if registry is not None:
            registry.close()


def read_live(ws: Workspace, desired: DesiredState, refresh: bool,
              recorded: RecordedState | None = None) -> LiveState:
    lockfile_text = files.read_text_or_none(ws.root / LOCKFILE_PATH)
    state_text = files.read_text_or_none(ws.root / STATE_PATH)
    # Generated files are the workspace's own: read even with --no-refresh (that skips hosts only).
    file_shas: dict[str, str | None] = {}
    if recorded is not None and recorded.origin == "reports":
        # A clone's working tree is not the deployment: no drift, only what the manifests change.
        file_shas = {path: f.written_sha for path, f in recorded.files.items()}
    elif recorded is not None:
        file_shas = generated_files.disk_shas(ws.root, recorded.files)
    if not refresh:
        return LiveState(refreshed=False, lockfile_text=lockfile_text, file_shas=file_shas, state_text=state_text)
    listeners: dict[str, frozenset[int]] = {LOCALHOST: probes.local_listeners()}
    for host in desired.hosts:
        if host != LOCALHOST:
            pinned = {i.pinned or i.preferred for i in desired.instances.values() if i.host == host}
            address = desired.hosts[host].address
            listeners[host] = probes.remote_listeners(address, {p for p in pinned if p})
    return LiveState(listeners=listeners, ephemeral=probes.ephemeral_range(), lockfile_text=lockfile_text,
                     file_shas=file_shas, state_text=state_text)


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
    ws: Workspace
    desired: DesiredState
    recorded: RecordedState
    live: LiveState
    plan: Plan
    registry: Registry | None = None


def plan_workspace(ws: Workspace, *, refresh: bool = True, targets: tuple[str, ...] = (),
                   excludes: tuple[str, ...] = (), registry: Registry | None = None,
                   desired: DesiredState | None = None) -> PlanContext:
    if desired is None:
        desired = load_desired(ws)
    if registry is None:
        registry = open_registry(ws, create=False)
    recorded = read_recorded(ws, registry)
    live = read_live(ws, desired, refresh, recorded)
    plan = make_plan(desired, recorded, live)
    log.debug("plan: %s (recorded from %s, %d services, %d secrets)", plan.counts(), recorded.origin,
              len(recorded.services), len(recorded.secrets))
    if refresh and len(desired.hosts) > 1:
        probed: dict[str, set[int]] = {}
        for _ in range(MAX_PROBE_ROUNDS):
            busier = _probe_new_remote_ports(desired, live, plan, probed)
            if busier is None:
                break
            live = busier
            plan = make_plan(desired, recorded, live)
    return PlanContext(ws, desired, recorded, live, plan.filtered(targets, excludes), registry)


def saved_plan_document(ctx: PlanContext) -> dict[str, Any]:
    document = plan_document(ctx.plan)
    document["workspace"] = str(ctx.ws.root)
    document["registry"] = display_url(ctx.ws.registry_url())
    return document


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


@dataclass
class ApplyOutcome:
    plan: Plan
    applied: bool
    apply_id: int | None = None
    lockfile_written: bool = False
    messages: list[str] = field(default_factory=list)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def apply_workspace(
    ws: Workspace,
    *,
    saved: dict[str, Any] | None = None,
    refresh: bool = True,
    targets: tuple[str, ...] = (),
    excludes: tuple[str, ...] = (),
    lock_timeout: float | None = None,
    approve: Callable[[Plan], bool] = lambda plan: True,
    desired: DesiredState | None = None,
) -> ApplyOutcome:
    """`desired`: the state the caller already loaded (a watcher's reconcile), else read here."""
    timeout = ws.settings.lock_timeout if lock_timeout is None else lock_timeout
    with workspace_lock(ws.lock_file, timeout):
        started = _now()
        if saved is not None:
            filters = saved.get("filters") or {}
            targets, excludes = tuple(filters.get("target", ())), tuple(filters.get("exclude", ()))
            refresh = bool(saved.get("refreshed", True))
        if desired is None:
            desired = load_desired(ws)  # before the registry: invalid manifests must not even create it
        registry = open_registry(ws, create=True)
        assert registry is not None
        try:
            # The allocation lock of each host is held from the plan (which reads what every workspace has
            # taken) to the commit of its allocations, also while a person answers "apply?" (as Terraform
            # holds its state lock): two applies, on any machines, never hand out the same port.
            with registry.allocation_lock(desired.host_names()) as waited:
                if waited > 0.01:
                    log.info("waited %.2f s for the allocation lock of %s", waited, ", ".join(desired.host_names()))
                ctx = plan_workspace(ws, refresh=refresh, targets=targets, excludes=excludes, registry=registry,
                                     desired=desired)
                plan = ctx.plan
                if saved is not None:
                    check_saved_plan(saved, _as_planned_without_registry(saved, ctx))
                if plan.blocked:
                    raise AllocationError("; ".join([c.message for c in plan.conflicts] + list(plan.errors))
                                          + "; nothing was applied")
                if plan.empty:
                    return ApplyOutcome(plan, applied=False)
                if not approve(plan):
                    return ApplyOutcome(plan, applied=False, messages=["Apply cancelled."])
                final = services_after(ctx.recorded, plan.changes)
                removed, added = _registry_delta(ctx.recorded, final)
                secrets_now = secrets_after(ctx.recorded, plan.changes)
                # Files first (they may need the key; a failure leaves the registry as it was), then the registry.
                files_removed, files_written = generated_files.apply_files(ws.root, ctx.desired, final, plan.changes,
                                                                         ws.secrets_file)
                files_now = {path: f for path, f in ctx.recorded.files.items() if path not in files_removed}
                files_now.update((f.path, f) for f in files_written)
                restoring = ctx.recorded.origin == "lockfile"  # the registry is empty: record everything
                revision = git_repo.head_revision(ws.root)
                summary = {"counts": plan.counts(), "changes": [f"{c.symbol} {c.address}" for c in plan.changes[:200]]}
                try:
                    apply_id = registry.write(
                        removed, added, revision=revision, summary=summary, started_at=started,
                        secrets=secrets_now if restoring or secrets_now != ctx.recorded.secrets else None,
                        files_removed=files_removed,
                        files_written=[files_now[p] for p in sorted(files_now)] if restoring else files_written)
                except QrmError as exc:
                    registry.record_failure(revision=revision, summary=summary, started_at=started, error=str(exc))
                    raise
                written = files.write_atomic(ws.root / LOCKFILE_PATH, render_lockfile(final.values()))
                if secrets_now or files_now or (ws.root / STATE_PATH).exists():
                    files.write_atomic(ws.root / STATE_PATH, render_state(secrets_now, files_now.values()))
                log.info("apply #%s: %s; lock file %s", apply_id, plan.counts(), "written" if written else "unchanged")
                return ApplyOutcome(plan, applied=True, apply_id=apply_id, lockfile_written=written)
        finally:
            registry.close()


def _as_planned_without_registry(saved: dict[str, Any], ctx: PlanContext) -> PlanContext:
    """A plan saved where there was no registry (from the committed reports) could not see what
    restoring the registry repairs: compare it without those repairs (apply still makes them)."""
    if saved.get("recorded_from") != "reports" or ctx.recorded.origin != "lockfile":
        return ctx
    kept = tuple(c for c in ctx.plan.changes if not (c.action == "repair" and (
        c.address == REGISTRY_ADDRESS or c.address.startswith(generated.GENERATED_PREFIX))))
    return replace(ctx, plan=replace(ctx.plan, changes=kept))


def _registry_delta(
    recorded: RecordedState, final: dict[str, RecordedService]
) -> tuple[list[str], list[RecordedService]]:
    """Names to remove and services to (re)insert so the registry holds exactly `final`."""
    if recorded.origin == "lockfile":
        return [], [final[name] for name in sorted(final)]
    removed = sorted(name for name, before in recorded.services.items() if final.get(name) != before)
    added = [final[name] for name in sorted(final) if recorded.services.get(name) != final[name]]
    return removed, added


def render_file(ws: Workspace, project: str, environment: str, name: str) -> str:
    """One generated file as apply would write it now, secrets as placeholders (no key needed)."""
    ctx = plan_workspace(ws, refresh=False)
    if ctx.registry is not None:
        ctx.registry.close()
    if project not in ctx.desired.projects:
        known = ", ".join(sorted(ctx.desired.projects)) or "(none)"
        raise QrmError(f"unknown project {project!r}; known projects: {known}")
    if environment not in ctx.desired.projects[project].environments:
        raise QrmError(f"project {project!r} has no environment {environment!r}; expected one of: "
                       f"{', '.join(sorted(ctx.desired.projects[project].environments))}")
    if ctx.plan.blocked:
        raise AllocationError("; ".join([c.message for c in ctx.plan.conflicts] + list(ctx.plan.errors)))
    services = services_after(ctx.recorded, ctx.plan.changes)
    wanted = generated.desired_files(ctx.desired, services)
    return wanted[generated.file_path(project, environment, name)].masked


# --- ports ---------------------------------------------------------------------------------------

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


# --- init and schema -----------------------------------------------------------------------------

EXAMPLE_MANIFEST = f"""{MODELINE}
# Every document under manifests/ has a kind: Host, PortRange, Reservation, Service, Project, TestSuite.
kind: Service
name: hello
host: localhost
type: app            # picks the port range: app 8000-8999 unless a PortRange says otherwise
protocol: http
health: {{path: /health, interval: 30s, timeout: 5s}}
tags: [example]
"""

GITIGNORE = """# qrm: local registry, cache and lock (the committed lock file is reports/allocations.yaml)
.qrm/
# generated .env files hold secrets in plaintext
generated/**/.env
# temp files of an interrupted write
.*.tmp
"""


def write_schemas(root: Path) -> list[Path]:
    changed = []
    for name, content in json_schemas().items():
        path = root / "schemas" / name
        if files.write_atomic(path, content):
            changed.append(path)
    return changed


def init_workspace(directory: Path) -> list[Path]:
    root = directory.resolve()
    manifests = root / "manifests"
    if manifests.is_dir() and any(manifests.iterdir()):
        raise QrmError(f"{manifests} already has manifests; qrm init only scaffolds a new workspace")
    root.mkdir(parents=True, exist_ok=True)
    created = []
    scaffold = {
        root / "qrm.yaml": f"# qrm settings; every key is optional.\nname: {_workspace_name(root)}\n"
                           "# registry: postgresql://qrm@db.example/qrm   # default: sqlite at .qrm/registry.db\n"
                           "# lock_timeout: 0                             # seconds apply waits for another apply\n"
                           "# commit_author: qrm <qrm@example.com>        # author of report commits\n",
        manifests / "services.yaml": EXAMPLE_MANIFEST,
    }
    for path, content in scaffold.items():
        if not path.exists():
            files.write_atomic(path, content)
            created.append(path)
    gitignore = root / ".gitignore"
    existing = files.read_text_or_none(gitignore) or ""
    if ".qrm/" not in existing:
        files.write_atomic(gitignore, existing + ("\n" if existing and not existing.endswith("\n") else "") + GITIGNORE)
        created.append(gitignore)
    created.extend(write_schemas(root))
    return created


def _workspace_name(root: Path) -> str:
    import re

    name = re.sub(r"[^a-z0-9._-]+", "-", root.name.lower()).strip("-._")
    return name or "workspace"


# --- history -------------------------------------------------------------------------------------

def last_apply(ws: Workspace) -> summary.LastApply | None:
    """The last successful apply the registry recorded (failed attempts repeat and would churn reports)."""
    registry = open_registry(ws, create=False)
    if registry is None:
        return None
    try:
        for record in registry.history(limit=100):
            if record.outcome == "success":
                return summary.LastApply(record.id, record.outcome, record.finished_at, record.revision,
                                         dict(record.summary.get("counts") or {}))
    finally:
        registry.close()
    return None
