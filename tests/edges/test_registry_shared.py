"""Schema version 9 of the registry, on SQLite and PostgreSQL: what the replicas of `qrm serve` share. Test runs
have their row from their start (running, a lease, interrupted, finished over it); Idempotency-Keys are taken,
replayed, refused and expire as Stripe's; webhook delivery ids are taken once, also by concurrent takers. And
an upgrade from version 8 keeps the runs, finished."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from reconciler.edges.registry import SCHEMA_VERSION, Registry, stamp

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    return stamp(BASE + timedelta(minutes=minutes))


def run_row(failed: int, **extra: Any) -> dict[str, Any]:
    return {"suite": "smoke", "environment": "dev", "started_at": "2026-03-01T12:00:00+00:00",
            "finished_at": "2026-03-01T12:00:01+00:00", "passed": 3, "failed": failed, "skipped": 0, "flaky": 0,
            "duration_ms": 10.0, "revision": None, **extra}


# --- test runs ---------------------------------------------------------------------------------------------

def test_a_run_has_its_row_from_its_start_and_history_counts_it_once_it_ends(registry_url: str) -> None:
    registry = Registry(registry_url, owner="team", scoped=True)
    try:
        first = registry.start_test_run("smoke", "dev", started_at="t0", lease_until=at(1))
        second = registry.start_test_run("smoke", "staging", started_at="t0", lease_until=at(1))
        assert second > first > 0
        row = registry.test_run_row(first)
        assert row is not None and (row["status"], row["finished_at"], row["lease_until"]) == ("running", "", at(1))
        assert registry.test_run_rows("smoke") == []  # running: not history yet
        registry.record_test_runs([(run_row(2, id=first, status="failed"), [
            {"case_id": "gone", "outcome": "failed", "attempts": 1, "duration_ms": 1.0, "reason": "status 404",
             "name": "Smoke: Gone", "type": "smoke"}])])
        finished = registry.test_run_row(first)
        assert finished is not None
        assert (finished["status"], finished["failed"], finished["lease_until"]) == ("failed", 2, None)
        assert [r["id"] for r in registry.test_run_rows("smoke")] == [first]
        assert [(r["case_id"], r["name"], r["type"]) for r in registry.test_result_rows([first])] == [
            ("gone", "Smoke: Gone", "smoke")]
    finally:
        registry.close()


@pytest.mark.parametrize(("renewed_until", "lease_before", "interrupted"), [
    (None, at(2), True),  # its lease (to minute 1) ran out before minute 2
    (at(3), at(2), False),  # renewed to minute 3: still alive at minute 2
    (None, at(0.5), False),  # its lease still runs
], ids=["lease-ran-out", "renewed", "lease-runs"])
def test_a_run_whose_lease_ran_out_is_interrupted(registry_url: str, renewed_until: str | None, lease_before: str,
                                                  interrupted: bool) -> None:
    registry = Registry(registry_url)
    try:
        run_id = registry.start_test_run("smoke", "dev", started_at="t0", lease_until=at(1))
        if renewed_until is not None:
            registry.renew_test_runs([run_id], renewed_until)
        marked = registry.interrupt_test_runs("its server died", lease_before=lease_before)
        assert marked == ([run_id] if interrupted else [])
        row = registry.test_run_row(run_id)
        assert row is not None and (row["status"], row["error"]) == (
            ("interrupted", "its server died") if interrupted else ("running", None))
    finally:
        registry.close()


def test_a_run_that_ends_after_it_was_taken_for_dead_records_its_outcome(registry_url: str) -> None:
    registry = Registry(registry_url)
    try:
        run_id = registry.start_test_run("smoke", "dev", started_at="t0", lease_until=at(1))
        assert registry.interrupt_test_runs("its server died", run_ids=[run_id]) == [run_id]
        registry.record_test_runs([(run_row(0, id=run_id), [])])
        row = registry.test_run_row(run_id)
        assert row is not None and (row["status"], row["passed"]) == ("passed", 3)
    finally:
        registry.close()


def test_each_workspace_reads_only_its_own_runs(registry_url: str) -> None:
    mine, theirs = Registry(registry_url, owner="a", scoped=True), Registry(registry_url, owner="b", scoped=True)
    try:
        run_id = mine.start_test_run("smoke", "dev", started_at="t0", lease_until=at(1))
        assert theirs.test_run_row(run_id) is None and theirs.last_test_run_id() == 0
        assert mine.last_test_run_id() == run_id
        assert theirs.interrupt_test_runs("not yours", run_ids=[run_id]) == []
    finally:
        mine.close()
        theirs.close()


# --- Idempotency-Keys ---------------------------------------------------------------------------------------

# Each step: (minute, fingerprint, then: store | release | keep, the claim's outcome).
KEY_CASES = {
    "retry-replays": [(0, "A", "store", "claimed"), (1, "A", "keep", "replay")],
    "another-request": [(0, "A", "store", "claimed"), (1, "B", "keep", "conflict")],
    "in-progress": [(0, "A", "keep", "claimed"), (1, "A", "keep", "busy")],
    "in-progress-another-request": [(0, "A", "keep", "claimed"), (1, "B", "keep", "conflict")],
    "abandoned-claim-taken-over": [(0, "A", "keep", "claimed"), (11, "A", "keep", "claimed")],
    "failed-request-gave-it-back": [(0, "A", "release", "claimed"), (1, "B", "keep", "claimed")],
    "expired-after-24h": [(0, "A", "store", "claimed"), (24 * 60 + 1, "B", "keep", "claimed")],
    "kept-for-24h": [(0, "A", "store", "claimed"), (24 * 60 - 1, "B", "keep", "conflict")],
}


@pytest.mark.parametrize("steps", KEY_CASES.values(), ids=KEY_CASES.keys())
def test_an_idempotency_key_is_claimed_replayed_refused_and_expires(registry_url: str,
                                                                    steps: list[tuple[int, str, str, str]]) -> None:
    registry = Registry(registry_url, owner="team", scoped=True)
    try:
        for minute, fingerprint, then, expected in steps:
            taken, answer = registry.claim_idempotency_key(
                "deploy-42", fingerprint, now=at(minute), expired_before=at(minute - 24 * 60),
                stale_before=at(minute - 10))
            assert taken == expected, (minute, fingerprint)
            assert answer == ('{"port": 8083}' if taken == "replay" else None)
            if then == "store":
                registry.store_idempotency_answer("deploy-42", '{"port": 8083}')
            elif then == "release":
                registry.release_idempotency_key("deploy-42")
    finally:
        registry.close()


def test_two_workspaces_keys_are_their_own(registry_url: str) -> None:
    mine, theirs = Registry(registry_url, owner="a", scoped=True), Registry(registry_url, owner="b", scoped=True)
    try:
        for registry in (mine, theirs):
            assert registry.claim_idempotency_key("k", registry.owner, now=at(0), expired_before=at(-1440),
                                                  stale_before=at(-10)) == ("claimed", None)
    finally:
        mine.close()
        theirs.close()


# --- webhook deliveries -------------------------------------------------------------------------------------

def test_a_delivery_is_new_once_per_source_and_window(registry_url: str) -> None:
    registry = Registry(registry_url, owner="team", scoped=True)
    window = 24 * 60

    def first(source: str, delivery: str, minute: float) -> bool:
        return registry.first_delivery(source, delivery, now=at(minute), expired_before=at(minute - window))

    try:
        assert [first("github", "d-1", 0), first("github", "d-1", 1), first("gitlab", "d-1", 2),
                first("github", "d-2", 3), first("github", "d-1", window - 1), first("github", "d-1", window + 1)] == [
            True, False, True, True, False, True]
    finally:
        registry.close()


def test_concurrent_replicas_take_one_delivery_exactly_once(registry_url: str) -> None:
    replicas = [Registry(registry_url, owner="team", scoped=True) for _ in range(6)]
    gate = threading.Barrier(len(replicas))
    answers: list[bool] = []

    def receive(registry: Registry) -> None:
        gate.wait()
        answers.append(registry.first_delivery("github", "burst", now=at(0), expired_before=at(-1440)))

    threads = [threading.Thread(target=receive, args=(r,)) for r in replicas]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for registry in replicas:
            registry.close()
    assert sorted(answers) == [False] * (len(replicas) - 1) + [True]


# --- the upgrade --------------------------------------------------------------------------------------------

V9_COLUMNS = {"test_runs": ("status", "error", "lease_until"), "test_results": ("name", "type")}


def test_an_upgrade_from_version_8_keeps_the_runs_as_finished(registry_url: str) -> None:
    Registry(registry_url, upgrade_to=8).close()
    engine = create_engine(registry_url)
    with engine.begin() as conn:
        # Registry(upgrade_to=8) creates the tables from today's definitions: take version 9's columns out
        # again, so the tables are what a qrm of schema version 8 made.
        for table, columns in V9_COLUMNS.items():
            for column in columns:
                conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        for failed in (0, 2):  # runs 1 and 2
            conn.execute(text("INSERT INTO test_runs (suite, environment, started_at, finished_at, passed, failed, "
                              "skipped, flaky, duration_ms, owner) VALUES ('smoke', 'dev', 't0', 't1', 3, :failed, 0, "
                              "0, 1.0, '')"), {"failed": failed})
        conn.execute(text("INSERT INTO test_results (run_id, case_id, outcome, attempts, duration_ms, reason) "
                          "VALUES (2, 'gone', 'failed', 1, 1.0, 'status 404')"))
    engine.dispose()

    registry = Registry(registry_url)
    try:
        assert registry.schema_version() == SCHEMA_VERSION == 10
        assert [(r["id"], r["status"]) for r in registry.test_run_rows("smoke")] == [(2, "failed"), (1, "passed")]
        assert [(r["case_id"], r["name"]) for r in registry.test_result_rows([2])] == [("gone", "")]
        assert registry.start_test_run("smoke", "dev", started_at="t2", lease_until=at(1)) == 3  # ids go on
        assert registry.first_delivery("github", "d", now=at(0), expired_before=at(-1))
        assert registry.claim_idempotency_key("k", "A", now=at(0), expired_before=at(-1), stale_before=at(-1))[0] == (
            "claimed")
    finally:
        registry.close()
