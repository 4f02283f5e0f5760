"""The tokens of `qrm serve`, as pure functions: their digest, the constant-time look-up of a presented
token among the stored digests, what each scope allows, and which addresses are this machine only."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence

from reconciler.core.models import ApiToken

SCOPES = ("read", "write", "secrets")
PREFIX = "qrm_"  # so a token is recognisable in a leaked file or a secret scanner's rule
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def digest(token: str) -> str:
    """The hex sha256 qrm.yaml stores of a token (the token has 256 random bits: no salt or stretching needed)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def find(tokens: Sequence[ApiToken], presented: str) -> ApiToken | None:
    """The stored token whose digest is the presented token's, compared in constant time with every
    entry (no early exit: how long it takes says nothing about which entry, or how much, matched)."""
    wanted = digest(presented).encode()
    found = None
    for token in tokens:
        if hmac.compare_digest(wanted, token.sha256.encode()):
            found = token
    return found


def is_loopback(host: str) -> bool:
    """True when binding `host` listens on this machine only (127.0.0.0/8, ::1, localhost)."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
