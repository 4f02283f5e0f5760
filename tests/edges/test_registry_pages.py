"""The registry's paged reads, on SQLite and on a real PostgreSQL: `port_rows` filters, sorts and pages in the
database exactly as Python sorts the whole list (host names in code-point order whatever the database's
collation), with the other workspaces' allocations of a shared registry; and the marks a server's cache is
keyed on (`revision`, `health_revision`) change with every write and only then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from reconciler.core.health import HealthRecord
from reconciler.core.state import RecordedService
from reconciler.edges.registry import Registry
from tests.support.pgserver import PgDatabase

# Host names whose order differs between code points and a natural-language collation (en_US: "a-b" and
# "a_b" next to "ab", "Zeta" after "alpha").
MINE = [RecordedService("web", "alpha", 8001, "app", project="shop", environment="dev"),
        RecordedService("db", "alpha", 5432, "database", project="shop", environment="dev", tags=("primary",),
                        health={"tcp": True}),
        RecordedService("cache", "Zeta", 6379, "cache", project="blog", environment="prod"),
        RecordedService("api", "a-b", 8002, "app"),
        RecordedService("jobs", "a_b", 8003, "app", project="shop", environment="dev"),
        RecordedService("edge", "ab", 8004, "app", pinned=True)]
THEIRS = [RecordedService("their-web", "alpha", 8000, "app"), RecordedService("their-db", "Zeta", 5433, "database"),
          RecordedService("their-api", "ab", 8005, "app")]


def url_of(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'shared' / 'registry.db'}"
    database: PgDatabase = request.getfixturevalue("pg_database")
    return database.url


def natural_collation(url: str) -> None:
    """Host names compared as in a database made with a natural-language collation (the test server's is
    C.UTF-8, which sorts as Python does): ICU's en-US on the columns the pages sort by."""
    engine = create_engine(url)
    with engine.begin() as conn:
        for table in ("services", "allocations"):
            conn.execute(text(f'ALTER TABLE {table} ALTER COLUMN host TYPE varchar(253) COLLATE "en-US-x-icu"'))
    engine.dispose()


def apply(registry: Registry, services: list[RecordedService], removed: tuple[str, ...] = ()) -> None:
    registry.write(list(removed), services, revision=None, summary={}, started_at="2026-12-02T00:00:00Z")


def row(r: RecordedService | tuple[str, str, int, str, str]) -> dict[str, Any]:
    if isinstance(r, RecordedService):
        return {"name": r.name, "host": r.host, "port": r.port, "type": r.type, "owner": "mine", "service": r}
    return {"name": r[0], "host": r[1], "port": r[2], "type": r[3], "owner": r[4]}


def expected(filters: dict[str, str], foreign: bool) -> list[dict[str, Any]]:
    """The reference: every row in Python, filtered and sorted by host, port and name."""
    rows = [{"name": s.name, "host": s.host, "port": s.port, "type": s.type, "owner": "mine", "service": s}
            for s in MINE]
    if foreign and "project" not in filters:
        rows += [{"name": s.name, "host": s.host, "port": s.port, "type": s.type, "owner": "team-b"} for s in THEIRS]

    def value(r: dict[str, Any], key: str) -> Any:
        service = r.get("service")
        return getattr(service, "project", None) if key == "project" else r[key]

    def kept(r: dict[str, Any], key: str, wanted: str) -> bool:
        if key == "search":  # a part of the name, or the port
            return wanted in r["name"] or (wanted.isdigit() and int(wanted) == r["port"])
        return bool(value(r, key) == wanted)

    rows = [r for r in rows if all(kept(r, k, v) for k, v in filters.items())]
    return sorted(rows, key=lambda r: (r["host"], r["port"], r["name"]))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize(("filters", "foreign", "limit", "offset"), [
    ({}, True, None, 0),  # everything, in Python's order
    ({}, False, None, 0),  # only this workspace's
    ({}, True, 4, 0),
    ({}, True, 4, 4),  # the second page
    ({}, True, 4, 8),  # the last, one row
    ({}, True, 4, 9),  # just past the end
    ({}, True, 10, 500),  # far past it
    ({"host": "alpha"}, True, None, 0),
    ({"host": "alpha"}, True, 1, 1),
    ({"type": "app"}, True, 2, 1),
    ({"host": "ab", "type": "app"}, True, None, 0),
    ({"project": "shop"}, True, None, 0),  # a project: the other workspaces' rows have none
    ({"project": "shop", "type": "app"}, True, 1, 1),
    ({"host": "nowhere"}, True, 10, 0),
    ({"search": "web"}, True, None, 0),  # a part of the name, theirs too
    ({"search": "their", "host": "ab"}, True, None, 0),
    ({"search": "8002"}, True, None, 0),  # the port
    ({"search": "%"}, True, None, 0),  # LIKE's wildcards are letters here: no name holds them
    ({"search": "_"}, True, None, 0),
    ({"search": "e", "type": "app"}, False, 1, 1),
], ids=["all", "mine", "page-1", "page-2", "last-page", "offset-at-end", "offset-far", "host", "host-paged",
        "type-paged", "host-and-type", "project", "project-type-paged", "no-match", "search-name", "search-host",
        "search-port", "search-percent", "search-underscore", "search-type-paged"])
def test_port_rows_page_in_the_database_as_python_sorts_the_whole_list(
        backend: str, filters: dict[str, str], foreign: bool, limit: int | None, offset: int, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    url = url_of(backend, tmp_path, request)
    mine, theirs = Registry(url, owner="team-a", scoped=True), Registry(url, owner="team-b", scoped=True)
    if backend == "postgresql":
        natural_collation(url)
    try:
        apply(mine, MINE)
        apply(theirs, THEIRS)
        own, total, rows = mine.port_rows(**filters, foreign=foreign, limit=limit, offset=offset)
    finally:
        mine.close()
        theirs.close()
    want = expected(filters, foreign)
    end = None if limit is None else offset + limit
    assert (own, total) == (len(MINE), len(want))
    assert [row(r) for r in rows] == want[offset:end]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_private_registry_lists_every_row_as_its_own(backend: str, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    registry = Registry(url_of(backend, tmp_path, request), owner="renamed-since")
    try:
        apply(registry, MINE)
        own, total, rows = registry.port_rows(limit=2, offset=0)
    finally:
        registry.close()
    assert (own, total) == (len(MINE), len(MINE))
    assert rows == [s for s in sorted(MINE, key=lambda s: (s.host, s.port, s.name))][:2]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_revision_changes_with_every_apply_of_any_workspace_and_only_then(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = url_of(backend, tmp_path, request)
    mine, theirs = Registry(url, owner="team-a", scoped=True), Registry(url, owner="team-b", scoped=True)
    try:
        seen = [mine.revision()]
        apply(mine, MINE[:2])
        seen.append(mine.revision())
        assert mine.revision() == seen[-1]  # reading changes nothing
        apply(theirs, THEIRS)  # another workspace's apply changes what this one lists (their rows)
        seen.append(mine.revision())
        apply(mine, [], removed=("web",))
        seen.append(mine.revision())
        mine.record_failure(revision=None, summary={}, started_at="2026-12-02T00:00:00Z", error="boom")
        seen.append(mine.revision())
        health = mine.health_revision()
        mine.record_health(lambda _: [HealthRecord("db", "passing", 1, 0, 1.5, "2026-12-02T00:00:01Z", "ok",
                                                   "TCP alpha:5432", "10.0.0.1:5432")])
        assert mine.revision() == seen[-1]  # a health round is not an apply
        assert mine.health_revision() != health
        assert theirs.health_revision() == theirs.health_revision()
    finally:
        mine.close()
        theirs.close()
    assert seen[0] == "" and len(set(seen)) == len(seen)


def test_a_rebuilt_sqlite_registry_has_a_new_revision_though_its_apply_ids_start_over(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / '.qrm' / 'registry.db'}"
    first = Registry(url)
    apply(first, MINE)
    before = first.revision()
    first.close()
    (tmp_path / ".qrm" / "registry.db").unlink()
    again = Registry(url)
    apply(again, MINE[:1])
    after = again.revision()
    again.close()
    assert before.split("@")[0] == after.split("@")[0] == "1" and before != after


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_has_records_and_service_places_read_only_this_workspaces_rows(backend: str, tmp_path: Path,
                                                                       request: pytest.FixtureRequest) -> None:
    url = url_of(backend, tmp_path, request)
    mine, theirs = Registry(url, owner="team-a", scoped=True), Registry(url, owner="team-b", scoped=True)
    try:
        apply(theirs, THEIRS)
        assert (mine.has_records(), theirs.has_records()) == (False, True)
        apply(mine, MINE)
        assert sorted(mine.service_places()) == sorted((s.name, s.host, s.port) for s in MINE)
    finally:
        mine.close()
        theirs.close()
