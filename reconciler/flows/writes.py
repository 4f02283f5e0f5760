"""Writes that go through git: allocate a port for a service, or release it (`qrm ports allocate` /
`release`, and the API's POST /resources/ports/allocate and /release); reserve a port (the dashboard's
Reserve Port form: a Reservation document); for the API also a secret set
and committed (POST /resources/secrets) and an apply of the committed workspace (POST /apply).

Each write is one manifest change, validated with the whole workspace, committed with a message that
names its caller, then applied under the workspace lock; its answer is what the apply allocated. So
git stays the source of truth: the registry only ever holds what some commit asked for.

Writes are serialised per workspace by a write lock (a thread lock, then an flock on
`.qrm/write.lock` for other processes), held from the first read to the answer. One write is one
commit: its history says who asked for what, and a refused request (invalid, unknown, conflicting)
leaves no file changed and no commit. The price is one validate + commit + apply per call (see
README, Benchmarks); batching queued requests into one commit is the next step when that is too slow.

Idempotency: allocating a service that exists on that host answers its port without a commit, and
an Idempotency-Key replays the stored answer of its first success (in the registry, kept 24 h: shared by
the replicas of the workspace; flows/idempotency).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.core import models
from reconciler.core.errors import (
    ConflictError,
    ManifestError,
    NotFoundError,
    Problem,
    QrmError,
    RequestError,
)
from reconciler.core.escaping import one_line
from reconciler.core.state import DesiredState
from reconciler.core.summary import WRITE_TRAILER
from reconciler.edges import files, git_repo, manifest_edit
from reconciler.edges.locks import workspace_lock
from reconciler.flows.idempotency import idempotent
from reconciler.flows.workspace import Workspace

if TYPE_CHECKING:
    from reconciler.flows.apply import ApplyOutcome
    from reconciler.flows.reconcile import CommitOutcome

log = logging.getLogger(__name__)

SERVICES_DIR = "manifests/services"  # where a new service's document goes: one file per service
WRITE_LOCK_TIMEOUT = 300.0  # seconds a write waits for the writes before it (100 queued calls take ~a minute)
APPLY_LOCK_TIMEOUT = 30.0  # and then for an apply someone else runs (a watcher's, a person's)
JOURNAL_FILE = "write.journal"  # under .qrm/: the file a write is changing, until it is committed or put back
MAX_CALLER_LENGTH = 200
PROJECT_TAG = "project:"  # a Service has no project field: the API's `project` is kept as this tag
_REQUEST_FIELDS = {"name": "service_name", "type": "port_type", "host": "host", "preferred_port": "preferred_port",
                   "tags": "project"}


@dataclass(frozen=True)
class Allocation:
    """The answer of an allocation; `created` is False when the service was already there (no commit)."""

    success: bool
    port: int
    service: str
    host: str
    type: str
    commit: str | None
    created: bool
    project: str | None = None
    file: str | None = None  # the manifest that holds the service, relative to the workspace

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Release:
    success: bool
    service: str
    host: str
    port: int | None  # the port freed (None when the service had never been applied)
    commit: str | None
    file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the write lock ---------------------------------------------------------------------------------

_THREAD_LOCKS: dict[Path, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def write_lock(ws: Workspace, timeout: float = WRITE_LOCK_TIMEOUT) -> Iterator[None]:
    """One write at a time per workspace: threads of this process queue on a lock (rather than poll the
    file), processes on the flock of .qrm/write.lock (released by the kernel if the holder dies)."""
    with _THREAD_LOCKS_GUARD:
        lock = _THREAD_LOCKS.setdefault(ws.root, threading.Lock())
    started = time.monotonic()
    if not lock.acquire(timeout=timeout):
        raise QrmError(f"another write of this workspace held the write lock for more than {timeout:g} s")
    try:
        left = max(0.0, timeout - (time.monotonic() - started))
        with workspace_lock(ws.state_dir / "write.lock", left, what="write"):
            yield
    finally:
        lock.release()


# --- allocate and release ---------------------------------------------------------------------------

def allocate_service(ws: Workspace, service_name: str, port_type: str, host: str = models.LOCALHOST, *,
                     project: str | None = None, preferred_port: int | None = None, caller: str = "qrm",
                     idempotency_key: str | None = None, push: bool = False,
                     lock_timeout: float = WRITE_LOCK_TIMEOUT) -> Allocation:
    """A port for a service: write its Service document, validate, commit, apply, answer the port.

    An existing service of that name on that host answers its port (no commit); on another host, or as a
    project's service, it is a ConflictError. A refused request is a RequestError naming the field and
    changes nothing. With `push` the commit is pushed to the branch's upstream before it is applied
    (rebased onto it and retried when it moved on; never forced)."""
    request = {"service_name": service_name, "port_type": port_type, "host": host, "project": project,
               "preferred_port": preferred_port}
    with write_lock(ws, lock_timeout):
        _recover(ws)
        with idempotent(ws, "allocate", idempotency_key, request) as slot:
            if slot.replayed is not None:
                return Allocation(**slot.replayed)
            answer = _allocate(ws, service_name, port_type, host, project, preferred_port, caller, push)
            slot.answer = answer.as_dict()
            return answer


def release_service(ws: Workspace, service_name: str, host: str = models.LOCALHOST, *, caller: str = "qrm",
                    idempotency_key: str | None = None, push: bool = False,
                    lock_timeout: float = WRITE_LOCK_TIMEOUT) -> Release:
    """Remove a service's document (the rest of its file kept), validate, commit, apply: its port is freed.
    An unknown service is a NotFoundError."""
    request = {"service_name": service_name, "host": host}
    with write_lock(ws, lock_timeout):
        _recover(ws)
        with idempotent(ws, "release", idempotency_key, request) as slot:
            if slot.replayed is not None:
                return Release(**slot.replayed)
            answer = _release(ws, service_name, host, caller, push)
            slot.answer = answer.as_dict()
            return answer


def _allocate(ws: Workspace, name: str, port_type: str, host: str, project: str | None,
              preferred_port: int | None, caller: str, push: bool) -> Allocation:
    desired = _committed_desired(ws, "allocate")
    _check_request(desired, name, project, preferred_port)
    existing = desired.instances.get(name)
    if existing is not None:
        if existing.project is not None:
            raise ConflictError(f"service_name: {name!r} is the {existing.environment} instance of project "
                                f"{existing.project}'s service; choose another name", field="service_name")
        if existing.host != host:
            raise ConflictError(f"service_name: service {name!r} exists on host {existing.host!r} "
                                f"({existing.source.file}), not {host!r}", field="service_name")
        if existing.type != port_type:
            raise ConflictError(f"port_type: service {name!r} exists with type {existing.type!r}, not {port_type!r} "
                                f"({existing.source.file})", field="port_type")
        if push:
            _push_pending(ws)
        port = _recorded_port(ws, name) or _apply(ws, name, desired)
        tagged = next((tag.removeprefix(PROJECT_TAG) for tag in existing.tags if tag.startswith(PROJECT_TAG)), None)
        return Allocation(True, port, name, host, existing.type, None, created=False, project=tagged,
                          file=existing.source.file)
    rel = f"{SERVICES_DIR}/{name}.yaml"
    document: dict[str, Any] = {"kind": "Service", "name": name, "host": host, "type": port_type}
    if preferred_port is not None:
        document["preferred_port"] = preferred_port
    if project is not None:
        document["tags"] = [PROJECT_TAG + project]
    before = files.read_inside_or_none(ws.root, ws.root / rel)
    after = manifest_edit.appended(before or "", manifest_edit.render_document(document))
    subject = f"qrm: allocate a port ({port_type}) for {name} on {host}"
    sha, desired = _write_validate_commit(ws, rel, before, after, subject, caller, "allocate", name,
                                          _has_range(host, port_type))
    undo = f"qrm: undo the allocation for {name} on {host}"
    sha = _publish(ws, push, sha, rel, before, after, undo, caller, name)
    try:
        port = _apply(ws, name, None if push else desired)  # a push may have brought in other changes
    except QrmError as exc:
        _undo(ws, rel, before, after, undo, caller, name, exc, push)
        raise
    log.info("allocated %s:%d for %s (%s) in %s", host, port, name, caller, sha[:12])
    return Allocation(True, port, name, host, port_type, sha, created=True, project=project, file=rel)


def _release(ws: Workspace, name: str, host: str, caller: str, push: bool) -> Release:
    desired = _committed_desired(ws, "release")
    instance = desired.instances.get(name)
    if instance is None or instance.project is not None:
        what = "a project's service (remove it from its Project)" if instance is not None else "no such service"
        raise NotFoundError(f"service_name: {name!r}: {what}; a Service document of that name is in no manifest",
                            field="service_name")
    if instance.host != host:
        raise NotFoundError(f"host: service {name!r} is on host {instance.host!r}, not {host!r}", field="host")
    rel = instance.source.file
    before = files.read_inside_or_none(ws.root, ws.root / rel)
    if before is None:
        raise QrmError(f"{rel}: cannot be read")
    spans = [span for span in manifest_edit.documents(before, rel)
             if isinstance(span.data, dict) and span.data.get("kind") == "Service" and span.data.get("name") == name]
    if len(spans) != 1:
        raise QrmError(f"{rel}: expected one Service document named {name!r}, found {len(spans)}")
    after = manifest_edit.without(before, spans[0])
    port = _recorded_port(ws, name)
    sha, desired = _write_validate_commit(ws, rel, before, after or None, f"qrm: release {name} on {host}", caller,
                                          "release", name)
    sha = _publish(ws, push, sha, rel, before, after or None, f"qrm: undo the release of {name} on {host}", caller,
                   name)
    _apply(ws, None, None if push else desired)
    log.info("released %s (%s:%s) for %s in %s", name, host, port, caller, sha[:12])
    return Release(True, name, host, port, sha, file=rel)


# --- reserve a port ----------------------------------------------------------------------------------

RESERVATIONS_DIR = "manifests/reservations"  # where a new Reservation goes: one file per reservation
MAX_REASON_LENGTH = 200


@dataclass(frozen=True)
class Reserved:
    """The answer of a reservation: the port held back on the host, and the commit that holds it."""

    success: bool
    name: str
    host: str
    port: int
    reason: str
    commit: str
    file: str  # the manifest that holds the reservation, relative to the workspace

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def reserve_port(ws: Workspace, host: str, port: int, reason: str, name: str | None = None, *, caller: str = "qrm",
                 push: bool = False, lock_timeout: float = WRITE_LOCK_TIMEOUT) -> Reserved:
    """Hold `port` on `host` back from allocation: a Reservation document under manifests/reservations,
    validated, committed naming the caller, applied (as an allocation is). Refused with nothing written: a
    port that is not 1-65535, an unknown host, an empty reason, a port already reserved, allocated or pinned
    on that host (ConflictError), a name taken."""
    with write_lock(ws, lock_timeout):
        _recover(ws)
        desired = _committed_desired(ws, "reserve")
        name = _check_reservation(ws, desired, host, port, reason, name)
        reason = one_line(reason.strip())
        rel = f"{RESERVATIONS_DIR}/{name}.yaml"
        document: dict[str, Any] = {"kind": "Reservation", "name": name, "host": host, "ports": [port],
                                    "reason": reason}
        before = files.read_inside_or_none(ws.root, ws.root / rel)
        after = manifest_edit.appended(before or "", manifest_edit.render_document(document))
        subject = f"qrm: reserve port {port} on {host}"
        sha, desired = _write_validate_commit(ws, rel, before, after, subject, caller, "reserve", name)
        undo = f"qrm: undo the reservation of port {port} on {host}"
        sha = _publish(ws, push, sha, rel, before, after, undo, caller, name)
        try:
            _apply(ws, None, None if push else desired)
        except QrmError as exc:
            _undo(ws, rel, before, after, undo, caller, name, exc, push)
            raise
        log.info("reserved %s:%d (%s) for %s in %s", host, port, name, caller, sha[:12])
        return Reserved(True, name, host, port, reason, sha, rel)


def _check_reservation(ws: Workspace, desired: DesiredState, host: str, port: int, reason: str,
                       name: str | None) -> str:
    """The request's fields, checked before anything is written; the reservation's name (given, or
    reserved-HOST-PORT)."""
    import re

    from reconciler.flows.ports import recorded_places
    from reconciler.flows.recorded import open_registry

    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise RequestError(f"port: {one_line(str(port))[:20]!r} is not a port (1-65535)", field="port")
    if host not in desired.hosts:
        raise RequestError(f"host: unknown host {one_line(str(host))[:80]!r}; known hosts: "
                           f"{', '.join(desired.host_names())}", field="host")
    if not reason.strip():
        raise RequestError("reason: say why the port is held back (the Reservation's reason)", field="reason")
    if len(reason) > MAX_REASON_LENGTH:
        raise RequestError(f"reason: at most {MAX_REASON_LENGTH} characters", field="reason")
    name = (name or "").strip() or f"reserved-{host}-{port}".lower()
    if not re.fullmatch(models.NAME_PATTERN, name) or len(name) > 63:
        raise RequestError(f"name: {one_line(name)[:80]!r} is not {models.PATTERN_HINTS[models.NAME_PATTERN]} "
                           "(at most 63)", field="name")
    if any(r.name == name for r in desired.reservations):
        raise ConflictError(f"name: a reservation named {name!r} exists already; choose another name", field="name")
    held = desired.reserved_ports().get(host, {}).get(port)
    if held is not None:
        raise ConflictError(f"port: {host}:{port} is reserved already ({held})", field="port")
    for instance in desired.instances.values():
        if instance.host == host and instance.pinned == port:
            raise ConflictError(f"port: {host}:{port} is pinned by {instance.name} ({instance.source.file})",
                                field="port")
    registry = open_registry(ws, create=False)
    try:
        places = recorded_places(ws, registry)
    finally:
        if registry is not None:
            registry.close()
    for service, place in places.items():
        if place == (host, port):
            raise ConflictError(f"port: {host}:{port} is allocated to {service}; release it first", field="port")
    return name


# --- the steps ----------------------------------------------------------------------------------------

def _committed_desired(ws: Workspace, command: str) -> DesiredState:
    """The desired state of a clean, valid, committed workspace (a write commits only its own change)."""
    from reconciler.flows.desired import load_desired
    from reconciler.flows.reconcile import uncommitted

    if not git_repo.is_repository(ws.root):
        raise QrmError(f"{command} writes through git: {ws.root} is not a git repository (run git init, or qrm init)")
    dirty = uncommitted(ws)
    if dirty:
        shown = ", ".join(dirty[:3]) + (f" and {len(dirty) - 3} more" if len(dirty) > 3 else "")
        raise QrmError(f"{shown} differ(s) from HEAD (not committed); {command} commits only its own change: "
                       "commit or stash yours first")
    try:
        return load_desired(ws)
    except ManifestError as exc:
        raise QrmError(f"the committed manifests are invalid ({exc.problems[0]}"
                       f"{f'; and {len(exc.problems) - 1} more' if len(exc.problems) > 1 else ''}); "
                       f"fix them before a {command}") from None


def _check_request(desired: DesiredState, name: str, project: str | None, preferred_port: int | None) -> None:
    """The request's fields that the workspace's validation does not see as such: the name (it names the
    file written), the project (kept as a tag) and the port. Host and type are checked by validating the
    workspace with the document written, as any manifest is."""
    import re

    if not isinstance(name, str) or not re.fullmatch(models.NAME_PATTERN, name) or len(name) > 63:
        raise RequestError(f"service_name: {one_line(str(name))[:80]!r} is not "
                           f"{models.PATTERN_HINTS[models.NAME_PATTERN]} (at most 63)", field="service_name")
    if project is not None and project not in desired.projects:
        raise RequestError(f"project: unknown project {one_line(str(project))[:80]!r}; known projects: "
                           f"{', '.join(sorted(desired.projects)) or '(none)'}", field="project")
    if preferred_port is not None and (isinstance(preferred_port, bool) or not isinstance(preferred_port, int)
                                       or not 1 <= preferred_port <= 65535):
        raise RequestError(f"preferred_port: {preferred_port!r} is not a port (1-65535)", field="preferred_port")


def _has_range(host: str, port_type: str) -> Callable[[DesiredState], None]:
    def check(desired: DesiredState) -> None:
        if not desired.ranges_for(host, port_type):
            ranges = [r.name for r in desired.ranges if r.port_type == port_type]
            raise RequestError(f"port_type: no {port_type} range serves host {host!r}; the {port_type} range(s) "
                               f"{', '.join(ranges)} are for other hosts", field="port_type")
    return check


def _write_validate_commit(ws: Workspace, rel: str, before: str | None, after: str | None, subject: str,
                           caller: str, operation: str, name: str,
                           check: Callable[[DesiredState], None] | None = None) -> tuple[str, DesiredState]:
    """Write one manifest file (None: delete it), validate the whole workspace and commit it. Anything
    refused or failing puts the file back as it was: no file changed, no commit. Returns the commit and
    the desired state it holds (which the apply then needs not read again)."""
    from reconciler.flows.desired import validate, with_policies
    from reconciler.flows.reconcile import parse_author

    path = ws.root / rel
    _begin(ws, rel, before, after)
    _put(ws, path, after)
    try:
        desired, problems = validate(ws)
        if problems:
            raise _refusal(rel, problems)
        if check is not None:
            check(desired)
        message = commit_message(subject, caller, operation, name)
        sha = git_repo.commit_paths(ws.root, [rel], message, parse_author(ws.settings.commit_author))
        if sha is None:
            raise QrmError(f"{rel}: nothing to commit (the write changed nothing)")
        _end(ws)
        return sha, with_policies(ws, desired)
    except BaseException:
        _put(ws, path, before)
        with contextlib.suppress(QrmError):  # `git add` may have staged it before the commit failed
            git_repo.unstage(ws.root, [rel])
        _end(ws)
        raise


def _put(ws: Workspace, path: Path, text: str | None) -> None:
    if text is None:
        files.remove(path, root=ws.root)
        with contextlib.suppress(OSError):  # the folder made for it, now empty (git keeps no empty folder)
            if path.parent != ws.manifests:
                path.parent.rmdir()
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomic(path, text, root=ws.root)


def _refusal(rel: str, problems: list[Problem]) -> RequestError:
    """The workspace's problems after the write, as one refusal naming the request's field when the
    problem is in the written document."""
    first = problems[0]
    field = None
    if first.file == rel and first.path:
        field = _REQUEST_FIELDS.get(str(first.path[0]))
    more = f"; and {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
    prefix = f"{field}: " if field else ""
    return RequestError(f"{prefix}refused, nothing was written or committed: {first}{more}", field=field)


def commit_message(subject: str, caller: str, operation: str, name: str) -> str:
    """The commit of one write: what, for whom (the caller: a token's name, a user), and trailers a
    script can grep (`git log --grep='^Qrm-Write:'`). Not a report commit: a watcher applies it."""
    who = one_line(caller)[:MAX_CALLER_LENGTH] or "unknown"
    return f"{subject} (requested by {who})\n\n{WRITE_TRAILER} {operation} {name}\nQrm-Caller: {who}\n"


def _apply(ws: Workspace, name: str | None, desired: DesiredState | None) -> int:
    """Apply the workspace (under its lock; `desired`: its state when already read); the port `name` has
    then (0 when `name` is None)."""
    from reconciler.flows.apply import apply_workspace

    outcome = apply_workspace(ws, lock_timeout=APPLY_LOCK_TIMEOUT, desired=desired)
    if name is None:
        return 0
    for change in outcome.plan.changes:  # the port this apply gave it, without reading the registry again
        if change.address == f"service.{name}" and change.after is not None and change.action != "delete":
            return int(change.after["port"])
    port = _recorded_port(ws, name)
    if port is None:
        raise QrmError(f"the apply recorded no port for {name}")
    return port


def _recorded_port(ws: Workspace, name: str) -> int | None:
    from reconciler.flows.recorded import recorded_state

    recorded = recorded_state(ws).services.get(name)
    return recorded.port if recorded is not None else None


def _publish(ws: Workspace, push: bool, sha: str, rel: str, before: str | None, after: str | None, undo: str,
             caller: str, name: str) -> str:
    """With `push`: the write's commit on the upstream (rebased when it moved on, never forced), and its sha
    there. A push that fails (a conflicting change upstream, the remote unreachable) undoes the write with a
    local commit and is the write's error: nothing is applied."""
    if not push:
        return sha
    from reconciler.flows.reconcile import parse_author

    try:
        git_repo.push(ws.root, author=parse_author(ws.settings.commit_author))
    except QrmError as exc:
        # The commit never reached the upstream: take it back out, so the clone is as before the call. An undo
        # commit on top would keep the refused change in the unpushed history, and every later push would try
        # to rebase it onto the upstream again and fail the same way.
        _begin(ws, rel, after, before)
        try:
            dropped = git_repo.drop_last_commit(ws.root, sha)
        finally:
            _end(ws)
        if not dropped:
            _undo(ws, rel, before, after, undo, caller, name, exc)
        taken = "its commit was taken back" if dropped else "the write was undone by a local commit"
        raise QrmError(f"the push failed, {taken} and nothing was applied: {exc}") from None
    return (git_repo.head_revision(ws.root) or sha).removesuffix("+dirty")


def _push_pending(ws: Workspace) -> None:
    """With --push, a call that makes no commit still sends the commits not yet on the upstream (none, unless a
    write was killed between its commit and its push: its retry finds the service and must finish the job)."""
    from reconciler.flows.reconcile import parse_author

    try:
        git_repo.push(ws.root, author=parse_author(ws.settings.commit_author))
    except QrmError as exc:
        raise QrmError(f"the push of the commits not yet on the upstream failed: {exc}") from None


def _undo(ws: Workspace, rel: str, before: str | None, after: str | None, subject: str, caller: str, name: str,
          cause: QrmError, push: bool = False) -> None:
    """The apply of a committed write failed (an exhausted range, a pinned port held): a second commit puts
    the file back (history is never rewritten), so HEAD holds no request that was not answered."""
    from reconciler.flows.reconcile import parse_author

    try:
        _begin(ws, rel, after, before)
        _put(ws, ws.root / rel, before)
        message = commit_message(subject, caller, "undo", name) + f"Qrm-Reason: {one_line(str(cause))[:300]}\n"
        git_repo.commit_paths(ws.root, [rel], message, parse_author(ws.settings.commit_author))
        _end(ws)
    except QrmError as exc:
        log.warning("could not undo the write of %s after its apply failed: %s", rel, exc)
        _put(ws, ws.root / rel, after)
        _end(ws)
        return
    if push:
        try:
            git_repo.push(ws.root, author=parse_author(ws.settings.commit_author))
        except QrmError as exc:
            log.warning("the undo of %s is committed but not pushed: %s", rel, exc)


# --- the journal: a write killed between its file and its commit ----------------------------------------

def _begin(ws: Workspace, rel: str, before: str | None, after: str | None) -> None:
    ws.state_dir.mkdir(parents=True, exist_ok=True)
    files.write_atomic(ws.state_dir / JOURNAL_FILE, json.dumps({"file": rel, "before": before, "after": after}),
                       root=ws.root)


def _end(ws: Workspace) -> None:
    files.remove(ws.state_dir / JOURNAL_FILE, root=ws.root)


def _recover(ws: Workspace) -> None:
    """A write that was killed (SIGKILL, a power cut) after changing its file and before committing it left
    the file changed: put it back, so the next write does not find the workspace dirty. A file that holds
    anything else than what that write wrote (a person's edit since) is left alone."""
    text = files.read_inside_or_none(ws.root, ws.state_dir / JOURNAL_FILE)
    if text is None:
        return
    try:
        entry = json.loads(text)
        rel, before, after = entry["file"], entry["before"], entry["after"]
        if not (isinstance(rel, str) and rel.startswith("manifests/") and ".." not in rel.split("/")):
            raise ValueError(rel)
    except (ValueError, KeyError, TypeError):
        log.warning("%s is damaged; it is ignored", ws.state_dir / JOURNAL_FILE)
        _end(ws)
        return
    git_repo.wait_for_index_lock(ws.root)  # the killed write's git commit may still be finishing
    path = ws.root / rel
    files.remove_stale_temps(path, root=ws.root)  # killed inside write_atomic: its temp file is untracked
    if files.read_inside_or_none(ws.root, path) == after and git_repo.text_at_head(ws.root, rel) != after:
        log.warning("a write to %s was interrupted before its commit; the file is put back", rel)
        _put(ws, path, before)
        git_repo.unstage(ws.root, [rel])  # killed after its `git add`: the index holds the file too
    _end(ws)


# --- secrets set, and apply, through git (the API's POST /resources/secrets and POST /apply) ----------------

@dataclass(frozen=True)
class SecretSet:
    """The answer of setting a secret: its scoped key and scope, never its value."""

    success: bool
    key: str
    scope: str
    commit: str | None  # None when the workspace is not a git repository

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def set_secret(ws: Workspace, name: str, project: str | None, environment: str | None, value: str, *,
               caller: str = "qrm", push: bool = False, lock_timeout: float = WRITE_LOCK_TIMEOUT) -> SecretSet:
    """`qrm secrets set` (flows/secrets), then, in a git repository, a commit of secrets.enc naming the caller
    (its message names the key, never the value). Refused (nothing written) when secrets.enc already differs
    from HEAD: the commit would carry someone else's change."""
    from reconciler.core.secret_scope import scope_label
    from reconciler.flows import secrets
    from reconciler.flows.reconcile import parse_author

    rel = ws.secrets_file.relative_to(ws.root).as_posix()
    with write_lock(ws, lock_timeout):
        in_git = git_repo.is_repository(ws.root)
        if in_git and git_repo.changed_paths(ws.root, [rel]):
            raise QrmError(f"{rel} differs from HEAD (not committed); a secret set over the API commits only its "
                           "own change: commit or stash yours first")
        key = secrets.set_secret(ws, name, project, environment, value)
        if not in_git:
            return SecretSet(True, key, scope_label(key), None)
        message = commit_message(f"qrm: set secret {key}", caller, "secret", key)
        try:
            sha = git_repo.commit_paths(ws.root, [rel], message, parse_author(ws.settings.commit_author))
        except QrmError:
            with contextlib.suppress(QrmError):
                git_repo.unstage(ws.root, [rel])
            raise
        if sha is not None and push:
            try:
                git_repo.push(ws.root, author=parse_author(ws.settings.commit_author))
            except QrmError as exc:  # not on the upstream: take the commit (and so the new value) back out
                if git_repo.drop_last_commit(ws.root, sha):
                    raise QrmError(f"{key} was not set: the push failed and its commit was taken back: {exc}") \
                        from None
                raise QrmError(f"{key} is set and committed ({sha[:12]}) but the push failed: {exc}") from None
            sha = (git_repo.head_revision(ws.root) or sha).removesuffix("+dirty")
        return SecretSet(True, key, scope_label(key), sha)


def apply_committed(ws: Workspace, *, refresh: bool = True,
                    lock_timeout: float = APPLY_LOCK_TIMEOUT) -> tuple[ApplyOutcome, CommitOutcome]:
    """`qrm apply --commit --yes --no-tests`: refused when manifests/, secrets.enc or qrm.yaml differ from HEAD
    (or the workspace is not a git repository); applies, then commits the reports as --commit does."""
    from reconciler.flows.apply import apply_workspace
    from reconciler.flows.reconcile import commit_after_apply, require_committed

    if not git_repo.is_repository(ws.root):
        raise QrmError(f"apply over the API applies the committed workspace: {ws.root} is not a git repository")
    with write_lock(ws):  # not between a write's commit and its own apply
        require_committed(ws, "apply", allow_dirty=False)
        outcome = apply_workspace(ws, refresh=refresh, lock_timeout=lock_timeout)
        made = commit_after_apply(ws, outcome.plan, outcome.apply_id, outcome.applied, [])
    return outcome, made
