"""The registry on real SQLite files: versioned schema, upgrades that keep data, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert, update

from reconciler.core.errors import RegistryError
from reconciler.core.state import RecordedService
from reconciler.edges.registry import SCHEMA_VERSION, Registry, allocations, meta_table

STARTED = "2024-01-01T00:00:00.000000Z"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


def svc(name: str, port: int, host: str = "localhost") -> RecordedService:
    return RecordedService(name=name, host=host, port=port, type="app", tags=("a", "b"),
                           health={"path": "/health"})


def test_a_version_2_registry_gains_the_secrets_table_and_keeps_its_services(url: str) -> None:
    old = Registry(url, upgrade_to=2)
    old.write([], [svc("api", 8000)], revision=None, summary={}, started_at=STARTED)
    old.close()

    registry = Registry(url)
    try:
        assert registry.schema_version() == SCHEMA_VERSION >= 3
        assert {n: s.port for n, s in registry.recorded_services().items()} == {"api": 8000}
        assert registry.recorded_secrets() == {}
        registry.write([], [], revision=None, summary={}, started_at=STARTED, secrets={"demo/TOKEN": "ab12"})
        assert registry.recorded_secrets() == {"demo/TOKEN": "ab12"}
    finally:
        registry.close()


def test_a_version_1_registry_is_upgraded_in_place_and_keeps_its_allocations(url: str) -> None:
    old = Registry(url, upgrade_to=1)
    assert old.schema_version() == 1
    with old.engine.begin() as conn:
        conn.execute(insert(allocations), [
            {"host": "localhost", "port": 8000, "service": "api", "type": "app", "allocated_at": STARTED},
            {"host": "forge", "port": 5400, "service": "db", "type": "database", "allocated_at": STARTED},
        ])
    old.close()

    registry = Registry(url)
    try:
        assert registry.schema_version() == SCHEMA_VERSION
        recorded = registry.recorded_services()
        assert {name: (s.host, s.port, s.type) for name, s in recorded.items()} == {
            "api": ("localhost", 8000, "app"), "db": ("forge", 5400, "database")}
        assert [(r["service"], r["port"]) for r in registry.allocation_rows()] == [("db", 5400), ("api", 8000)]
    finally:
        registry.close()


def test_a_registry_from_a_newer_qrm_is_refused(url: str) -> None:
    registry = Registry(url)
    with registry.engine.begin() as conn:
        conn.execute(update(meta_table).where(meta_table.c.key == "schema_version").values(
            value=str(SCHEMA_VERSION + 1)))
    registry.close()

    with pytest.raises(RegistryError, match=rf"schema version {SCHEMA_VERSION + 1}, newer than this qrm "
                                            rf"understands \({SCHEMA_VERSION}\)"):
        Registry(url)


def test_a_write_round_trips_every_field(url: str) -> None:
    registry = Registry(url)
    try:
        registry.write([], [svc("api", 8000)], revision="abc", summary={"n": 1}, started_at=STARTED)
        assert registry.recorded_services() == {"api": svc("api", 8000)}
    finally:
        registry.close()


def test_a_port_taken_twice_rolls_back_the_whole_write(url: str) -> None:
    registry = Registry(url)
    try:
        registry.write([], [svc("old", 8000)], revision=None, summary={}, started_at=STARTED)
        with pytest.raises(RegistryError, match=r"refused the allocation.*nothing was applied"):
            # Removes "old" and adds two services on one port: the removal must be undone too.
            registry.write(["old"], [svc("x", 8001), svc("y", 8001)], revision=None, summary={},
                           started_at=STARTED)
        assert registry.recorded_services() == {"old": svc("old", 8000)}
        assert [r["service"] for r in registry.allocation_rows()] == ["old"]
        assert registry.count_applies() == 1
    finally:
        registry.close()


def test_a_port_already_recorded_for_another_service_is_refused(url: str) -> None:
    registry = Registry(url)
    try:
        registry.write([], [svc("api", 8000)], revision=None, summary={}, started_at=STARTED)
        with pytest.raises(RegistryError):
            registry.write([], [svc("new", 9000), svc("web", 8000)], revision=None, summary={},
                           started_at=STARTED)
        assert set(registry.recorded_services()) == {"api"}
        assert registry.count_applies() == 1
    finally:
        registry.close()


def test_a_failed_apply_is_recorded_with_its_error(url: str) -> None:
    registry = Registry(url)
    try:
        registry.record_failure(revision="abc", summary={"counts": {"create": 1}}, started_at=STARTED,
                                error="range exhausted")
        [record] = registry.history()
        assert (record.outcome, record.revision, record.error) == ("failed", "abc", "range exhausted")
        assert record.summary == {"counts": {"create": 1}}
        assert registry.recorded_services() == {}
    finally:
        registry.close()


@pytest.mark.parametrize("bad", [
    "not a url",
    "://admin:hunter2@db.example/qrm",
    "postgresql://admin:hunter2@db.example:notaport/qrm",
    "postgresql+nosuchdriver://admin:hunter2@db.example/qrm",
])
def test_an_invalid_url_is_a_registry_error_that_names_it_without_the_password(bad: str) -> None:
    with pytest.raises(RegistryError) as caught:
        Registry(bad)
    message = str(caught.value)
    assert "hunter2" not in message
    if "admin" in bad:
        assert "admin:***@db.example" in message
    else:
        assert bad in message
