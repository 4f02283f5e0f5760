"""What the `slack` notifier posts and how Slack's answer reads (pure): Slack's own rules, in one place.

The message is what Slack's incoming webhooks take (https://api.slack.com/messaging/webhooks): a one-line
`text` (the notification's fallback: phone pushes, screen readers) and Block Kit `blocks` (a header, the
summary, the project/environment/severity fields, the details as a list, a button to the dashboard), kept
within Slack's limits (a header's text at most 150 characters, a section's 3000, at most 50 blocks): what does
not fit ends in "… and N more".

Slack's answer becomes an Outcome: 200 "ok" delivered; 429 retry after its Retry-After; 5xx retry; a webhook
that no longer exists (404/410, or the words no_service, channel_is_archived, invalid_token, team_disabled...)
gone, so the notifier is disabled; any other 4xx (invalid_payload, action_prohibited...) failed with Slack's
error word.

Why here and not in the edge: none of it is I/O, and the edge (edges/notify_http) is the aiohttp POST shared by
the webhook and Slack notifiers; what differs between the two (the body, how an answer reads) is pure and
lives in core: this module for Slack, core/notifications.answer_outcome for a plain webhook.
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.core.notifications import Event, Outcome, text

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


def error_word(body: str) -> str:
    """Slack's error word (invalid_payload, no_service...), or "" when the body is not one: a body is never
    quoted as such."""
    word = body.strip()
    return word if _WORD.fullmatch(word) else ""


def outcome_of(status: int, body: str, retry_after: float | None, where: str) -> Outcome:
    """What Slack's answer to one message comes to; `retry_after` is its Retry-After header in seconds."""
    word = error_word(body)
    said = f" {word}" if word else ""
    if status == 200:
        return Outcome("delivered", f"{where} answered 200{said}")
    if status == 429:
        return Outcome("retry", f"{where} answered 429{said or ' rate_limited'}", retry_after)
    if status >= 500:
        return Outcome("retry", f"{where} answered {status}{said}", retry_after)
    if status in (404, 410) or word in GONE_WORDS:
        return Outcome("gone", f"{where} answered {status}{said}: the incoming webhook is no longer there")
    return Outcome("failed", f"{where} answered {status}{said}")
