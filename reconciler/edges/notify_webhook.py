"""The `webhook` notifier (aiohttp): one JSON POST per delivery, signed with the Standard Webhooks headers.

webhook-id is the delivery id (the same on every retry, so a receiver can drop a repeat), webhook-timestamp
the send time in epoch seconds, webhook-signature "v1,<base64 HMAC-SHA256 of id.timestamp.body>" keyed by the
base64-decoded part of the secret after "whsec_" (https://www.standardwebhooks.com). The answer becomes an
Outcome: 2xx delivered; 429 and 5xx and every transport failure retry (429 with its Retry-After); 410 gone;
any other status failed. The sends of one delivery pass share a keep-alive session (close() ends it). No
reason quotes more of the URL than scheme://host[:port], nor the secret.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import time
from email.utils import parsedate_to_datetime

import aiohttp
from yarl import URL

from reconciler.core.notifications import Event, Outcome, Target

USER_AGENT = "qrm-notify/1"
SECRET_PREFIX = "whsec_"


def signing_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret "whsec_<base64>" (the prefix is optional, as in the spec's
    libraries). ValueError without the secret in its message."""
    body = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the signing secret is not whsec_ followed by base64") from None


def sign(key: bytes, delivery_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header value for one body."""
    mac = hmac.new(key, f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def body_of(event: Event) -> bytes:
    return json.dumps(event.as_payload(), separators=(",", ":"), ensure_ascii=False).encode()


def headers(key: bytes, delivery_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return {"content-type": "application/json", "webhook-id": delivery_id,
            "webhook-timestamp": str(stamp), "webhook-signature": sign(key, delivery_id, stamp, body)}


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
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# One keep-alive session per event loop (a delivery pass runs on its own loop): the sends of a pass reuse their
# connections; the pass closes it at its end (close()).
_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


def _session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = _sessions[loop] = aiohttp.ClientSession(headers={"user-agent": USER_AGENT})
    return session


async def close() -> None:
    """Close the session of the running event loop, if a send opened one (at the end of a delivery pass)."""
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()


def outcome_of(status: int, retry_after_header: str | None, where: str) -> Outcome:
    if 200 <= status < 300:
        return Outcome("delivered", f"{where} answered {status}")
    if status == 410:
        return Outcome("gone", f"{where} answered 410 Gone")
    if status == 429:
        return Outcome("retry", f"{where} answered 429 Too Many Requests", retry_after(retry_after_header))
    if status >= 500 or status == 408:
        return Outcome("retry", f"{where} answered {status}", retry_after(retry_after_header))
    return Outcome("failed", f"{where} answered {status}")


async def send(target: Target, event: Event, delivery_id: str, timeout: float) -> Outcome:
    """POST the event to the target's URL, signed; never raises."""
    where = shown(target.url)
    try:
        key = signing_key(target.signing_secret)
    except ValueError as exc:
        return Outcome("failed", str(exc))
    body = body_of(event)
    try:
        session = _session()
        async with session.post(target.url, data=body, headers=headers(key, delivery_id, body),
                                allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            await response.read()
            return outcome_of(response.status, response.headers.get("retry-after"), where)
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
