"""Webhook delivery ids (X-GitHub-Delivery, X-Gitlab-Event-UUID, webhook-id) seen by `qrm serve`, kept in the
registry's webhook_deliveries table for DELIVERY_WINDOW (24 hours): a redelivery, to any replica of the
workspace or to a restarted server, is recognised and does nothing.

The first replica to insert an id wins (INSERT ... ON CONFLICT DO NOTHING, one statement: two replicas that get
the same delivery at once cannot both take it). When the registry cannot be reached the server falls back to
the ids it saw itself (core/webhooks.RecentIds): a hook is only a hint, and doing its work twice is harmless.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconciler.flows.open_registries import kept_registry
from reconciler.flows.workspace import Workspace

DELIVERY_WINDOW = timedelta(hours=24)
MAX_DELIVERY_LENGTH = 200  # the column's width; a longer id is kept by its first 200 characters


def first_delivery(ws: Workspace, source: str, delivery: str) -> bool:
    """Whether the hook `source` (github, gitlab, generic) sees `delivery` for the first time within the
    window (and remember it). Raises QrmError when the registry cannot be reached."""
    from reconciler.edges.registry import stamp

    now = datetime.now(UTC)
    with kept_registry(ws) as registry:
        return registry.first_delivery(source, delivery[:MAX_DELIVERY_LENGTH], now=stamp(now),
                                       expired_before=stamp(now - DELIVERY_WINDOW))
