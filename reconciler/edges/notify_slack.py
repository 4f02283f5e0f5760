"""The `slack` notifier (aiohttp): one message per delivery to a Slack incoming webhook, at most one a second
per webhook.

The message is what Slack's incoming webhooks take (https://api.slack.com/messaging/webhooks): a one-line
`text` (the notification's fallback: phone pushes, screen readers) and Block Kit `blocks` (a header, the
summary, the project/environment/severity fields, the details as a list, a button to the dashboard), kept
within Slack's limits (a header's text at most 150 characters, a section's 3000, at most 50 blocks): what does
not fit ends in "… and N more".

Slack's answer becomes an Outcome: 200 "ok" delivered; 429 retry after its Retry-After; 5xx and transport
failures retry; a webhook that no longer exists (404/410, or the words no_service, channel_is_archived,
invalid_token, team_disabled...) gone, so the notifier is disabled; any other 4xx (invalid_payload,
action_prohibited...) failed with Slack's error word. A reason names the webhook only as scheme://host: the
path of an incoming-webhook URL is its credential.

Pacing: Slack allows an incoming webhook about one message a second and answers 429 past short bursts. The
pacing lives here, in the edge, and not in flows/notify, because it is Slack's rule (no other provider has it)
and it must hold across delivery passes and event loops (a one-shot command's pass, then the watcher's loop,
each runs its own asyncio.run): a process-wide table of the next free slot per webhook, reserved under a
threading lock, and the send sleeps until its slot. Two processes (a server's leader and followers) share no
table; a 429 from Slack then parks the delivery for its Retry-After.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
from typing import Any

import aiohttp
from yarl import URL

from reconciler.core.notifications import Event, Outcome, Target, text

USER_AGENT = "qrm-notify/1"
MIN_INTERVAL = 1.0  # seconds between two messages to one webhook (Slack: "1 per second", short bursts allowed)
# Slack's Block Kit limits (https://api.slack.com/reference/block-kit/blocks)
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_BUTTON_URL = 3000
MAX_FALLBACK_TEXT = 3000  # Slack truncates `text` past 40000; a fallback is one line anyway

_SEVERITY_GLYPHS = {"critical": "✖", "warning": "⚠", "info": "ℹ"}
_RECOVERED_GLYPH = "✔"
# Error words that mean the webhook is no more (removed app, archived channel, revoked token, deleted
# workspace): retrying cannot help, the notifier is disabled until its manifest changes.
GONE_WORDS = frozenset({"no_service", "no_service_id", "no_team", "team_disabled", "channel_is_archived",
                        "channel_not_found", "invalid_token", "user_not_found"})
_WORD = re.compile(r"[a-z_]{1,64}")

# webhook (sha256 of its URL, never the URL) -> the monotonic time its next message may go
_next_slot: dict[str, float] = {}
_slots_lock = threading.Lock()


def shown(url: str) -> str:
    """scheme://host[:port] of the webhook URL: all of it a message may name (its path is the credential)."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return "the notifier's URL"
    if not parsed.scheme or not parsed.host:
        return "the notifier's URL"
    port = f":{parsed.explicit_port}" if parsed.explicit_port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def reserve_slot(url: str, now: float | None = None) -> float:
    """Seconds to wait before sending to this webhook, the slot after it reserved for the next message."""
    key = hashlib.sha256(url.encode()).hexdigest()
    moment = time.monotonic() if now is None else now
    with _slots_lock:
        slot = max(moment, _next_slot.get(key, 0.0))
        _next_slot[key] = slot + MIN_INTERVAL
    return slot - moment


def escape(value: str) -> str:
    """Text for a mrkdwn field: Slack reads &, < and > as markup (links, mentions), so they are escaped."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _headline(event: Event) -> str:
    glyph = _RECOVERED_GLYPH if event.recovery else _SEVERITY_GLYPHS.get(event.severity, "")
    where = f" {event.where}" if event.where else ""
    return f"{glyph} {event.kind}{where}"


def _mrkdwn(value: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": value}


def _detail_sections(details: tuple[str, ...], room: int) -> list[dict[str, Any]]:
    """The details as bullet lists, each section within MAX_SECTION_TEXT, at most `room` sections: the last
    one that fits says how many lines were left out."""
    sections: list[tuple[str, int]] = []  # (text, lines in it)
    current, count = "", 0
    for line in details:
        bullet = _clip("• " + escape(line), MAX_SECTION_TEXT - 40)
        if current and len(current) + 1 + len(bullet) > MAX_SECTION_TEXT - 40:  # room for "… and N more"
            sections.append((current, count))
            current, count = "", 0
        current, count = (f"{current}\n{bullet}" if current else bullet), count + 1
    if current:
        sections.append((current, count))
    if len(sections) > room:
        sections = sections[:room]
        left_out = len(details) - sum(count for _, count in sections)
        last, count = sections[-1]
        sections[-1] = (f"{last}\n… and {left_out} more", count)
    return [{"type": "section", "text": _mrkdwn(section)} for section, _ in sections]


def message(event: Event) -> dict[str, Any]:
    """The JSON body Slack's incoming webhook takes for one event."""
    fallback = _clip(text(event).splitlines()[0], MAX_FALLBACK_TEXT)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(_headline(event), MAX_HEADER_TEXT),
                                    "emoji": True}},
        {"type": "section", "text": _mrkdwn(_clip(escape(event.summary), MAX_SECTION_TEXT))},
    ]
    glyph = _RECOVERED_GLYPH if event.recovery else _SEVERITY_GLYPHS.get(event.severity, "")
    fields = [_mrkdwn(f"*Severity*\n{glyph} {'recovered' if event.recovery else event.severity}")]
    if event.project:
        fields.insert(0, _mrkdwn(f"*Project*\n{escape(event.project)}"))
    if event.environment:
        fields.insert(1, _mrkdwn(f"*Environment*\n{escape(event.environment)}"))
    blocks.append({"type": "section", "fields": fields})
    tail: list[dict[str, Any]] = []
    if event.link and len(event.link) <= MAX_BUTTON_URL and event.link.startswith(("https://", "http://")):
        tail.append({"type": "actions", "elements": [{"type": "button", "text": {
            "type": "plain_text", "text": "Open in qrm", "emoji": True}, "url": event.link}]})
    if event.occurred_at:
        tail.append({"type": "context", "elements": [_mrkdwn(f"qrm · {escape(event.occurred_at)}")]})
    if event.details:
        blocks += _detail_sections(event.details, MAX_BLOCKS - len(blocks) - len(tail))
    return {"text": fallback, "blocks": blocks + tail}


def retry_after(value: str | None) -> float | None:
    """Seconds of Slack's Retry-After header (Slack sends delta-seconds), None when absent or unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_word(body: str) -> str:
    """Slack's error word (invalid_payload, no_service...), or "" when the body is not one: a body is never
    quoted as such."""
    word = body.strip()
    return word if _WORD.fullmatch(word) else ""


def outcome_of(status: int, body: str, retry_after_header: str | None, where: str) -> Outcome:
    word = error_word(body)
    said = f" {word}" if word else ""
    if status == 200:
        return Outcome("delivered", f"{where} answered 200{said}")
    if status == 429:
        return Outcome("retry", f"{where} answered 429{said or ' rate_limited'}", retry_after(retry_after_header))
    if status >= 500:
        return Outcome("retry", f"{where} answered {status}{said}", retry_after(retry_after_header))
    if status in (404, 410) or word in GONE_WORDS:
        return Outcome("gone", f"{where} answered {status}{said}: the incoming webhook is no longer there")
    return Outcome("failed", f"{where} answered {status}{said}")


async def send(target: Target, event: Event, delivery_id: str, timeout: float) -> Outcome:
    """POST the event's message to the target's incoming webhook, in its one-a-second slot; never raises."""
    where = shown(target.url)
    if not target.url.startswith(("https://", "http://")):
        return Outcome("failed", "the notifier's URL is not an http(s) URL")
    body = json.dumps(message(event), ensure_ascii=False).encode()
    wait = reserve_slot(target.url)
    if wait > 0:
        await asyncio.sleep(wait)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
                session.post(target.url, data=body, allow_redirects=False,
                             headers={"content-type": "application/json; charset=utf-8",
                                      "user-agent": USER_AGENT}) as response:
            answer = (await response.content.read(256)).decode("utf-8", "replace")
            return outcome_of(response.status, answer, response.headers.get("retry-after"), where)
    except TimeoutError:
        return Outcome("retry", f"{where} did not answer within {timeout:g} s")
    except aiohttp.ClientConnectorError as exc:
        return Outcome("retry", f"cannot connect to {where} ({exc.os_error.strerror or type(exc.os_error).__name__})")
    except aiohttp.InvalidURL:
        return Outcome("failed", "the notifier's URL is not a valid URL")
    except (aiohttp.ClientError, OSError) as exc:
        return Outcome("retry", f"{where}: {type(exc).__name__}")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a send never raises: anything else is one reason, without its text (it may quote)
        return Outcome("retry", f"{where}: {type(exc).__name__}")
