"""The registry's notification outbox (schema 10) on SQLite and PostgreSQL: an existing version 9 registry is
upgraded in place with its data kept; a due row is claimed by one sender only; dedupe is per notifier and per
workspace; a disabled notifier's pending rows are gone."""

from __future__ import annotations

from reconciler.edges.registry import SCHEMA_VERSION, NotificationRow, Registry

NOW = 1_800_000_000.0
STARTED = "2026-01-01T00:00:00.000000Z"


def row(notifier: str = "ops", key: str = "k1", recovery: bool = False) -> NotificationRow:
    return NotificationRow(notifier=notifier, kind="apply.failed", dedupe_key=key, payload='{"type": "apply.failed"}',
                           recovery=recovery)


def test_a_version_9_registry_is_upgraded_to_10_and_keeps_its_data(registry_url: str) -> None:
    old = Registry(registry_url, owner="fleet", upgrade_to=9)
    try:
        assert old.schema_version() == 9
        old.record_failure(revision="abc", summary={"counts": {}}, started_at=STARTED, error="boom")
    finally:
        old.close()
    registry = Registry(registry_url, owner="fleet")
    try:
        assert registry.schema_version() == SCHEMA_VERSION == 10
        assert [(r.revision, r.error) for r in registry.history()] == [("abc", "boom")]
        assert len(registry.enqueue_notifications([row()], now=NOW, windows={})) == 1
        assert [r["status"] for r in registry.notification_rows()] == ["pending"]
    finally:
        registry.close()


def test_a_due_row_is_claimed_by_one_sender_only(registry_url: str) -> None:
    first, second = Registry(registry_url), Registry(registry_url)
    try:
        ids = first.enqueue_notifications([row(key="k1"), row(key="k2")], now=NOW, windows={})
        assert [r["id"] for r in second.due_notifications(NOW)] == ids
        assert [r["id"] for r in first.claim_notifications(NOW, NOW + 20, "pass-1")] == ids
        assert second.claim_notifications(NOW, NOW + 20, "pass-2") == []
        assert first.due_notifications(NOW + 19) == []
        first.finish_notifications([{"id": ids[0], "status": "delivered", "attempts": 1, "next_attempt_at": NOW,
                                     "last_error": "", "delivered_at": NOW}])
        # the sender died before recording the second: it is due again once its claim runs out
        assert [r["id"] for r in second.claim_notifications(NOW + 20, NOW + 40, "pass-3")] == [ids[1]]
    finally:
        first.close()
        second.close()


def test_dedupe_is_per_notifier_and_per_workspace_and_never_for_a_recovery(registry_url: str) -> None:
    shop = Registry(registry_url, owner="shop", scoped=True)
    blog = Registry(registry_url, owner="blog", scoped=True)
    windows = {"ops": 300.0, "pager": 300.0}
    try:
        assert len(shop.enqueue_notifications([row("ops"), row("pager")], now=NOW, windows=windows)) == 2
        assert shop.enqueue_notifications([row("ops")], now=NOW + 299, windows=windows) == []
        assert len(shop.enqueue_notifications([row("ops", recovery=True)], now=NOW + 1, windows=windows)) == 1
        assert len(shop.enqueue_notifications([row("ops", key="k2")], now=NOW + 2, windows=windows)) == 1
        assert len(blog.enqueue_notifications([row("ops")], now=NOW + 3, windows=windows)) == 1
        assert len(shop.enqueue_notifications([row("ops")], now=NOW + 301, windows=windows)) == 1
        assert len(shop.notification_rows()) == 5 and len(blog.notification_rows()) == 1
    finally:
        shop.close()
        blog.close()


def test_disabling_a_notifier_makes_its_pending_rows_gone(registry_url: str) -> None:
    registry = Registry(registry_url)
    try:
        registry.enqueue_notifications([row("ops"), row("pager")], now=NOW, windows={})
        registry.disable_notifier("ops", "answered 410 Gone", "a" * 64, NOW)
        registry.disable_notifier("ops", "answered 410 Gone again", "b" * 64, NOW + 1)  # already: kept as it was
        assert {r["notifier"]: r["status"] for r in registry.notification_rows()} == {"ops": "gone", "pager": "pending"}
        assert registry.disabled_notifiers() == {"ops": ("answered 410 Gone", "a" * 64, NOW)}
        assert registry.enable_notifier("ops") is True and registry.enable_notifier("ops") is False
        assert registry.disabled_notifiers() == {}
    finally:
        registry.close()
