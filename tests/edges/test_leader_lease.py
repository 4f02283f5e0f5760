"""The registry's leader lease (replicas of `qrm serve --watch`), on a real PostgreSQL server (a session
advisory lock) and on a SQLite file (an flock beside it): one holder per workspace name, names that do not
block each other, the holder named to the others, a release or the holder's death (SIGKILL of a real
process) hands it over, and a PostgreSQL session ended under the holder is noticed as a lost lease."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from reconciler.edges.registry import LeaderLease, Registry
from tests.support.paths import REPO
from tests.support.watch_replicas import shared_registry

KINDS = ["postgresql", "sqlite"]


@contextmanager
def leases(url: str, *names: str) -> Iterator[list[LeaderLease]]:
    """One lease per name, each through its own Registry (its own engine and connections, as another process has)."""
    registries = [Registry(url, owner=name, scoped=True) for name in names]
    made = [registry.leader_lease(name, f"replica {number}") for number, (registry, name) in
            enumerate(zip(registries, names, strict=True), 1)]
    try:
        yield made
    finally:
        for lease, registry in zip(made, registries, strict=True):
            lease.release()
            registry.close()


def eventually(condition: Callable[[], bool], what: str, deadline: float = 30) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("kind", KINDS)
def test_one_holder_per_workspace_named_to_the_others_and_a_release_hands_it_over(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url, _ = shared_registry(kind, request, tmp_path)
    with leases(url, "fleet", "fleet", "fleet") as (first, second, third):
        assert first.holder() is None
        assert [first.try_acquire(), second.try_acquire(), third.try_acquire()] == [True, False, False]
        assert first.try_acquire() and first.still_held()  # asking again keeps it
        assert second.holder() == third.holder() == first.holder() == "replica 1"
        first.release()
        assert not first.held
        assert [third.try_acquire(), second.try_acquire(), first.try_acquire()] == [True, False, False]
        assert second.holder() == "replica 3"


@pytest.mark.parametrize("kind", KINDS)
def test_two_workspaces_sharing_a_registry_do_not_block_each_other(kind: str, request: pytest.FixtureRequest,
                                                                    tmp_path: Path) -> None:
    url, _ = shared_registry(kind, request, tmp_path)
    with leases(url, "payments", "shop", "payments", "shop") as (payments, shop, payments2, shop2):
        assert [payments.try_acquire(), shop.try_acquire()] == [True, True]
        assert [payments2.try_acquire(), shop2.try_acquire()] == [False, False]
        assert (payments2.holder(), shop2.holder()) == ("replica 1", "replica 2")


HOLDER = """
import sys, time
from reconciler.edges.registry import Registry
lease = Registry(sys.argv[1], owner="fleet", scoped=True).leader_lease("fleet", "the doomed one")
assert lease.try_acquire()
print("held", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("kind", KINDS)
def test_a_holder_killed_with_sigkill_frees_the_lease(kind: str, request: pytest.FixtureRequest,
                                                       tmp_path: Path) -> None:
    url, _ = shared_registry(kind, request, tmp_path)
    Registry(url).close()  # the schema, before two processes race to create it
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with leases(url, "fleet") as (mine,):
            assert not mine.try_acquire()
            assert mine.holder() == "the doomed one"
            holder.kill()
            holder.wait(timeout=30)
            eventually(mine.try_acquire, "the lease after the holder was killed")
            assert mine.holder() == "replica 1"
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_postgresql_session_ended_under_the_holder_is_a_lost_lease(request: pytest.FixtureRequest,
                                                                      tmp_path: Path) -> None:
    url, _ = shared_registry("postgresql", request, tmp_path)
    database = request.getfixturevalue("pg_database")
    with leases(url, "fleet", "fleet") as (first, second):
        assert first.try_acquire() and first.still_held()
        # An administrator (or a restart) ends the holder's session: the lock goes with it.
        database.server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE application_name = 'qrm leader replica 1'")
        assert second.try_acquire()
        assert not first.still_held() and not first.held
        assert not first.try_acquire()
        assert first.holder() == "replica 2"


def test_the_sqlite_lease_is_a_file_beside_the_database_named_by_the_workspace(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared' / 'registry.db'}"
    with leases(url, "fleet", "other") as (fleet, other):
        assert fleet.try_acquire() and other.try_acquire()
        files = sorted(p.name for p in (tmp_path / "shared").glob("registry.db.leader-*"))
        assert len(files) == 2 and fleet.file is not None and fleet.file.name in files
        assert fleet.file.read_text() == "replica 1\n"
        assert "flock of" in fleet.describe() and fleet.file.name in fleet.describe()
