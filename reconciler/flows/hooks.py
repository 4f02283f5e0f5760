"""The work webhooks hand over, done in the background by one worker: fetch and reconcile (bursts coalesced)
and the post-deploy runs of the auto_run suites; plus the webhook secrets read from secrets.enc.

A hook only says "something happened": the worker fetches git itself (as `qrm watch --pull` does), so a
payload is never trusted for what to apply. Reconcile requests coalesce through a pending flag: however
many arrive while a reconcile runs, one more follows it. One lock serialises every pull, reconcile and
test run, and `qrm serve --watch` holds the same lock around its own steps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.core.errors import QrmError, unexpected_error
from reconciler.core.test_results import ERROR, FAILED, PASSED
from reconciler.edges import git_repo
from reconciler.flows.reconcile import commit_reports, parse_author, reconcile_once
from reconciler.flows.watch import pull, push_reports
from reconciler.flows.workspace import Workspace

log = logging.getLogger(__name__)
DEBUG_HINT = "--log-level debug shows the traceback"


class HookSecretMissing(QrmError):
    """A webhook secret that cannot be read (no key, no secrets.enc, or not set): the hook is not set up."""


_secrets_cache: dict[tuple[str, str], tuple[tuple[int, int, int], str]] = {}
_secrets_lock = threading.Lock()


def hook_secret(ws: Workspace, name: str) -> str:
    """The global secret `name` of secrets.enc, decrypted once per version of the file (a hook's answer stays
    fast); HookSecretMissing names what to do when it cannot be read, never a value."""
    from reconciler.flows.secrets import get_secret

    try:
        stat = ws.secrets_file.stat()
    except OSError:
        raise HookSecretMissing(f"there is no secrets.enc; set the hook's secret: qrm secrets set {name}") from None
    version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    key = (str(ws.secrets_file), name)
    with _secrets_lock:
        cached = _secrets_cache.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
    try:
        value = get_secret(ws, name, None, None)
    except QrmError as exc:  # the messages name files and keys, never a value
        raise HookSecretMissing(f"{exc} (the hook's secret is {name}: qrm secrets set {name})") from None
    with _secrets_lock:
        _secrets_cache[key] = (version, value)
    return value


def watched_branch(ws: Workspace) -> str | None:
    """The branch whose pushes trigger a reconcile: the one the workspace's clone tracks."""
    return git_repo.watched_branch(ws.root)


@dataclass
class WorkerStatus:
    reconciles: int = 0
    test_runs: int = 0
    busy: bool = False
    pending: bool = False
    queued_tests: int = 0


class HookWorker:
    """One background thread doing what hooks ask for, in order, one job at a time (under `lock`)."""

    def __init__(self, workspace: Callable[[], Workspace], emit: Callable[[str], None]) -> None:
        self.workspace = workspace  # called for each job: qrm.yaml is read again
        self.emit = emit
        self.lock = threading.Lock()  # held around every job; the watch loop of `qrm serve --watch` shares it
        self._wake = threading.Condition()
        self._pending: str | None = None  # the trigger of the next reconcile, when one is asked for
        self._tests: deque[tuple[str, str]] = deque()  # (environment, trigger)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._status = WorkerStatus()
        # Replicas (`qrm serve --watch`, flows/leader): asked before each reconcile; a follower only pulls.
        self.lead: Callable[[], bool] | None = None

    def start(self) -> None:
        with self._wake:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="qrm-hooks", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 60) -> None:
        """Finish the job in hand (a reconcile is never cut in half), drop the queued ones, and end the thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def reconcile(self, trigger: str) -> None:
        """Ask for a fetch and reconcile; asks made while one is waiting are one reconcile (the first trigger)."""
        with self._wake:
            if self._pending is None:
                self._pending = trigger
            self._wake.notify_all()

    def run_tests(self, environment: str, trigger: str) -> None:
        """Ask for the auto_run suites to be run against `environment` (each ask is one run)."""
        with self._wake:
            self._tests.append((environment, trigger))
            self._wake.notify_all()

    def status(self) -> WorkerStatus:
        with self._wake:
            return WorkerStatus(self._status.reconciles, self._status.test_runs, self._status.busy,
                                self._pending is not None, len(self._tests))

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._tests and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                environment: str | None = None
                if self._pending is not None:
                    trigger, self._pending = self._pending, None
                else:
                    environment, trigger = self._tests.popleft()
                self._status.busy = True
            try:
                with self.lock:
                    if environment is None:
                        self._reconcile(trigger)
                    else:
                        self._run_tests(environment, trigger)
            finally:
                with self._wake:
                    self._status.busy = False

    def _reconcile(self, trigger: str) -> None:
        with self._wake:
            self._status.reconciles += 1
        try:
            if self.lead is not None and not self.lead():
                self.emit(follow_pulled(self.workspace(), trigger, self.emit))
                return
            self.emit(reconcile_pulled(self.workspace(), trigger, self.emit))
        except Exception as exc:  # the worker outlives one bad job; the next hook retries
            log.debug("reconcile (%s) failed", trigger, exc_info=True)
            self.emit(f"reconcile ({trigger}): failed: {unexpected_error(exc, DEBUG_HINT)}")

    def _run_tests(self, environment: str, trigger: str) -> None:
        with self._wake:
            self._status.test_runs += 1
        try:
            for line in post_deploy_tests(self.workspace(), environment, trigger):
                self.emit(line)
        except Exception as exc:
            log.debug("tests (%s) failed", trigger, exc_info=True)
            self.emit(f"tests ({trigger}): failed: {unexpected_error(exc, DEBUG_HINT)}")


def reconcile_pulled(ws: Workspace, trigger: str, emit: Callable[[str], None]) -> str:
    """Fetch and fast-forward (when the clone tracks a branch), apply, commit and push the reports: a
    watcher's step; returns its one line."""
    started = time.perf_counter()
    repository = git_repo.is_repository(ws.root)
    tracking = repository and git_repo.watched_branch(ws.root) is not None
    if tracking:
        pull(ws, emit)
    result = reconcile_once(ws, trigger=trigger, apply=True, commit=repository)
    if tracking and result.commit is not None and result.commit.sha:
        push_reports(ws, result)
    result.seconds = time.perf_counter() - started
    return result.line()


def follow_pulled(ws: Workspace, trigger: str, emit: Callable[[str], None]) -> str:
    """A follower's answer to a push: fetch and fast-forward its clone (its reads and writes start from the
    pushed commit), and leave the apply to the leader's next interval; returns its one line."""
    if git_repo.is_repository(ws.root) and git_repo.watched_branch(ws.root) is not None:
        pull(ws, emit)
    return f"reconcile ({trigger}): not here: this replica follows; the leader applies it on its next interval"


def post_deploy_tests(ws: Workspace, environment: str, trigger: str) -> list[str]:
    """Run every auto_run suite whose project has `environment` against it, write (and commit and push) its
    reports; one line per suite run."""
    from reconciler.flows.desired import load_desired
    from reconciler.flows.tests_run import run_tests

    desired = load_desired(ws)
    suites = sorted(name for name, suite in desired.suites.items() if suite.auto_run and suite.project in
                    desired.projects and environment in desired.projects[suite.project].environments)
    if not suites:
        return [f"tests ({trigger}): no auto_run suite tests environment {environment}"]
    lines = []
    for name in suites:
        for run in run_tests(ws, name, [environment]).runs:
            counts = run.counts(environment)
            lines.append(f"tests ({trigger}): suite {name} on {environment}: {counts[PASSED]} passed, "
                         f"{counts[FAILED] + counts[ERROR]} failed; reports/tests/{name}/{environment}.yaml")
    if git_repo.is_repository(ws.root):
        try:
            committed = commit_reports(ws, f"post-deploy tests on {environment}", lines)
            if committed.sha and git_repo.watched_branch(ws.root) is not None:
                git_repo.push(ws.root, author=parse_author(ws.settings.commit_author))
        except QrmError as exc:
            lines.append(f"tests ({trigger}): the report commit failed: {exc}")
    return lines
