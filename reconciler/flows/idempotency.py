"""Idempotency-Keys of the writes that go through git (the API's `Idempotency-Key` header, `qrm ports
allocate|release --idempotency-key`), kept in the registry's idempotency_keys table so that a retry reaching
another replica of the workspace, or the same server after a restart, answers the same.

As Stripe's: a key is taken by the first request that brings it (its fingerprint: the operation and the
request's fields); when that request succeeds its answer is stored and every retry with the key gets it
again, without a second write; a request that fails gives the key back (a retry does it again). The key
brought with another request is a 409, and so is a retry while the first request is still in progress (on
any replica). Keys expire IDEMPOTENCY_TTL (24 hours) after their first request; a request that took a key
and never finished (its process died) gives it up after CLAIM_TIMEOUT.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.core.errors import ConflictError, QrmError, RequestError
from reconciler.flows.open_registries import kept_registry
from reconciler.flows.workspace import Workspace

log = logging.getLogger(__name__)

IDEMPOTENCY_TTL = timedelta(hours=24)
CLAIM_TIMEOUT = timedelta(minutes=10)  # longer than a write may wait for the write lock (5 min) and run
MAX_KEY_LENGTH = 255
FIELD = "Idempotency-Key"


@dataclass
class Slot:
    """A key's state for one request: `replayed` the stored answer (nothing to do), else the request sets
    `answer` when it succeeds."""

    replayed: dict[str, Any] | None = None
    answer: dict[str, Any] | None = None


def check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise RequestError(f"{FIELD}: expected 1-{MAX_KEY_LENGTH} printable ASCII characters", field=FIELD)


def fingerprint(operation: str, request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"operation": operation, "request": request}, sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def idempotent(ws: Workspace, operation: str, key: str | None, request: dict[str, Any]) -> Iterator[Slot]:
    """The key's slot for this request (no key: a slot that stores nothing). Raises RequestError for a bad
    key, ConflictError for a key of another request or one whose request is still in progress."""
    slot = Slot()
    if key is None:
        yield slot
        return
    check_key(key)
    from reconciler.edges.registry import stamp

    now = datetime.now(UTC)
    with kept_registry(ws) as registry:
        taken, answer = registry.claim_idempotency_key(
            key, fingerprint(operation, request), now=stamp(now), expired_before=stamp(now - IDEMPOTENCY_TTL),
            stale_before=stamp(now - CLAIM_TIMEOUT))
    if taken == "conflict":
        raise ConflictError(f"{FIELD}: this key was used for another request; use a new key", field=FIELD)
    if taken == "busy":
        raise ConflictError(f"{FIELD}: a request with this key is still in progress (on this server or another "
                            "replica); retry it once that one has answered", field=FIELD)
    if taken == "replay":
        slot.replayed = json.loads(answer or "{}")
        yield slot
        return
    try:
        yield slot
    except BaseException:
        _give_back(ws, key)
        raise
    if slot.answer is None:
        _give_back(ws, key)
        return
    try:
        with kept_registry(ws) as registry:
            registry.store_idempotency_answer(key, json.dumps(slot.answer, sort_keys=True))
    except QrmError as exc:  # the write is done: answer it; a retry after CLAIM_TIMEOUT finds it done (no commit)
        log.warning("the answer to Idempotency-Key %r was not stored: %s", key, exc)


def _give_back(ws: Workspace, key: str) -> None:
    with contextlib.suppress(QrmError), kept_registry(ws) as registry:  # else it is given up after CLAIM_TIMEOUT
        registry.release_idempotency_key(key)
