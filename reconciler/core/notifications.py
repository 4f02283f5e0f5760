"""Notification events and the rules of their delivery (pure): which Alert takes an event, the dedupe key,
the retry schedule, the one-message text, the values a provider edge is given and answers, how a webhook
receiver's HTTP answer reads, and the one way a send never raises (Slack's own rules are in core/slack_message).

An Event is what happened (apply.failed on shop/prod, with the failing lines); the registry's outbox stores
its payload, never where it goes: the Target (a notifier with its secret references resolved) exists only in
memory while a delivery is sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# Every event kind and its default severity (an emitter may raise or lower it per event).
EVENT_KINDS: dict[str, str] = {
    "apply.failed": "critical",
    "apply.succeeded": "info",
    "drift.detected": "warning",
    "health.critical": "critical",
    "health.recovered": "info",
    "tests.failed": "critical",
    "tests.flaky": "warning",
    "deploy.blocked": "critical",
    "secret.rotated": "info",
    "notify.test": "info",
}
SEVERITIES = ("info", "warning", "critical")  # lowest first
ALL_EVENTS = "*"

# Seconds before the 2nd, 3rd, ... 6th attempt; after the 6th fails the delivery has failed.
BACKOFF_SECONDS = (1, 5, 30, 120, 600)
# A Retry-After longer than this is not believed (a receiver cannot park a delivery for days).
MAX_RETRY_AFTER = 3600.0

_ICONS = {"critical": "✖", "warning": "⚠", "info": "ℹ"}
_RECOVERED_ICON = "✔"


@dataclass(frozen=True)
class Event:
    """One thing that happened, as every notifier hears it. `severity` "" means the kind's default (filled in);
    `key` "" means kind/project/environment/summary; `recovery` events are always sent, never deduped."""

    kind: str
    summary: str
    project: str = ""
    environment: str = ""
    severity: str = ""
    details: tuple[str, ...] = ()
    key: str = ""
    link: str = ""
    occurred_at: str = ""
    recovery: bool = False

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; expected one of: {', '.join(EVENT_KINDS)}")
        if not self.severity:
            object.__setattr__(self, "severity", EVENT_KINDS[self.kind])
        elif self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}; expected one of: {', '.join(SEVERITIES)}")
        # one line: a summary is a message's subject and a table cell
        object.__setattr__(self, "summary", " ".join(self.summary.split()))
        object.__setattr__(self, "details", tuple(self.details))

    @property
    def where(self) -> str:
        """shop/prod, shop, or "" when the event is about no project."""
        return "/".join(part for part in (self.project, self.environment) if part)

    def as_payload(self) -> dict[str, Any]:
        """The JSON a webhook posts and the outbox stores (Standard Webhooks' type/timestamp/data shape)."""
        return {
            "type": self.kind,
            "timestamp": self.occurred_at,
            "data": {
                "summary": self.summary,
                "project": self.project,
                "environment": self.environment,
                "severity": self.severity,
                "details": list(self.details),
                "key": self.key,
                "link": self.link,
                "recovery": self.recovery,
            },
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Event:
        data = payload.get("data") or {}
        return cls(
            kind=str(payload["type"]), summary=str(data.get("summary", "")), project=str(data.get("project", "")),
            environment=str(data.get("environment", "")), severity=str(data.get("severity", "")),
            details=tuple(str(line) for line in data.get("details", ())), key=str(data.get("key", "")),
            link=str(data.get("link", "")), occurred_at=str(payload.get("timestamp", "")),
            recovery=bool(data.get("recovery", False)),
        )


class Alert(Protocol):
    """What matches() reads of a models.Alert (models imports this module, so not the other way round)."""

    @property
    def events(self) -> Sequence[str]: ...
    @property
    def projects(self) -> Sequence[str]: ...
    @property
    def environments(self) -> Sequence[str]: ...
    @property
    def min_severity(self) -> str: ...


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


def matches(alert: Alert, event: Event) -> bool:
    """Whether an Alert takes an event: its kind is listed (or "*"), its project and environment are in the
    Alert's lists (an empty list is every one), and it is at least min_severity. A recovery passes the
    severity bar: whoever heard the failure hears it end."""
    if ALL_EVENTS not in alert.events and event.kind not in alert.events:
        return False
    if alert.projects and event.project not in alert.projects:
        return False
    if alert.environments and event.environment not in alert.environments:
        return False
    return event.recovery or severity_rank(event.severity) >= severity_rank(alert.min_severity)


def dedupe_key(event: Event) -> str:
    """What makes two events "the same" within a notifier's dedupe window: the emitter's key, else the kind,
    project, environment and summary; a sha256 (fixed width in the registry, and no summary text in it)."""
    identity = event.key or "\x1f".join((event.kind, event.project, event.environment, event.summary))
    return hashlib.sha256(identity.encode()).hexdigest()


def next_attempt_delay(attempts: int, retry_after: float | None) -> float | None:
    """Seconds until the next attempt after `attempts` attempts failed transiently, or None when that was
    the last one. A receiver's Retry-After is honoured when longer than the backoff (up to an hour)."""
    if attempts < 1 or attempts > len(BACKOFF_SECONDS):
        return None
    delay = float(BACKOFF_SECONDS[attempts - 1])
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def text(event: Event) -> str:
    """The event as one plain-text message (Slack, email, apprise): a headline, the details, the link."""
    icon = _RECOVERED_ICON if event.recovery else _ICONS.get(event.severity, "")
    where = f" {event.where}" if event.where else ""
    lines = [f"{icon} {event.kind}{where}: {event.summary}"]
    lines += [f"  {line}" for line in event.details]
    if event.link:
        lines.append(event.link)
    return "\n".join(lines)


@dataclass(frozen=True)
class Outcome:
    """What one send attempt came to. retry: transient (refused, timeout, 5xx, 429 with `retry_after`);
    gone: 410, the notifier is disabled; failed: permanent (400, 401, 404), not retried. `reason` never
    quotes a URL beyond scheme://host, a password or a secret."""

    status: Literal["delivered", "retry", "gone", "failed"]
    reason: str = ""
    retry_after: float | None = None


def answer_outcome(status: int, retry_after: float | None, where: str) -> Outcome:
    """What a webhook receiver's HTTP answer comes to (`retry_after`: its Retry-After in seconds): 2xx delivered;
    410 gone; 429, 408 and 5xx retry; any other status (a redirect, 400, 401, 404...) failed."""
    if 200 <= status < 300:
        return Outcome("delivered", f"{where} answered {status}")
    if status == 410:
        return Outcome("gone", f"{where} answered 410 Gone")
    if status == 429:
        return Outcome("retry", f"{where} answered 429 Too Many Requests", retry_after)
    if status >= 500 or status == 408:
        return Outcome("retry", f"{where} answered {status}", retry_after)
    return Outcome("failed", f"{where} answered {status}")


async def never_raising(send: Awaitable[Outcome], where: str) -> Outcome:
    """The Outcome of a provider's send, whatever it raised: a send never raises, so what its provider did not map
    itself is a retry named by `where` and the exception's type only (its text may quote a URL or a secret).
    Cancellation passes through (CancelledError is not an Exception): the pass that cancels wants it to."""
    try:
        return await send
    except Exception as exc:
        return Outcome("retry", f"{where}: {type(exc).__name__}")


@dataclass(frozen=True)
class Target:
    """A notifier with its secrets resolved, held in memory for one delivery pass; its repr shows no
    address or credential."""

    notifier: str
    provider: str
    url: str = field(default="", repr=False)
    signing_secret: str = field(default="", repr=False)
    smtp_host: str = ""
    smtp_port: int = 587
    username: str = ""
    password: str = field(default="", repr=False)
    sender: str = ""
    to: tuple[str, ...] = ()
    starttls: bool = True
    tls_ca_file: str = ""  # email: the CA (PEM) the SMTP server's certificate is checked against; "" = the system's

    def secret_values(self) -> list[str]:
        """The values a message about this target must never contain."""
        return [value for value in (self.url, self.signing_secret, self.password) if value]
