"""The notifiers that POST over HTTP (aiohttp): `webhook` (a JSON body signed with the Standard Webhooks headers)
and `slack` (a Block Kit message to an incoming webhook, at most one a second per webhook).

Why one module: both are one technology, an aiohttp POST whose answer or failure becomes an Outcome, and edges
may not import each other; so the POST and its failure mapping (timeout, refused connection, invalid URL, any
other transport error; anything else through core/notifications.never_raising) live once here, in _post, and
each send only says what it posts and how the answer reads. What is pure sits in core: the Slack message and
Slack's answer rules in core/slack_message, a webhook receiver's answer rules in
core/notifications.answer_outcome, the Standard Webhooks key and signature in core/webhooks (the ones the server's
hooks check).

webhook: webhook-id is the delivery id (the same on every retry, so a receiver can drop a repeat),
webhook-timestamp the send time in epoch seconds, webhook-signature "v1,<base64 HMAC-SHA256 of
id.timestamp.body>" keyed by the base64-decoded part of the secret after "whsec_"
(https://www.standardwebhooks.com). The sends of one delivery pass share a keep-alive session (close() ends it).

slack: Slack allows an incoming webhook about one message a second and answers 429 past short bursts. The
pacing lives here, in the edge, and not in flows/notify, because it is Slack's rule (no other provider has it)
and it must hold across delivery passes and event loops (a one-shot command's pass, then the watcher's loop,
each runs its own asyncio.run): a process-wide table of the next free slot per webhook, reserved under a
threading lock, and the send sleeps until its slot. Two processes (a server's leader and followers) share no
table; a 429 from Slack then parks the delivery for its Retry-After. Each Slack send has its own short session.

No reason quotes more of a URL than scheme://host[:port] (the path of an incoming-webhook URL is its
credential), nor the secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from email.utils import parsedate_to_datetime

import aiohttp
from yarl import URL

from reconciler.core import slack_message
from reconciler.core.notifications import Event, Outcome, Target, answer_outcome, never_raising
from reconciler.core.webhooks import standard_key, standard_signature

USER_AGENT = "qrm-notify/1"
MIN_INTERVAL = 1.0  # seconds between two Slack messages to one webhook (Slack: "1 per second", short bursts allowed)
SLACK_ANSWER_BYTES = 256  # Slack answers "ok" or one error word: no more of its body is read
_SECONDS = re.compile(r"\d+(\.\d+)?")

# webhook (sha256 of its URL, never the URL) -> the monotonic time its next Slack message may go
_next_slot: dict[str, float] = {}
_slots_lock = threading.Lock()
# One keep-alive session per event loop (a delivery pass runs on its own loop) for the webhook sends: the sends of
# a pass reuse their connections; the pass closes it at its end (close()).
_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


def shown(url: str) -> str:
    """scheme://host[:port] of a URL: all of it a message may name (the path and query may be the credential)."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return "the notifier's URL"
    if not parsed.scheme or not parsed.host:
        return "the notifier's URL"
    port = f":{parsed.explicit_port}" if parsed.explicit_port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def retry_after(value: str | None) -> float | None:
    """Seconds of a Retry-After header (delta-seconds or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


async def _post(url: str, body: bytes, headers: dict[str, str], timeout: float, where: str,
                judge: Callable[[int, str, float | None], Outcome], answer_bytes: int = -1,
                session_of: Callable[[], aiohttp.ClientSession] | None = None) -> Outcome:
    """POST `body` without following redirects, and what came of it: `judge(status, the answer's first
    answer_bytes bytes (-1: all of it) as text, its Retry-After in seconds)`, or the transport failure as an
    Outcome. On `session_of()`'s session (kept open), else on a session of its own. Never raises."""
    return await never_raising(_exchange(url, body, headers, timeout, where, judge, answer_bytes, session_of), where)


async def _exchange(url: str, body: bytes, headers: dict[str, str], timeout: float, where: str,
                    judge: Callable[[int, str, float | None], Outcome], answer_bytes: int,
                    session_of: Callable[[], aiohttp.ClientSession] | None) -> Outcome:
    try:
        async with AsyncExitStack() as stack:
            session = session_of() if session_of is not None else \
                await stack.enter_async_context(aiohttp.ClientSession())
            response = await stack.enter_async_context(session.post(
                url, data=body, headers=headers, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout)))
            # the whole answer is read on a kept session, so its connection goes back to the pool
            answer = (await response.content.read(answer_bytes)).decode("utf-8", "replace")
            return judge(response.status, answer, retry_after(response.headers.get("retry-after")))
    except TimeoutError:
        return Outcome("retry", f"{where} did not answer within {timeout:g} s")
    except aiohttp.ClientConnectorError as exc:
        return Outcome("retry", f"cannot connect to {where} ({exc.os_error.strerror or type(exc.os_error).__name__})")
    except aiohttp.InvalidURL:
        return Outcome("failed", "the notifier's URL is not a valid URL")
    except (aiohttp.ClientError, OSError) as exc:
        return Outcome("retry", f"{where}: {type(exc).__name__}")


# --- webhook ---------------------------------------------------------------------------------------------------

def signing_key(secret: str) -> bytes:
    """The HMAC key of the notifier's Standard Webhooks secret "whsec_<base64>". ValueError without the secret in
    its message."""
    return standard_key(secret, "the signing secret is not whsec_ followed by base64")


def body_of(event: Event) -> bytes:
    return json.dumps(event.as_payload(), separators=(",", ":"), ensure_ascii=False).encode()


def headers(key: bytes, delivery_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {"content-type": "application/json", "webhook-id": delivery_id,
            "webhook-timestamp": stamp, "webhook-signature": standard_signature(key, delivery_id, stamp, body)}


def _session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = _sessions[loop] = aiohttp.ClientSession(headers={"user-agent": USER_AGENT})
    return session


async def close() -> None:
    """Close the webhook session of the running event loop, if a send opened one (at the end of a delivery pass)."""
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()


async def send_webhook(target: Target, event: Event, delivery_id: str, timeout: float) -> Outcome:
    """POST the event to the target's URL, signed, on the pass's shared session; never raises."""
    where = shown(target.url)
    try:
        key = signing_key(target.signing_secret)
    except ValueError as exc:
        return Outcome("failed", str(exc))
    body = body_of(event)
    return await _post(target.url, body, headers(key, delivery_id, body), timeout, where,
                       lambda status, _answer, seconds: answer_outcome(status, seconds, where), session_of=_session)


# --- slack -----------------------------------------------------------------------------------------------------

def reserve_slot(url: str, now: float | None = None) -> float:
    """Seconds to wait before sending to this Slack webhook, the slot after it reserved for the next message."""
    key = hashlib.sha256(url.encode()).hexdigest()
    moment = time.monotonic() if now is None else now
    with _slots_lock:
        slot = max(moment, _next_slot.get(key, 0.0))
        _next_slot[key] = slot + MIN_INTERVAL
    return slot - moment


async def send_slack(target: Target, event: Event, delivery_id: str, timeout: float) -> Outcome:
    """POST the event's message to the target's incoming webhook, in its one-a-second slot; never raises."""
    where = shown(target.url)
    if not target.url.startswith(("https://", "http://")):
        return Outcome("failed", "the notifier's URL is not an http(s) URL")
    body = json.dumps(slack_message.message(event), ensure_ascii=False).encode()
    wait = reserve_slot(target.url)
    if wait > 0:
        await asyncio.sleep(wait)
    return await _post(target.url, body, {"content-type": "application/json; charset=utf-8", "user-agent": USER_AGENT},
                       timeout, where,
                       lambda status, answer, seconds: slack_message.outcome_of(status, answer, seconds, where),
                       answer_bytes=SLACK_ANSWER_BYTES)
