"""Notifications: emit an event into the outbox, and deliver the outbox to the notifiers.

emit() only writes the registry: for each Alert that takes the event, one outbox row per notifier (not
disabled, and not the same dedupe key within the notifier's window unless a recovery). It never sends and
never waits on a network, so a notifier that is down cannot slow an apply or a health round.

deliver_due() sends what is due, concurrently, each send under a timeout and the whole pass under a budget:
a delivery that fails transiently is retried after BACKOFF_SECONDS (or the receiver's Retry-After when
longer) and fails after the last; a 410 disables its notifier (with a warning) until its manifest changes
or `qrm notify enable NAME`. The notifier's address and credentials (`secret:NAME`, global scope) are
resolved at send time and held in memory only: the outbox stores the event, never where it goes.

Who delivers: `qrm watch` and `qrm serve` run a DeliveryLoop (a thread); a one-shot command that emitted makes
one bounded pass (ONE_SHOT_BUDGET) when it ends (deliver_after_command, called by the CLI); `qrm notify
deliver` flushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from reconciler.core import escaping
from reconciler.core.durations import parse_duration
from reconciler.core.errors import QrmError, unexpected_error
from reconciler.core.notifications import (
    BACKOFF_SECONDS,
    Event,
    Outcome,
    Target,
    dedupe_key,
    matches,
    next_attempt_delay,
)
from reconciler.core.secret_scope import reference_name
from reconciler.edges import notify_apprise, notify_email, notify_http
from reconciler.flows.open_registries import kept_registry
from reconciler.flows.workspace import Workspace, sqlite_path

if TYPE_CHECKING:
    from reconciler.core.models import Notifier
    from reconciler.core.state import DesiredState
    from reconciler.edges.registry import Registry

log = logging.getLogger(__name__)

SendFunction = Callable[[Target, Event, str, float], Awaitable[Outcome]]
# provider -> its edge's send(target, event, delivery_id, timeout)
PROVIDERS: dict[str, SendFunction] = {
    "webhook": notify_http.send_webhook,
    "slack": notify_http.send_slack,
    "email": notify_email.send,
    "apprise": notify_apprise.send,
}
# What a delivery pass awaits at its end: the providers' kept sessions closed (each on the pass's event loop).
CLOSE: list[Callable[[], Awaitable[None]]] = [notify_http.close]
# How many sends to one notifier run at once (Slack allows about one message a second per webhook).
CONCURRENCY: dict[str, int] = {"slack": 1}
DEFAULT_CONCURRENCY = 8
# Slack's one message a second is kept by its provider (edges/notify_http), per webhook URL, across passes: the
# limit is the URL's, which two notifiers may share.
SEND_TIMEOUT = 10.0  # seconds for one send (connect, request, answer)
ONE_SHOT_BUDGET = 3.0  # seconds a one-shot command (apply, tests run, secrets rotate) spends delivering at its end
LOOP_INTERVAL = 1.0  # seconds between the passes of the watcher's and the server's delivery loop
LOOP_BUDGET = 10.0
STOP_WAIT = 2.0  # seconds `qrm watch` and `qrm serve` wait for a delivery pass in progress when they stop
OUTBOX_DAYS = 30  # finished outbox rows are kept this long (notify log; the dedupe of a window up to it)
PRUNE_EVERY = 3600.0  # seconds between two prunings of the delivery loop
PASS_LIMIT = 200  # rows one pass takes at most (the rest wait for the next)
ATTEMPTS = len(BACKOFF_SECONDS) + 1


@dataclass(frozen=True)
class DeliveryResult:
    """What one delivery attempt came to. status: delivered | retry (scheduled at next_attempt_at) | gone
    (the notifier is disabled) | failed (permanent, or the last attempt) | skipped (the pass ran out of time)."""

    id: int
    notifier: str
    kind: str
    status: str
    reason: str = ""
    attempts: int = 0
    next_attempt_at: float | None = None


@dataclass(frozen=True)
class LogEntry:
    """One outbox row as `qrm notify log` shows it (times ISO UTC, "" when not applicable)."""

    id: int
    notifier: str
    kind: str
    severity: str
    where: str
    summary: str
    status: str
    attempts: int
    last_error: str
    created_at: str
    delivered_at: str
    next_attempt_at: str


@dataclass(frozen=True)
class DisabledNotifier:
    name: str
    reason: str
    since: str


# Workspaces that emitted in this process, by registry and identity: a one-shot command delivers them at its end.
_emitted: dict[tuple[str, str], Workspace] = {}
_looped: set[tuple[str, str]] = set()  # ...unless a DeliveryLoop of this process delivers them
_emitted_lock = threading.Lock()


def _ws_key(ws: Workspace) -> tuple[str, str]:
    return ws.registry_url(), ws.name


def _iso(moment: float | None) -> str:
    if moment is None:
        return ""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _state(ws: Workspace) -> DesiredState:
    """The notifiers and alerts of the manifests; a workspace whose manifests have problems still notifies
    through the documents that are valid (an apply that failed on a bad manifest is worth hearing about)."""
    from reconciler.flows.desired import validate

    desired, problems = validate(ws)
    if problems:
        log.debug("notifications: the manifests have %d problem(s); using the valid documents", len(problems))
    return desired


def manifest_digest(notifier: Notifier) -> str:
    """Fingerprint of a notifier's manifest: a disabled notifier whose manifest changes is enabled again."""
    return hashlib.sha256(notifier.model_dump_json().encode()).hexdigest()


def _disabled(registry: Registry, desired: DesiredState) -> dict[str, str]:
    """The disabled notifiers (name -> reason), after enabling those whose manifest changed since."""
    disabled: dict[str, str] = {}
    for name, (reason, digest, _) in registry.disabled_notifiers().items():
        notifier = desired.notifiers.get(name)
        if notifier is not None and manifest_digest(notifier) != digest:
            registry.enable_notifier(name)
            log.info("notifier %s is enabled again: its manifest changed since it was disabled", name)
            continue
        disabled[name] = reason
    return disabled


def _windows(desired: DesiredState) -> dict[str, float]:
    return {name: parse_duration(n.dedupe_window) for name, n in desired.notifiers.items()}


def emit(ws: Workspace, event: Event, *, desired: DesiredState | None = None, now: float | None = None) -> int:
    """Enqueue `event` for every notifier of every Alert that takes it; how many rows were enqueued. Only the
    registry is written (never a network); a problem is a warning, never an exception: a notification
    must not fail what it reports on. `desired`: the caller's validated state (saves reading the manifests)."""
    try:
        state = desired if desired is not None else _state(ws)
        notifiers: list[str] = []
        for name in sorted(state.alerts):
            alert = state.alerts[name]
            if not matches(alert, event):
                continue
            for notifier in alert.notifiers:
                if notifier not in state.notifiers:
                    log.warning("alert %s names notifier %s, which is not declared; skipped", name, notifier)
                elif notifier not in notifiers:
                    notifiers.append(notifier)
        if not notifiers:
            return 0
        moment = time.time() if now is None else now
        if not event.occurred_at:
            event = replace(event, occurred_at=_iso(moment))
        from reconciler.edges.registry import NotificationRow

        with kept_registry(ws) as registry:
            disabled = _disabled(registry, state)
            payload = json.dumps(event.as_payload(), sort_keys=True)
            key = dedupe_key(event)
            rows = [NotificationRow(notifier=n, kind=event.kind, dedupe_key=key, payload=payload,
                                    recovery=event.recovery) for n in notifiers if n not in disabled]
            for name in notifiers:
                if name in disabled:
                    log.warning("notifier %s is disabled (%s); %s not sent to it", name, disabled[name], event.kind)
            added = len(registry.enqueue_notifications(rows, now=moment, windows=_windows(state)))
        if added:
            with _emitted_lock:
                _emitted[_ws_key(ws)] = ws
        return added
    except QrmError as exc:
        log.warning("notification %s not enqueued: %s", event.kind, exc)
        return 0
    except Exception as exc:  # never fail what the event reports on; the message could quote a value: not shown
        log.warning("notification %s not enqueued: %s", event.kind, unexpected_error(exc))
        return 0


def _resolve(ws: Workspace, notifier: Notifier, values: dict[str, str]) -> Target:
    """The notifier with its secret references replaced by their values (global scope). `values` caches the
    values resolved in this pass. QrmError naming the secret (never its value) when one does not resolve."""
    from reconciler.flows.secrets import resolve_secret

    def value(reference: str | None) -> str:
        name = reference_name(reference or "")
        if name is None:
            return ""
        if name not in values:
            values[name] = resolve_secret(ws, name, None, None)[1]
        return values[name]

    return Target(
        notifier=notifier.name, provider=notifier.provider, url=value(notifier.url),
        signing_secret=value(notifier.signing_secret), smtp_host=notifier.smtp_host or "",
        smtp_port=notifier.smtp_port, username=notifier.username or "", password=value(notifier.password),
        sender=notifier.sender or "", to=tuple(notifier.to), starttls=notifier.starttls,
        tls_ca_file=str(ws.root / notifier.tls_ca_file) if notifier.tls_ca_file else "",
    )


def _scrubbed(text: str, secrets: Sequence[str]) -> str:
    """A reason with every secret value masked (a provider edge should never quote one; this makes sure), and of
    a URL also its path and query alone (where a webhook's token is)."""
    masked = set(secrets)
    for secret in secrets:
        if "://" in secret:
            parts = urlsplit(secret)
            masked |= {part for part in (parts.path + (f"?{parts.query}" if parts.query else ""), parts.query)
                       if len(part) > 3}
    return escaping.masked(text, masked)


@dataclass
class _Send:
    row: dict[str, Any]
    event: Event
    target: Target | None
    problem: Outcome | None = None
    outcome: Outcome | None = None
    started: bool = False


def deliver_due(ws: Workspace, *, now: float | None = None, budget: float = 10.0,
                ids: Sequence[int] | None = None, retry: bool = True,
                desired: DesiredState | None = None) -> list[DeliveryResult]:
    """Send the outbox rows that are due (`ids`: only these), concurrently, each send under SEND_TIMEOUT and
    the pass under `budget` seconds; record each outcome and schedule retries. `now` (epoch seconds) is the
    pass's time (tests step it through the backoff instead of sleeping); `retry=False` fails a delivery
    that does not go through at once and says so at info level: the caller reports it (`qrm notify test`)."""
    moment = time.time() if now is None else now
    if _no_registry(ws):
        return []  # nothing was ever emitted (and a delivery loop does not make a registry)
    with kept_registry(ws) as registry:
        if not registry.due_notifications(moment, 1, ids):
            return []
        state = desired if desired is not None else _state(ws)
        disabled = _disabled(registry, state)
        # claimed until the pass is surely over; a sender that dies leaves its rows due again then
        rows = registry.claim_notifications(moment, moment + budget + SEND_TIMEOUT, uuid.uuid4().hex, PASS_LIMIT, ids)
        sends: list[_Send] = []
        values: dict[str, str] = {}
        targets: dict[str, Target | Outcome] = {}
        for row in rows:
            event = Event.from_payload(json.loads(row["payload"]))
            name = row["notifier"]
            if name not in targets:
                targets[name] = _target_or_problem(ws, state, disabled, name, values)
            found = targets[name]
            if isinstance(found, Outcome):
                sends.append(_Send(row, event, None, problem=found))
            else:
                sends.append(_Send(row, event, found))
        secrets = list(values.values())
        _send_all([s for s in sends if s.target is not None], min(budget, SEND_TIMEOUT), budget)
        recorded = [_record(registry, state, send, moment, secrets, retry) for send in sends]
        registry.finish_notifications([update for _, update in recorded])
        return [result for result, _ in recorded]


def _no_registry(ws: Workspace) -> bool:
    """The workspace's SQLite registry does not exist yet: nothing was emitted, nothing is to be read."""
    path = sqlite_path(ws.registry_url())
    return path is not None and not path.exists()


def _target_or_problem(ws: Workspace, state: DesiredState, disabled: dict[str, str], name: str,
                       values: dict[str, str]) -> Target | Outcome:
    notifier = state.notifiers.get(name)
    if notifier is None:
        return Outcome("failed", f"notifier {name} is no longer declared in the manifests")
    if name in disabled:
        return Outcome("gone", f"notifier {name} is disabled: {disabled[name]}")
    if notifier.provider not in PROVIDERS:
        return Outcome("failed", f"provider {notifier.provider} is not available in this qrm")
    try:
        return _resolve(ws, notifier, values)
    except QrmError as exc:  # a secret that does not resolve (yet): transient, it may be set meanwhile
        return Outcome("retry", str(exc))


def _send_all(sends: list[_Send], timeout: float, budget: float) -> None:
    """Run the sends concurrently (at most CONCURRENCY per notifier) for at most `budget` seconds:
    a send still running then is cut off (a failed attempt), one not started gets no outcome (due again at once)."""
    if not sends:
        return

    async def run() -> None:
        limits: dict[str, asyncio.Semaphore] = {}
        gone: dict[str, str] = {}

        async def one(send: _Send) -> None:
            assert send.target is not None
            limit = limits.setdefault(send.target.notifier, asyncio.Semaphore(
                CONCURRENCY.get(send.target.provider, DEFAULT_CONCURRENCY)))
            async with limit:
                if send.target.notifier in gone:  # answered 410 to an earlier send of this pass
                    send.outcome = Outcome("gone", gone[send.target.notifier])
                    return
                send.started = True
                try:
                    send.outcome = await asyncio.wait_for(
                        PROVIDERS[send.target.provider](send.target, send.event, _delivery_id(send.row), timeout),
                        timeout + 1)
                except TimeoutError:
                    send.outcome = Outcome("retry", f"no answer within {timeout:g} s")
                except Exception as exc:  # a provider that broke its promise never to raise
                    send.outcome = Outcome("retry", f"the {send.target.provider} provider failed: "
                                                    f"{type(exc).__name__}")
                if send.outcome.status == "gone":
                    gone[send.target.notifier] = send.outcome.reason

        tasks = [asyncio.ensure_future(one(send)) for send in sends]
        _, pending = await asyncio.wait(tasks, timeout=budget)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for send in sends:  # cut off while sending: an attempt (the receiver may have it), retried as any other
            if send.started and send.outcome is None:
                send.outcome = Outcome("retry", f"no answer within the delivery pass's {budget:g} s")
        for close in CLOSE:
            with contextlib.suppress(Exception):  # a connection that fails to close costs nothing here
                await close()

    asyncio.run(run())


def _delivery_id(row: dict[str, Any]) -> str:
    """The webhook-id of a delivery: the same on every retry, so a receiver can drop a repeat."""
    return f"msg_qrm_{row['id']}_{row['dedupe_key'][:12]}"


def _record(registry: Registry, state: DesiredState, send: _Send, moment: float, secrets: list[str],
            retry: bool) -> tuple[DeliveryResult, dict[str, Any]]:
    """The result of one send and the update of its row (the pass writes them all in one transaction)."""
    row = send.row
    outcome = send.problem or send.outcome
    base = {"id": row["id"], "notifier": row["notifier"], "kind": row["kind"]}
    if outcome is None:  # the budget ran out before it was sent: due again at once, no attempt counted
        return (DeliveryResult(**base, status="skipped", reason="the delivery pass ran out of time",
                               attempts=row["attempts"], next_attempt_at=moment),
                _update(row, "pending", row["attempts"], moment, row["last_error"]))
    attempts = row["attempts"] + (0 if send.problem is not None and send.problem.status == "gone" else 1)
    reason = _scrubbed(outcome.reason, secrets)
    if outcome.status == "delivered":
        return (DeliveryResult(**base, status="delivered", reason=reason, attempts=attempts),
                _update(row, "delivered", attempts, moment, "", delivered_at=moment))
    if outcome.status == "gone":
        notifier = state.notifiers.get(row["notifier"])
        if send.problem is None and notifier is not None:
            registry.disable_notifier(row["notifier"], reason, manifest_digest(notifier), moment)
            log.log(logging.WARNING if retry else logging.INFO, "notifier %s is disabled: %s; it gets nothing "
                    "until its manifest changes or `qrm notify enable %s`", row["notifier"], reason, row["notifier"])
        return (DeliveryResult(**base, status="gone", reason=reason, attempts=attempts),
                _update(row, "gone", attempts, moment, reason))
    delay = next_attempt_delay(attempts, outcome.retry_after) if outcome.status == "retry" and retry else None
    if delay is None:
        if outcome.status == "retry" and retry:
            reason = f"gave up after {attempts} attempts: {reason}"
        log.log(logging.WARNING if retry else logging.INFO, "notification %s to %s failed: %s", row["kind"],
                row["notifier"], reason)
        return (DeliveryResult(**base, status="failed", reason=reason, attempts=attempts),
                _update(row, "failed", attempts, moment, reason))
    return (DeliveryResult(**base, status="retry", reason=reason, attempts=attempts, next_attempt_at=moment + delay),
            _update(row, "pending", attempts, moment + delay, reason))


def _update(row: dict[str, Any], status: str, attempts: int, next_attempt_at: float, last_error: str, *,
            delivered_at: float | None = None) -> dict[str, Any]:
    return {"id": row["id"], "status": status, "attempts": attempts, "next_attempt_at": next_attempt_at,
            "last_error": last_error, "delivered_at": delivered_at}


def prune(ws: Workspace, *, now: float | None = None) -> int:
    """Delete the finished deliveries older than OUTBOX_DAYS (pending ones stay); how many."""
    if _no_registry(ws):
        return 0
    moment = time.time() if now is None else now
    with kept_registry(ws) as registry:
        return registry.prune_notifications(moment - OUTBOX_DAYS * 86400)


def dashboard_link(ws: Workspace, path: str) -> str:
    """The dashboard page `path` under qrm.yaml's public_url, for Event.link (core/notify_events.link)."""
    from reconciler.core.notify_events import link

    return link(ws.settings.public_url, path)


def send_test(ws: Workspace, notifier_name: str, *, now: float | None = None) -> DeliveryResult:
    """Send a notify.test event to one notifier, now, through the outbox like every delivery (no alert, no
    dedupe; a disabled notifier too, to check it); no retry: the outcome is the answer."""
    state = _state(ws)
    notifier = state.notifiers.get(notifier_name)
    if notifier is None:
        raise QrmError(f"unknown notifier {notifier_name!r}; known notifiers: "
                       f"{', '.join(sorted(state.notifiers)) or '(none: add a Notifier manifest)'}")
    from reconciler.edges.registry import NotificationRow

    moment = time.time() if now is None else now
    link = dashboard_link(ws, "/ui")
    event = Event(kind="notify.test", summary=f"test notification from qrm workspace {ws.name} to {notifier_name}",
                  link=link, occurred_at=_iso(moment), key=f"notify.test:{moment}")
    with kept_registry(ws) as registry:
        ids = registry.enqueue_notifications(
            [NotificationRow(notifier=notifier_name, kind=event.kind, dedupe_key=dedupe_key(event),
                             payload=json.dumps(event.as_payload(), sort_keys=True))], now=moment, windows={})
        disabled = registry.disabled_notifiers()
        if notifier_name in disabled:
            registry.enable_notifier(notifier_name)  # for this one send; disabled again below unless it went through
    results = deliver_due(ws, now=moment, budget=SEND_TIMEOUT, ids=ids, retry=False, desired=state)
    result = results[0] if results else DeliveryResult(ids[0], notifier_name, event.kind, "skipped",
                                                       "another sender took it")
    if notifier_name in disabled and result.status != "delivered":
        with kept_registry(ws) as registry:
            reason, digest, since = disabled[notifier_name]
            registry.disable_notifier(notifier_name, reason, digest, since)
    return result


def notify_log(ws: Workspace, limit: int = 50) -> list[LogEntry]:
    """The newest deliveries and failures, newest first."""
    if _no_registry(ws):
        return []
    with kept_registry(ws) as registry:
        rows = registry.notification_rows(limit)
    entries = []
    for row in rows:
        event = Event.from_payload(json.loads(row["payload"]))
        entries.append(LogEntry(
            id=row["id"], notifier=row["notifier"], kind=row["kind"], severity=event.severity, where=event.where,
            summary=event.summary, status=row["status"], attempts=row["attempts"], last_error=row["last_error"],
            created_at=_iso(row["created_at"]), delivered_at=_iso(row["delivered_at"]),
            next_attempt_at=_iso(row["next_attempt_at"]) if row["status"] == "pending" else ""))
    return entries


def disabled_notifiers(ws: Workspace) -> list[DisabledNotifier]:
    if _no_registry(ws):
        return []
    with kept_registry(ws) as registry:
        found = registry.disabled_notifiers()
    return [DisabledNotifier(name, reason, _iso(since)) for name, (reason, _, since) in sorted(found.items())]


def enable(ws: Workspace, notifier_name: str) -> bool:
    """Enable a notifier a 410 disabled; whether it was disabled."""
    if _no_registry(ws):
        return False
    with kept_registry(ws) as registry:
        return registry.enable_notifier(notifier_name)


def deliver_after_command(budget: float = ONE_SHOT_BUDGET) -> list[DeliveryResult]:
    """One bounded delivery pass for each workspace that emitted in this process (a one-shot command, at its
    end): what does not go through in `budget` stays in the outbox for the next command or the watcher."""
    with _emitted_lock:
        pending = [ws for key, ws in _emitted.items() if key not in _looped]
        _emitted.clear()
    results: list[DeliveryResult] = []
    deadline = time.monotonic() + budget
    for ws in pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            results += deliver_due(ws, budget=left)
        except QrmError as exc:
            log.warning("notifications not delivered: %s", exc)
    return results


class DeliveryLoop:
    """deliver_due every `interval` seconds in a daemon thread (`qrm watch`, `qrm serve`): sends never run in
    the thread of an apply or a health round. stop() ends it after the pass in progress."""

    def __init__(self, ws: Workspace, interval: float = LOOP_INTERVAL, budget: float = LOOP_BUDGET) -> None:
        self.ws = ws
        self.interval = interval
        self.budget = budget
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qrm-notify", daemon=True)

    def start(self) -> DeliveryLoop:
        with _emitted_lock:
            _looped.add(_ws_key(self.ws))
        self._thread.start()
        return self

    def _run(self) -> None:
        said, pruned = "", -PRUNE_EVERY
        while not self._stop.is_set():
            try:
                deliver_due(self.ws, budget=self.budget)
                if time.monotonic() - pruned >= PRUNE_EVERY:
                    prune(self.ws)
                    pruned = time.monotonic()
                said = ""
            except Exception as exc:  # a registry that is away for a moment: the next pass tries again
                message = unexpected_error(exc) if not isinstance(exc, QrmError) else str(exc)
                if message != said:  # once, not every second
                    log.warning("notification delivery pass failed: %s", message)
                said = message
            self.passes += 1
            self._stop.wait(self.interval)

    def stop(self, timeout: float = STOP_WAIT) -> None:
        """Stop after the pass in progress, waiting for it at most `timeout` seconds (a send cut off is retried
        by the next sender once its claim runs out)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with _emitted_lock:
            _looped.discard(_ws_key(self.ws))
