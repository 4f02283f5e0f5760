"""One reconcile (plan or apply, scan, tests, health, summary) and the report commit that records it.

`qrm apply --commit` and every step of `qrm watch` end here. What may be committed is decided in
one place: files under reports/ and generated/ that changed, never a `.env` (by name, whatever
.gitignore says), never a file that holds a secret value (checked against every value when the
key is at hand), and reports/health.yaml only when a service's status changed (its latencies and
check times change every round, and a commit per round would bury the history).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from reconciler.core import health, summary
from reconciler.core.changes import Change, Plan
from reconciler.core.errors import ManifestError, QrmError
from reconciler.core.generated import GENERATED_DIR
from reconciler.core.test_results import SuiteRun
from reconciler.edges import git_repo
from reconciler.flows import notify_events
from reconciler.flows.workspace import Workspace

log = logging.getLogger(__name__)
T = TypeVar("T")
COMMITTED_DIRS = ["reports", GENERATED_DIR]
NEVER_COMMITTED = re.compile(r"(^|/)\.env(\.[^/]*)?$|\.env$")
MIN_SECRET_LENGTH = 4  # shorter values match too much ordinary text to mean anything
WATCH_LOCK_TIMEOUT = 30.0  # a watcher waits this long for a manual apply before trying again next round


def parse_author(text: str | None) -> tuple[str, str] | None:
    """qrm.yaml `commit_author: "Name <email>"` -> (name, email)."""
    if not text:
        return None
    # The name is stripped after matching: a lazy name followed by \s* was quadratic on a long run of spaces.
    match = re.fullmatch(r"([^<>]+)<([^<>\s]+)>", text.strip())
    if match is None or not match.group(1).strip():
        raise QrmError(f"qrm.yaml: commit_author: expected 'Name <email>', got {text!r}")
    return match.group(1).strip(), match.group(2)


@dataclass
class CommitOutcome:
    sha: str | None = None
    paths: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path: why", never the secret itself


def committable(root: Path, paths: list[str], secret_values: list[str] | None) -> tuple[list[str], list[str]]:
    """The paths that may be committed, and each one left out with the reason."""
    keep: list[str] = []
    skipped: list[str] = []
    values = [v for v in secret_values or () if len(v) >= MIN_SECRET_LENGTH]
    for path in paths:
        if NEVER_COMMITTED.search(path):
            skipped.append(f"{path}: .env files hold secrets and are never committed")
            continue
        if path == health.REPORT_PATH:
            now = _read(root / path)
            if now is not None and health.report_statuses(now) == health.report_statuses(
                    git_repo.text_at_head(root, path)):
                continue  # only times and latencies changed: not worth a commit
        if values:
            text = _read(root / path)
            if text is not None and any(v in text for v in values):
                skipped.append(f"{path}: holds a secret value; not committed")
                log.warning("%s holds a secret value; it is left out of the report commit", path)
                continue
        keep.append(path)
    return keep, skipped


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return None


def commit_reports(ws: Workspace, subject: str, details: list[str] | None = None) -> CommitOutcome:
    """Commit what qrm wrote under reports/ and generated/ (one commit, trailer Qrm-Report: true);
    no commit when nothing changed."""
    from reconciler.flows.secrets import plaintext_values

    changed = git_repo.changed_paths(ws.root, COMMITTED_DIRS)
    if not changed:
        return CommitOutcome()
    keep, skipped = committable(ws.root, changed, plaintext_values(ws) if ws.secrets_file.exists() else None)
    if not keep:
        return CommitOutcome(skipped=skipped)
    message = summary.commit_message(subject, details or [])
    sha = git_repo.commit_paths(ws.root, keep, message, parse_author(ws.settings.commit_author))
    log.info("report commit %s: %d file(s)", (sha or "-")[:12], len(keep))
    return CommitOutcome(sha, keep if sha else [], skipped)


# --- the committed state --------------------------------------------------------------------------

def uncommitted(ws: Workspace) -> list[str]:
    """What a reconcile reads (manifests/, secrets.enc, qrm.yaml) and differs from HEAD: modified, new
    (untracked) or deleted; empty outside git."""
    if not git_repo.is_repository(ws.root):
        return []
    return git_repo.changed_paths(ws.root, list(git_repo.RECONCILED_PATHS))


def dirty_reason(paths: list[str], command: str) -> str:
    """One line: why `command` refuses a working tree whose reconciled files differ from HEAD."""
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    return (f"{shown} differ(s) from HEAD (not committed); {command} reconciles the committed state: "
            "commit or stash the change, or add --allow-dirty for a local experiment")


def require_committed(ws: Workspace, command: str, allow_dirty: bool) -> list[str]:
    """The uncommitted paths a reconcile may go on with (--allow-dirty); without it, any is an error."""
    paths = uncommitted(ws)
    if paths and not allow_dirty:
        raise QrmError(dirty_reason(paths, command))
    return paths


def _dirty_line(ws: Workspace, dirty: list[str]) -> list[str]:
    """The report commit's first detail line when it records uncommitted changes (--allow-dirty)."""
    if not dirty:
        return []
    revision = git_repo.last_change_revision(ws.root) or "(no commit)"
    return [f"Reconciled {revision[:12]}+dirty: {', '.join(dirty[:10])}{' …' if len(dirty) > 10 else ''} "
            "not committed (--allow-dirty)", ""]


def apply_subject(plan: Plan, apply_id: int | None) -> tuple[str, list[str]]:
    """Subject and detail lines of the commit after an apply."""
    head = f"qrm: apply #{apply_id}" if apply_id is not None else "qrm: reports"
    if plan.empty:
        return f"{head}: no changes", []
    return f"{head}: {summary.counts_phrase(plan.counts())}", [_detail(c) for c in plan.changes]


def _detail(change: Change) -> str:
    """`+ service.web (localhost:8001)`: a service with where it is now, anything else by address."""
    after = change.after if change.address.startswith("service.") else None
    where = f" ({after['host']}:{after['port']})" if after and "port" in after else ""
    return f"{change.symbol} {change.address}{where}"


# --- one reconcile -----------------------------------------------------------------------------------

@dataclass
class ReconcileResult:
    trigger: str
    outcome: str = "no changes"  # applied | no changes | pending | invalid | failed | dirty (refused, nothing done)
    counts: dict[str, int] | None = None
    problems: list[str] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)
    tests_blocking: list[str] = field(default_factory=list)
    commit: CommitOutcome | None = None
    pushed: bool = False
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    dirty: list[str] = field(default_factory=list)  # uncommitted reconciled files it went on with (--allow-dirty)

    def line(self) -> str:
        """The one log line of this reconcile."""
        parts = [f"reconcile ({self.trigger}): {self.outcome}"]
        if self.counts is not None and any(self.counts.values()):
            parts.append(summary.counts_phrase(self.counts) if self.outcome == "applied"
                         else f"{sum(self.counts.values())} change(s) pending")
        if self.problems:
            parts.append(f"{len(self.problems)} problem(s): {self.problems[0]}")
        parts.extend(self.tests)
        if self.tests_blocking:  # what `qrm apply` would exit 3 for; the watcher reports it and goes on
            parts.append(f"blocking suite(s) failed: {', '.join(self.tests_blocking)}")
        if self.commit is not None and self.commit.sha:
            parts.append(f"committed {self.commit.sha[:12]} ({len(self.commit.paths)} file(s))")
        if self.pushed:
            parts.append("pushed")
        steps = ", ".join(f"{k} {v:.3f}s" for k, v in self.timings.items())
        return "; ".join(parts) + f" in {self.seconds:.3f} s" + (f" ({steps})" if steps else "")


def _timed(result: ReconcileResult, name: str, step: Callable[[], T]) -> T:
    start = time.perf_counter()
    try:
        return step()
    finally:
        result.timings[name] = result.timings.get(name, 0.0) + time.perf_counter() - start


def reconcile_once(ws: Workspace, *, trigger: str, apply: bool, commit: bool, run_tests: bool = True,
                   check_health: bool = False, scan: bool = True, allow_dirty: bool = False) -> ReconcileResult:
    """Plan (and with `apply`, apply) the workspace as it is, scan, test, write reports/summary.md, commit.

    Never raises for bad input or a failed apply: the result says what went wrong and the summary
    records it, so a watcher keeps running and the registry keeps its last good state.

    When it applies or commits, manifests/, secrets.enc and qrm.yaml must be as committed (HEAD):
    otherwise (without `allow_dirty`) it does nothing, writes and commits nothing, and the result
    (outcome "dirty") names the files, so a broken edit in the working tree is never reported as the
    state of a valid commit. With `allow_dirty` the summary and commit say `+dirty`.
    """
    from reconciler.flows.apply import apply_workspace
    from reconciler.flows.desired import load_desired
    from reconciler.flows.plan import plan_workspace

    result = ReconcileResult(trigger)
    started = time.perf_counter()
    if apply or commit:
        try:
            result.dirty = uncommitted(ws)
        except QrmError as exc:
            result.outcome, result.problems = "failed", [f"git status: {exc}"]
            result.seconds = time.perf_counter() - started
            return result
        if result.dirty and not allow_dirty:
            result.outcome = "dirty"
            result.problems = [dirty_reason(result.dirty, "watch --apply" if apply else "watch")]
            result.seconds = time.perf_counter() - started
            return result
    applied_plan: Plan | None = None
    apply_id: int | None = None
    try:
        desired = _timed(result, "load", lambda: load_desired(ws))  # invalid manifests stop here
        if apply:
            outcome = _timed(result, "apply", lambda: apply_workspace(ws, lock_timeout=WATCH_LOCK_TIMEOUT,
                                                                       desired=desired))
            applied_plan, apply_id = outcome.plan, outcome.apply_id
            result.counts = applied_plan.counts()
            result.outcome = "applied" if outcome.applied else "no changes"
            notify_events.drift_detected(ws, applied_plan, desired, repaired=outcome.applied)
        else:
            ctx = _timed(result, "plan", lambda: plan_workspace(ws, desired=desired))
            plan = ctx.plan
            ctx.close()
            result.counts = plan.counts()
            notify_events.drift_detected(ws, plan, desired, repaired=False)
            result.outcome = "no changes" if plan.empty else "pending"
            if plan.blocked:
                raise QrmError("; ".join([c.message for c in plan.conflicts] + list(plan.errors)))
    except ManifestError as exc:
        result.outcome = "invalid"
        result.problems = [str(problem) for problem in exc.problems]
        if apply:  # the manifests could not be read: this reconcile's apply failed (apply_workspace emits its own)
            notify_events.apply_failed(ws, exc, None, None)
    except QrmError as exc:
        result.outcome = "failed"
        result.problems = [str(exc)]
    if result.outcome in ("applied", "no changes", "pending"):
        if scan:
            _scan(ws, result)
        if apply and run_tests and (result.outcome == "applied" or trigger != "interval"):
            runs = _tests(ws, result)
            if result.tests_blocking:  # the gate `qrm apply` exits 3 for: the watcher reports it and goes on
                notify_events.gate_blocked(ws, runs, apply_id)
    # A health round on every interval, and after an apply that changed services, so the report
    # commit of a change already holds the new services' health (no second commit a round later).
    services_changed = applied_plan is not None and result.outcome == "applied" and bool(applied_plan.service_changes())
    if (check_health or services_changed) and result.outcome != "invalid":
        health_counts = _health(ws, result)
    else:
        health_counts = _committed_health(ws)
    _write_summary(ws, result, health_counts, apply)
    if commit:
        subject, details = (apply_subject(applied_plan, apply_id) if applied_plan is not None and
                            result.outcome == "applied" else (_reports_subject(result), result.problems))
        details = _dirty_line(ws, result.dirty) + details
        try:
            result.commit = _timed(result, "commit", lambda: commit_reports(ws, subject, details))
        except QrmError as exc:
            result.problems.append(f"the report commit failed: {exc}")
    result.seconds = time.perf_counter() - started
    return result


def _reports_subject(result: ReconcileResult) -> str:
    if result.outcome == "invalid":
        return f"qrm: invalid manifests ({len(result.problems)} problem(s)); the last good state is kept"
    if result.outcome == "failed":
        return "qrm: reconcile failed; " + (result.problems[0] if result.problems else "see reports/summary.md")
    return f"qrm: reports ({result.trigger})"


def _scan(ws: Workspace, result: ReconcileResult) -> None:
    from reconciler.flows.scan import scan_workspace

    try:
        _timed(result, "scan", lambda: scan_workspace(ws))
    except ManifestError as exc:  # a malformed quantum.config.yaml: each problem with its file, line and field
        result.problems.extend(f"scan: {problem}" for problem in exc.problems)
    except QrmError as exc:
        result.problems.append(f"scan: {exc}")


def _tests(ws: Workspace, result: ReconcileResult) -> list[SuiteRun]:
    """The auto_run suites after an apply; the runs that ended (also when a later one raised)."""
    from reconciler.flows.tests_run import run_auto_suites

    ended: list[SuiteRun] = []

    def record(suite_run: SuiteRun) -> None:  # as each run ends: a later suite that raises keeps these
        ended.append(suite_run)
        totals = suite_run.counts()
        result.tests.append(f"tests {suite_run.suite.name}: {totals['passed']} passed, "
                            f"{totals['failed'] + totals['error']} failed")
        if suite_run.blocks:
            result.tests_blocking.append(suite_run.suite.name)

    try:
        runs = _timed(result, "tests", lambda: run_auto_suites(ws, on_run=record))
    except QrmError as exc:
        result.problems.append(f"tests: {exc}")
        return ended
    if not runs:
        del result.timings["tests"]  # no auto_run suite: no tests step in the reconcile line
    return ended


def _health(ws: Workspace, result: ReconcileResult) -> dict[str, int] | None:
    from reconciler.flows.services import check_health

    try:
        round_ = _timed(result, "health", lambda: check_health(ws))
    except QrmError as exc:
        result.problems.append(f"health: {exc}")
        return None
    return round_.counts()


def _committed_health(ws: Workspace) -> dict[str, int] | None:
    statuses = health.report_statuses(_read(ws.root / health.REPORT_PATH))
    return health.counts(entry[2] for entry in statuses.values()) if statuses else None


def _write_summary(ws: Workspace, result: ReconcileResult, health_counts: dict[str, int] | None,
                   apply: bool) -> None:
    from reconciler.edges import files
    from reconciler.flows.recorded import last_apply

    revision = git_repo.last_change_revision(ws.root) if git_repo.is_repository(ws.root) else None
    data = summary.SummaryInput(
        workspace=ws.name,
        revision=f"{revision or '(no commit)'}+dirty" if result.dirty else revision,
        outcome=result.outcome,
        mode="apply" if apply else "plan only",
        pending=_pending(result),
        last_apply=last_apply(ws),
        problems=result.problems,
        health=health_counts,
    )
    files.write_atomic(ws.root / summary.SUMMARY_PATH, summary.render_summary(data), root=ws.root)


def _pending(result: ReconcileResult) -> dict[str, int] | None:
    if result.outcome == "pending":
        return result.counts
    if result.outcome in ("applied", "no changes"):
        return {}
    return None



def commit_after_apply(ws: Workspace, plan: Plan, apply_id: int | None, applied: bool,
                       dirty: list[str] | None = None) -> CommitOutcome:
    """`qrm apply --commit`: reports/summary.md for this apply, then one report commit of what changed.
    `dirty`: the uncommitted files it applied (--allow-dirty), named in the summary and the commit."""
    result = ReconcileResult("apply", outcome="applied" if applied else "no changes", counts=plan.counts(),
                             dirty=list(dirty or []))
    _write_summary(ws, result, _committed_health(ws), apply=True)
    subject, details = apply_subject(plan, apply_id) if applied else ("qrm: reports (apply: no changes)", [])
    return commit_reports(ws, subject, _dirty_line(ws, result.dirty) + details)
