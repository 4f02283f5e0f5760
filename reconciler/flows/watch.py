"""`qrm watch`: reconcile on every change of what the workspace asks for, and on an interval.

Wakes on changes of manifests/, secrets.enc, qrm.yaml, .sops.yaml and the projects' .q files; on
every interval re-checks health and drift (and with --pull fetches and fast-forwards first, then
pushes its report commits). It cannot loop: it never wakes on reports/, generated/ or .git (its
own writes), a pulled range made only of report commits is not a change, and its summary and
commit depend on the state found, not on when it looked. One watcher per workspace (a lock).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from reconciler.core.errors import QrmError, unexpected_error
from reconciler.edges import file_watch, git_repo
from reconciler.edges.locks import workspace_lock
from reconciler.flows.reconcile import COMMITTED_DIRS, ReconcileResult, commit_reports, parse_author, reconcile_once
from reconciler.flows.workspace import Workspace

log = logging.getLogger(__name__)
WORKSPACE_FILES = frozenset({"secrets.enc", "qrm.yaml", ".sops.yaml"})


@dataclass(frozen=True)
class WatchOptions:
    apply: bool = False
    interval: float = 30.0
    pull: bool = False
    commit: bool = True
    debounce_ms: int = 100
    allow_dirty: bool = False  # reconcile uncommitted manifests/, secrets.enc, qrm.yaml (reported as +dirty)


def source_folders(ws: Workspace) -> list[str]:
    """The projects' source folders (relative), as the last valid manifests name them."""
    from reconciler.flows.desired import validate

    desired, _ = validate(ws)
    return sorted({p.source.strip("/").removeprefix("./") for p in desired.projects.values() if p.source})


def is_relevant(path: str, sources: list[str]) -> bool:
    """Whether a changed path (relative, posix) is one a reconcile answers to."""
    if path in WORKSPACE_FILES:
        return True
    if path.startswith("manifests/"):
        return path.endswith((".yaml", ".yml")) and not path.rsplit("/", 1)[-1].startswith(".")
    if path.endswith(".q"):
        return any(source in ("", ".") or path.startswith(f"{source}/") for source in sources)
    return False


def content_shas(root: Path, paths: Iterable[str]) -> dict[str, str | None]:
    """sha256 of each file (None when it is gone): a batch that changes no content is not a change."""
    shas: dict[str, str | None] = {}
    for path in paths:
        try:
            shas[path] = hashlib.sha256((root / path).read_bytes()).hexdigest()
        except OSError:
            shas[path] = None
    return shas


def _describe(paths: list[str]) -> str:
    shown = ", ".join(paths[:3])
    return f"changed: {shown}" + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def watch(ws: Workspace, options: WatchOptions, stop: threading.Event, emit: Callable[[str], None],
          serialise: AbstractContextManager[object] | None = None, lead: Callable[[], bool] | None = None) -> None:
    """Run until `stop` is set; each reconcile is finished before stopping. `emit` gets one line per step.
    `serialise` (a lock) is held around each pull and reconcile: `qrm serve --watch` shares it with its webhooks.
    `lead` (replicas: flows/leader) is asked before each reconcile: a follower only pulls, and the first
    interval on which it leads reconciles at once, whatever changed while it followed."""
    guarded = serialise if serialise is not None else nullcontext()
    leading = False

    def leads() -> bool:
        nonlocal leading
        leading = lead is None or lead()
        return leading

    commit = options.commit and git_repo.is_repository(ws.root)
    if options.pull and not git_repo.is_repository(ws.root):
        raise QrmError(f"watch --pull needs a git repository; {ws.root} is not one")
    with workspace_lock(ws.state_dir / "watch.lock", 0, what="watch"):
        mode = "apply" if options.apply else "plan only"
        emit(f"watching {ws.root} ({mode}, every {options.interval:g} s"
             f"{', pulling' if options.pull else ''}{', committing reports' if commit else ''})")
        sources = source_folders(ws)

        def step(trigger: str, check_health: bool) -> None:
            nonlocal sources
            if not leads():
                return
            started = time.perf_counter()
            try:
                with guarded:
                    result = reconcile_once(ws, trigger=trigger, apply=options.apply, commit=commit,
                                            check_health=check_health, allow_dirty=options.allow_dirty)
                    if options.pull and result.commit is not None and result.commit.sha:
                        push_reports(ws, result)
                        result.seconds = time.perf_counter() - started
            except Exception as exc:  # a daemon outlives one bad step; the next change or interval retries
                log.debug("reconcile (%s) failed", trigger, exc_info=True)
                # One line, and never the exception's own message (it could quote a secret value).
                reason = unexpected_error(exc, "--log-level debug shows the traceback")
                emit(f"reconcile ({trigger}): failed: {reason}; retrying on the next change or interval")
                return
            emit(result.line())
            try:
                sources = source_folders(ws)
            except Exception:  # broken since the reconcile read it (a file replaced by a folder): the next step says
                log.debug("the source folders were not read again", exc_info=True)

        seen: dict[str, str | None] = {}  # content of each relevant file at the last reconcile
        tick_ms = max(50, min(1000, int(options.interval * 1000)))
        next_tick = 0.0
        watching = False
        # The first batch (a change, or the first tick) starts the watching: the start reconcile runs
        # only once the watcher is in place, so a change saved during it is not missed.
        for changed in file_watch.changes(ws.root, lambda p: is_relevant(p, sources), stop, tick_ms=tick_ms,
                                         debounce_ms=options.debounce_ms):
            if not watching:
                watching = True
                seen.update(content_shas(ws.root, changed))
                if options.pull:
                    with guarded:
                        pull(ws, emit)
                step("start", check_health=True)
                next_tick = time.monotonic() + options.interval
                continue
            if changed:
                now = content_shas(ws.root, changed)
                fresh = [path for path in changed if path not in seen or seen[path] != now[path]]
                seen.update(now)
                if fresh:
                    step(_describe(fresh), check_health=False)
            if stop.is_set():
                break
            if time.monotonic() < next_tick:
                continue
            was_leading = leading
            with guarded:
                pulled = pull(ws, emit) if options.pull else []
            if pulled:  # the file events of the fast-forward then find nothing new
                seen.update(content_shas(ws.root, pulled))
            if lead is not None and not was_leading:  # a follower, or one that has just taken the lease
                step("took the leader lease", check_health=True)
            elif pulled:  # reconcile now
                step(f"pulled: {_describe(pulled).removeprefix('changed: ')}", check_health=False)
            else:
                step("interval", check_health=True)
            # A fixed period, not a pause after each step (a late step does not pile up ticks).
            next_tick = max(next_tick + options.interval, time.monotonic())
        emit("watch stopped")


# How long a pull or a report push waits for the writes of the same clone (a write holds the lock from its
# first read through its commit, push and apply).
GIT_TURN_TIMEOUT = 120.0


def pull(ws: Workspace, emit: Callable[[str], None]) -> list[str]:
    """Fetch and fast-forward, push what is unpushed; the relevant paths the pulled commits changed. Under the
    clone's write lock: a write's own fetch, rebase and push (`serve --push`) in the same clone at the same
    moment would race on FETCH_HEAD and the branch."""
    from reconciler.flows.writes import write_lock

    try:
        with write_lock(ws, GIT_TURN_TIMEOUT):
            return _pull(ws, emit)
    except QrmError as exc:  # the lock: a write held it too long
        emit(f"pull failed: {exc}")
        return []


def _pull(ws: Workspace, emit: Callable[[str], None]) -> list[str]:
    try:
        pulled = git_repo.fetch_fast_forward(ws.root, parse_author(ws.settings.commit_author))
    except QrmError as exc:
        failure = exc
        try:
            retried = _pull_past_leftovers(ws, emit)
        except QrmError as again:
            failure, retried = again, None
        if retried is None:
            emit(f"pull failed: {failure}")
            return []
        pulled = retried
    changed: list[str] = []
    if pulled.changed:
        sources = source_folders(ws)
        changed = [p for p in git_repo.paths_changed_between(ws.root, pulled.before, pulled.after)
                   if is_relevant(p, sources)]
        own = len(pulled.commits) - len(pulled.foreign)
        emit(f"pulled {pulled.before[:12]}..{pulled.after[:12]}: {len(pulled.foreign)} commit(s), "
             f"{own} report commit(s)" + (f"; rebased {pulled.rebased} own report commit(s)" if pulled.rebased else ""))
    try:
        pushed = git_repo.push(ws.root, author=parse_author(ws.settings.commit_author))
    except QrmError as exc:
        emit(f"push failed: {exc}")
        return changed
    if pushed.pushed:
        emit("pushed report commits")
    return changed


def _pull_past_leftovers(ws: Workspace, emit: Callable[[str], None]) -> git_repo.PullResult | None:
    """A pull that failed on reports/ or generated/ files left uncommitted (a replica killed between its
    reconcile's writes and their commit, a write's apply): commit them as the reconcile would have (a report
    commit, which the fast-forward then rebases, or drops when the upstream changed the same files: the next
    reconcile writes them again) and pull once more. None when that was not the cause, or it did not help."""
    if not git_repo.changed_paths(ws.root, COMMITTED_DIRS):
        return None
    committed = commit_reports(ws, "reports left uncommitted")
    if committed.sha:
        emit(f"committed {len(committed.paths)} report file(s) left uncommitted "
             f"({_describe(committed.paths).removeprefix('changed: ')}) to pull past them")
    # What a report commit leaves out on purpose (a health report whose statuses did not change): the
    # committed text, under reports/ only (generated/ holds deployed files); the next reconcile rewrites it.
    stale = [path for path in git_repo.changed_paths(ws.root, ["reports"])
             if git_repo.text_at_head(ws.root, path) is not None]
    git_repo.restore(ws.root, stale)
    if not committed.sha and not stale:
        return None
    return git_repo.fetch_fast_forward(ws.root, parse_author(ws.settings.commit_author))


def push_reports(ws: Workspace, result: ReconcileResult) -> None:
    from reconciler.flows.writes import write_lock

    try:
        with write_lock(ws, GIT_TURN_TIMEOUT):  # as pull
            result.pushed = git_repo.push(ws.root, author=parse_author(ws.settings.commit_author)).pushed
    except QrmError as exc:
        result.problems.append(f"push failed: {exc}")
