"""Signatures of the files qrm writes for itself: an HMAC-SHA256 under a key only this user holds.

Both caches of .qrm/cache are signed (edges/state_cache: the desired state; edges/manifest_files: the
parsed documents), and edges do not import each other, so the one implementation is here (pure:
the stdlib's hmac). edges/state_cache keeps the key, outside the workspace.
"""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: bytes, *parts: bytes) -> bytes:
    """The hex HMAC-SHA256 of the parts, each length-prefixed so that no two splits of the same bytes sign alike."""
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.hexdigest().encode()


def verified(secret: bytes, signature: bytes, *parts: bytes) -> bool:
    """Whether `signature` is sign(secret, *parts), compared in constant time."""
    return hmac.compare_digest(signature, sign(secret, *parts))
