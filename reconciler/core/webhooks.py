"""Webhook signatures and what a delivery asks for (pure): GitHub's X-Hub-Signature-256, GitLab's
X-Gitlab-Token, Standard Webhooks' webhook-signature, the names of their secrets in secrets.enc, the
GitHub/GitLab environment name mapped to a qrm environment, and a bounded set of recent delivery ids.

Every comparison is constant time (hmac.compare_digest), on the raw body, before it is parsed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
from collections import OrderedDict
from collections.abc import Collection

# The global secrets.enc keys each hook reads (set them with `qrm secrets set NAME`).
GITHUB_SECRET = "GITHUB_WEBHOOK_SECRET"
GITLAB_SECRET = "GITLAB_WEBHOOK_TOKEN"
GENERIC_SECRET = "WEBHOOK_SECRET"  # Standard Webhooks: whsec_<base64 key>

TIMESTAMP_TOLERANCE = 300  # seconds either side of now a Standard Webhooks delivery may be stamped
# Environment names deployment tools use for a qrm environment name that differs.
ENVIRONMENT_ALIASES = {"production": "prod", "development": "dev", "stage": "staging", "test": "testing"}


class SignatureError(Exception):
    """A delivery whose signature is missing, malformed or wrong (401), with a one-line reason."""


def github_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_github(secret: str, body: bytes, header: str | None) -> None:
    """X-Hub-Signature-256: `sha256=` and the hex HMAC-SHA256 of the raw body with the shared secret."""
    if not header:
        raise SignatureError("no X-Hub-Signature-256 header: a GitHub delivery is signed with the webhook secret")
    if not hmac.compare_digest(header.strip().encode(), github_signature(secret, body).encode()):
        raise SignatureError("X-Hub-Signature-256 does not match the body (wrong secret, or an altered body)")


def check_gitlab(secret: str, header: str | None) -> None:
    """X-Gitlab-Token: the secret token itself (GitLab does not sign the body)."""
    if not header:
        raise SignatureError("no X-Gitlab-Token header: a GitLab delivery carries the webhook's secret token")
    if not hmac.compare_digest(header.encode(), secret.encode()):
        raise SignatureError("X-Gitlab-Token is not the webhook's secret token")


def standard_key(secret: str,
                 problem: str = f"secrets.enc: {GENERIC_SECRET} is not a Standard Webhooks secret (whsec_<base64>)",
                 ) -> bytes:
    """The key of a Standard Webhooks secret `whsec_<base64>` (a secret without the prefix is read as base64 too,
    as in the spec's libraries): the hooks' key in, the webhook notifier's key out. ValueError(problem), which
    never quotes the secret."""
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(problem) from None


def standard_signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def check_standard(key: bytes, body: bytes, msg_id: str | None, timestamp: str | None, signatures: str | None,
                   now: float) -> None:
    """webhook-id, webhook-timestamp (unix seconds, within TIMESTAMP_TOLERANCE of `now`) and webhook-signature
    (space-separated `v1,<base64>` entries, one of which must be the HMAC-SHA256 of "id.timestamp.body")."""
    if not msg_id or not timestamp or not signatures:
        missing = [name for name, value in (("webhook-id", msg_id), ("webhook-timestamp", timestamp),
                                            ("webhook-signature", signatures)) if not value]
        raise SignatureError(f"missing Standard Webhooks header(s): {', '.join(missing)}")
    try:
        stamped = int(timestamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not a unix time in seconds") from None
    if abs(now - stamped) > TIMESTAMP_TOLERANCE:
        raise SignatureError(f"webhook-timestamp is more than {TIMESTAMP_TOLERANCE} s away from now "
                             "(a stale or replayed delivery, or a clock that is off)")
    expected = standard_signature(key, msg_id, timestamp, body).encode()
    # Compare with every entry (no early exit), so the time taken does not say which one matched.
    matched = False
    for entry in signatures.split():
        matched |= hmac.compare_digest(entry.encode(), expected)
    if not matched:
        raise SignatureError("webhook-signature does not match (wrong secret, or an altered id, timestamp or body)")


def qrm_environment(name: str, known: Collection[str]) -> str | None:
    """The qrm environment a deployment tool's environment `name` means: the same name, else the same name in
    lower case, else its alias (production: prod, development: dev, stage: staging, test: testing)."""
    for candidate in (name, name.lower(), ENVIRONMENT_ALIASES.get(name.lower(), "")):
        if candidate in known:
            return candidate
    return None


class RecentIds:
    """The last `size` delivery ids seen (oldest forgotten first), for refusing a replay; thread-safe."""

    def __init__(self, size: int = 1000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, delivery: str) -> bool:
        """Whether `delivery` is new (and remember it)."""
        with self._lock:
            if delivery in self._ids:
                return False
            self._ids[delivery] = None
            while len(self._ids) > self.size:
                self._ids.popitem(last=False)
            return True
