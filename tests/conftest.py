"""Shared fixtures: a workspace in tmp_path, and qrm run as a user runs it (CliRunner or a subprocess).

The one conftest of the suite (the layer folders have none). Helpers that are not fixtures, and the
classes the fixtures hand out (Workspace, PgDatabase), are in tests/support/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.support import (
    api_server,
    health_fleet,
    notify_events,
    pgserver,
    ports_ui,
    replicas,
    suites_api,
    tests_pages,
    writes_api,
)
from tests.support.browser import chromium
from tests.support.healthservers import Servers, running
from tests.support.notify_receiver import Receiver
from tests.support.pgserver import PgDatabase
from tests.support.quantum_server import Running, quantum_server
from tests.support.workspace import Workspace


@pytest.fixture(autouse=True)
def private_age_keys(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the user's real age keys: HOME, XDG_CONFIG_HOME and XDG_CACHE_HOME point to a fresh
    folder and the SOPS_AGE_* variables are unset (tests that need a key set them)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))  # the key that signs .qrm/cache (edges/state_cache)
    monkeypatch.delenv("SOPS_AGE_KEY", raising=False)
    monkeypatch.delenv("SOPS_AGE_KEY_FILE", raising=False)
    return home


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    (root / "manifests").mkdir(parents=True)
    return Workspace(root)


# --- PostgreSQL: one server per session, one fresh database per test ---------------------------------

@pytest.fixture(scope="session")
def pg_server() -> Iterator[pgserver.PgServer]:
    """The session's PostgreSQL server (max_connections 200). No PostgreSQL is a failure, not a skip."""
    try:
        server = pgserver.start(max_connections=200)
    except pgserver.PgServerError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_database(pg_server: pgserver.PgServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[PgDatabase]:
    name = pg_server.create_database()
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    yield PgDatabase(pg_server, name, pg_server.url(name), pg_server.url(name, with_password=True),
                     pg_server.password)
    pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A registry's URL on each backend: a SQLite file in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    database: PgDatabase = request.getfixturevalue("pg_database")
    return database.url


# --- qrm serve: the bundled example served by a real process, once per test module -------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[api_server.Server]:
    """The example workspace (applied; CANARY as its prod password; api_server.TOKENS) served by `qrm serve`."""
    base = tmp_path_factory.mktemp("served")
    env = api_server.environment(base / "home")
    tokens = api_server.example_workspace(base / "ws", env)
    with api_server.serving(base / "ws", env, tokens) as server:
        yield server



@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium under playwright, headless, for the dashboard's tests (tests/support/browser.py). Per
    module, not per session: playwright's sync API keeps its event loop running in this thread while it is
    open, and every later test that calls asyncio.run() (qrm's runner and health checks do) would fail."""
    with chromium() as started:
        yield started


@pytest.fixture(scope="module")
def suites_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[api_server.Server]:
    """tests/support/suites_api's workspace (two projects, shop's pages on a Quantum stand-in) served by `qrm serve`."""
    with suites_api.served(tmp_path_factory.mktemp("suites")) as server:
        yield server


@pytest.fixture
def fleet_served(tmp_path: Path) -> Iterator[health_fleet.Fleet]:
    """tests/support/health_fleet's services (two HTTP servers, a listener, a refused port) served by `qrm serve`,
    never checked yet."""
    with health_fleet.served(tmp_path) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def tests_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[api_server.Server]:
    """tests/support/tests_pages's workspace (shop's dev and staging on two Quantum stand-ins, both run once)."""
    with tests_pages.served(tmp_path_factory.mktemp("tests-pages")) as server:
        yield server


@pytest.fixture(scope="module")
def writes_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[api_server.Server]:
    """tests/support/writes_api's workspace (a git repository; host forge with an app range) served by `qrm serve`."""
    with writes_api.served(tmp_path_factory.mktemp("writes")) as server:
        yield server


@pytest.fixture(scope="module")
def ports_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[api_server.Server]:
    """tests/support/ports_ui's workspace (120 services on two hosts, a reservation, a failing suite, every service
    critical; a git repository) served by `qrm serve`."""
    with ports_ui.served(tmp_path_factory.mktemp("ports-ui")) as server:
        yield server


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory, pg_server: pgserver.PgServer) -> Iterator[replicas.Replicas]:
    """Two clones of one workspace, each served by `qrm serve --push`, against one PostgreSQL registry."""
    name = pg_server.create_database()
    base = tmp_path_factory.mktemp("replicas")
    try:
        with replicas.replicated(base, pg_server.url(name, with_password=True)) as both:
            yield both
    finally:
        pg_server.drop_database(name)


# The notification event tests (tests/{flows,cli,server}/test_notify_events.py); a test file that defines a
# fixture of the same name (an other receiver, an other stand-in) uses its own.
@pytest.fixture
def hook() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 that verifies tests/support/notify_workspace's signing secret."""
    with notify_events.receiving() as found:
        yield found


@pytest.fixture(scope="module")
def quantum() -> Iterator[Running]:
    """The Quantum stand-in at version v1."""
    with quantum_server("v1") as server:
        yield server


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    """tests/support/healthservers' HTTP and TCP servers a health check can be pointed at."""
    with running() as started:
        yield started
