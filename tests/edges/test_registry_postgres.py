"""The registry on PostgreSQL behaves as on SQLite, through the CLI: the example workspace end to end,
removing a service releases its port, the schema is created on first use and upgraded keeping data;
several workspaces share one registry (PostgreSQL, and a shared SQLite file) without ever getting the
same host:port, each seeing and pruning only its own services; and a password never shows."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from reconciler.core.state import RecordedService
from reconciler.edges import registry as registry_module
from reconciler.edges.registry import SCHEMA_VERSION, Registry
from tests.support.paths import REPO
from tests.support.pgserver import PgDatabase
from tests.support.workspace import Workspace

AGE_KEY = REPO / "examples" / "demo-age-key.txt"
TABLES = {"meta", "allocations", "services", "secrets", "health", "generated_files", "component_files",
          "applies", "test_runs", "test_results", "idempotency_keys", "webhook_deliveries",
          "notify_outbox", "notify_disabled"}


def example(root: Path) -> Path:
    """A copy of the bundled example workspace (manifests, secrets, the quantumblog sources)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifests").mkdir(exist_ok=True)
    for name in ("platform.yaml", "quantumblog.yaml"):
        shutil.copy(REPO / "manifests" / name, root / "manifests" / name)
    shutil.copy(REPO / "secrets.enc", root / "secrets.enc")
    shutil.copy(REPO / ".sops.yaml", root / ".sops.yaml")
    shutil.copytree(REPO / "examples" / "quantumblog", root / "examples" / "quantumblog")
    return root


def services(*names: str, pins: dict[str, int] | None = None) -> str:
    pins = pins or {}
    return "".join(f"---\nkind: Service\nname: {n}\nhost: localhost\ntype: app\n"
                   + (f"port: {pins[n]}\n" if n in pins else "") for n in names)


def lock_ports(ws: Workspace) -> dict[str, tuple[str, int]]:
    return {a["name"]: (a["host"], a["port"]) for a in yaml.safe_load(ws.lockfile.read_text())["allocations"]}


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A shared registry's URL (a file beside the workspaces, or a fresh PostgreSQL database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared' / 'registry.db'}"
    database: PgDatabase = request.getfixturevalue("pg_database")
    return database.url


@pytest.fixture
def two(tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Workspace, Workspace, str]:
    """Workspaces team-a and team-b sharing the registry `backend` (QRM_REGISTRY)."""
    monkeypatch.setenv("QRM_REGISTRY", backend)
    made = []
    for name in ("team-a", "team-b"):
        ws = Workspace(tmp_path / name)
        ws.write("qrm.yaml", f"name: {name}\n")
        (ws.root / "manifests").mkdir()
        made.append(ws)
    return made[0], made[1], backend


def ok(ws: Workspace, *args: str, code: int = 0) -> str:
    result = ws.qrm(*args)
    assert result.exit_code == code, result.output
    return result.output


# --- one workspace: the same behaviour on both backends ---------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str | None:
    """None: the default private .qrm/registry.db; else a PostgreSQL URL given by QRM_REGISTRY."""
    if request.param == "sqlite":
        monkeypatch.delenv("QRM_REGISTRY", raising=False)
        return None
    database: PgDatabase = request.getfixturevalue("pg_database")
    monkeypatch.setenv("QRM_REGISTRY", database.url)
    return database.url


def test_the_example_workspace_end_to_end(tmp_path: Path, registry_url: str | None,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace(example(tmp_path / "ws"))
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(AGE_KEY))
    assert "Valid: 10 services, 1 hosts, 1 projects" in ok(ws, "validate")
    assert "Plan: 24 to create" in ok(ws, "plan", "--no-refresh", "--detailed-exitcode", code=2)
    assert "Apply complete: 24 created, 0 updated, 0 deleted" in ok(ws, "apply", "--yes", "--no-refresh")
    assert "No changes." in ok(ws, "plan", "--no-refresh", "--detailed-exitcode")
    ok(ws, "apply", "--yes", "--no-refresh")  # again: nothing to do
    ok(ws, "plan", "--no-refresh", "--detailed-exitcode")

    listed = ok(ws, "ports", "list").splitlines()
    assert listed[0].split() == ["HOST", "PORT", "SERVICE", "TYPE", "PROTOCOL", "PINNED", "PROJECT", "ENV", "OWNER"]
    locked = lock_ports(ws)
    assert len(locked) == 10 and len(set(locked.values())) == 10
    table = {line.split()[2]: int(line.split()[1]) for line in listed[2:]}
    assert table == {name: port for name, (_, port) in locked.items()}
    assert locked["quantum-admin"] == ("localhost", 8001)  # pinned
    assert "app 8000-8999: 4 used" in ok(ws, "ports", "ranges")
    names = {line.split()[0] for line in ok(ws, "services", "list").splitlines()[2:]}
    assert names == set(locked)
    assert "10 services:" in ok(ws, "services", "health")  # nothing listens: critical, still exit 0
    ok(ws, "scan")
    assert "quantumblog/BLOG_DB_PASSWORD" in ok(ws, "secrets", "list")
    ok(ws, "plan", "--no-refresh", "--detailed-exitcode")

    url = registry_url or f"sqlite:///{ws.root / '.qrm' / 'registry.db'}"
    assert rows(url, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    assert rows(url, "SELECT count(*) FROM secrets") == [(2,)]
    assert rows(url, "SELECT count(*) FROM component_files") == [(5,)]
    assert {r[0] for r in rows(url, "SELECT service FROM health")} == set(locked)


def test_both_backends_allocate_the_same_ports(tmp_path: Path, pg_database: PgDatabase,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(AGE_KEY))
    monkeypatch.delenv("QRM_REGISTRY", raising=False)
    on_sqlite = Workspace(example(tmp_path / "sqlite" / "ws"))
    ok(on_sqlite, "apply", "--yes", "--no-refresh")
    monkeypatch.setenv("QRM_REGISTRY", pg_database.url)
    on_postgres = Workspace(example(tmp_path / "postgresql" / "ws"))
    ok(on_postgres, "apply", "--yes", "--no-refresh")
    assert on_sqlite.lockfile.read_bytes() == on_postgres.lockfile.read_bytes()


def test_removing_a_service_releases_its_port(workspace: Workspace, registry_url: str | None) -> None:
    workspace.manifest("svc.yaml", services("alpha", "beta", "gamma"))
    ok(workspace, "apply", "--yes", "--no-refresh")
    before = lock_ports(workspace)
    assert before == {"alpha": ("localhost", 8000), "beta": ("localhost", 8001), "gamma": ("localhost", 8002)}

    workspace.manifest("svc.yaml", services("alpha", "gamma"))
    assert "Apply complete: 0 created, 0 updated, 1 deleted" in ok(workspace, "apply", "--yes", "--no-refresh")
    assert "beta" not in ok(workspace, "ports", "list")
    # Whatever else on this machine listens on 8001, the registry no longer holds it for anyone.
    check = json.loads(workspace.qrm("ports", "check", "8001", "--json").output)
    assert not [r for r in check["reasons"] if r.startswith(("allocated", "pinned"))], check

    workspace.manifest("svc.yaml", services("alpha", "gamma", "delta"))
    ok(workspace, "apply", "--yes", "--no-refresh")
    assert lock_ports(workspace)["delta"] == ("localhost", 8001)  # the lowest free port: beta's
    ok(workspace, "plan", "--no-refresh", "--detailed-exitcode")


def test_the_schema_is_created_on_first_use(workspace: Workspace, pg_database: PgDatabase,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QRM_REGISTRY", pg_database.url)
    assert rows(pg_database.url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
    workspace.manifest("svc.yaml", services("alpha"))
    ok(workspace, "apply", "--yes", "--no-refresh")
    tables = {r[0] for r in rows(pg_database.url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == TABLES
    registry = Registry(pg_database.url)
    try:
        assert registry.schema_version() == SCHEMA_VERSION
    finally:
        registry.close()


def test_read_only_commands_leave_an_empty_database_empty(workspace: Workspace, pg_database: PgDatabase,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A PR check pointed at a fresh (or read-only) database must not create the schema."""
    monkeypatch.setenv("QRM_REGISTRY", pg_database.url)
    workspace.manifest("svc.yaml", services("alpha"))
    assert "+ service.alpha" in ok(workspace, "plan", "--no-refresh")
    ok(workspace, "plan", "--no-refresh", "--detailed-exitcode", code=2)
    ok(workspace, "ports", "list")
    ok(workspace, "services", "list")
    assert rows(pg_database.url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


def test_rows_written_at_an_earlier_step_are_stamped_with_the_upgrading_owner(backend: str) -> None:
    old = Registry(backend, upgrade_to=7)  # today's table definitions: the owner column, empty
    old.write([], [RecordedService("legacy", "localhost", 8500, "app")], revision=None, summary={},
              started_at="2026-01-01T00:00:00.000000Z")
    old.close()
    upgraded = Registry(backend, owner="upgrader", scoped=True)
    try:
        assert list(upgraded.recorded_services()) == ["legacy"]
        assert upgraded.foreign_allocations() == []
    finally:
        upgraded.close()


def test_an_upgrade_from_version_7_keeps_the_data(tmp_path: Path, backend: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    old = Registry(backend, upgrade_to=7)
    old.close()
    now = "2026-01-01T00:00:00.000000Z"
    engine = create_engine(backend)
    with engine.begin() as conn:
        # Registry(upgrade_to=7) creates the tables from today's definitions (with the owner column):
        # take it out again, so the tables are what a qrm of schema version 7 made.
        for table in ("allocations", "services", "health", "applies", "test_runs"):
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN owner"))
        conn.execute(text("DROP TABLE secrets"))
        conn.execute(text("CREATE TABLE secrets (name VARCHAR(300) PRIMARY KEY, fingerprint VARCHAR(64) NOT NULL, "
                          "recorded_at VARCHAR(32) NOT NULL)"))
        conn.execute(text("INSERT INTO allocations (host, port, service, type, allocated_at) "
                          "VALUES ('localhost', 8500, 'legacy', 'app', :now)"), {"now": now})
        conn.execute(text("INSERT INTO services (name, host, port, type, protocol, pinned, tags, registered_at) "
                          "VALUES ('legacy', 'localhost', 8500, 'app', 'http', false, '[]', :now)"), {"now": now})
        conn.execute(text("INSERT INTO secrets (name, fingerprint, recorded_at) VALUES ('TOKEN', 'abc', :now)"),
                     {"now": now})
    engine.dispose()
    assert rows(backend, "SELECT value FROM meta WHERE key = 'schema_version'") == [("7",)]

    upgraded = Registry(backend, owner="upgrader", scoped=True)
    try:
        assert upgraded.schema_version() == SCHEMA_VERSION
        assert {n: (s.host, s.port) for n, s in upgraded.recorded_services().items()} == {"legacy": ("localhost", 8500)}
        assert upgraded.recorded_secrets() == {"TOKEN": "abc"}
    finally:
        upgraded.close()

    ws = Workspace(tmp_path / "ws")
    ws.write("qrm.yaml", "name: upgrader\n")
    ws.manifest("svc.yaml", services("legacy", "fresh"))
    monkeypatch.setenv("QRM_REGISTRY", backend)
    ok(ws, "apply", "--yes", "--no-refresh")
    assert lock_ports(ws) == {"legacy": ("localhost", 8500), "fresh": ("localhost", 8000)}  # sticky: kept 8500
    assert rows(backend, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    assert sorted(rows(backend, "SELECT service, owner FROM allocations")) == [("fresh", "upgrader"),
                                                                                ("legacy", "upgrader")]
    ok(ws, "plan", "--no-refresh", "--detailed-exitcode")


# --- several workspaces, one registry ---------------------------------------------------------------


def test_two_workspaces_never_share_a_port_and_each_sees_its_own(two: tuple[Workspace, Workspace, str]) -> None:
    a, b, url = two
    a.manifest("svc.yaml", services(*(f"a-{i}" for i in range(5))))
    b.manifest("svc.yaml", services(*(f"b-{i}" for i in range(5))))
    ok(a, "apply", "--yes", "--no-refresh")
    ok(b, "apply", "--yes", "--no-refresh")
    ports_a, ports_b = lock_ports(a), lock_ports(b)
    assert set(ports_a) == {f"a-{i}" for i in range(5)} and set(ports_b) == {f"b-{i}" for i in range(5)}
    assert not set(ports_a.values()) & set(ports_b.values())
    addresses = rows(url, "SELECT host, port FROM allocations")
    assert len(addresses) == 10 == len(set(addresses))

    for ws, mine in ((a, "a-"), (b, "b-")):
        listed = {line.split()[0] for line in ok(ws, "services", "list").splitlines()[2:]}
        assert listed == {f"{mine}{i}" for i in range(5)}
        ok(ws, "plan", "--no-refresh", "--detailed-exitcode")
    owners = {line.split()[2]: line.split()[-1] for line in ok(a, "ports", "list").splitlines()[2:]}
    assert owners == {**{f"a-{i}": "team-a" for i in range(5)}, **{f"b-{i}": "team-b" for i in range(5)}}
    mine_only = {line.split()[2] for line in ok(b, "ports", "list", "--mine").splitlines()[2:]}
    assert mine_only == {f"b-{i}" for i in range(5)}

    b_rows = sorted(rows(url, "SELECT service, host, port, owner FROM allocations WHERE owner = 'team-b'"))
    a.manifest("svc.yaml", "")
    assert "5 deleted" in ok(a, "apply", "--yes", "--no-refresh")
    assert rows(url, "SELECT count(*) FROM services WHERE owner = 'team-a'") == [(0,)]
    assert sorted(rows(url, "SELECT service, host, port, owner FROM allocations")) == b_rows
    assert {r[0] for r in rows(url, "SELECT name FROM services")} == {f"b-{i}" for i in range(5)}
    ok(b, "plan", "--no-refresh", "--detailed-exitcode")


def test_a_port_pinned_by_one_workspace_that_another_holds_is_a_conflict(
        two: tuple[Workspace, Workspace, str]) -> None:
    a, b, url = two
    a.manifest("svc.yaml", services("a-web"))
    ok(a, "apply", "--yes", "--no-refresh")
    assert lock_ports(a) == {"a-web": ("localhost", 8000)}
    b.manifest("svc.yaml", services("b-web", pins={"b-web": 8000}))
    out = ok(b, "plan", "--no-refresh", code=1)
    assert "port 8000 on localhost is pinned by b-web but is allocated to a-web of workspace 'team-a'" in out
    out = ok(b, "apply", "--yes", "--no-refresh", code=1)
    assert "workspace 'team-a'" in out and "nothing was applied" in out
    assert rows(url, "SELECT service, port, owner FROM allocations") == [("a-web", 8000, "team-a")]


def test_a_service_name_used_by_two_workspaces_is_a_conflict(two: tuple[Workspace, Workspace, str]) -> None:
    a, b, url = two
    a.manifest("svc.yaml", services("shared-name"))
    ok(a, "apply", "--yes", "--no-refresh")
    b.manifest("svc.yaml", services("shared-name", "b-only"))
    out = ok(b, "apply", "--yes", "--no-refresh", code=1)
    assert "service shared-name is registered by workspace 'team-a'" in out
    assert rows(url, "SELECT service, owner FROM allocations") == [("shared-name", "team-a")]


# --- passwords --------------------------------------------------------------------------------------


def qrm_process(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", "-C", str(ws.root), *args],
                          capture_output=True, text=True, timeout=120)


def test_a_wrong_password_is_a_one_line_error(workspace: Workspace, pg_database: PgDatabase,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    workspace.manifest("svc.yaml", services("alpha"))
    wrong = "Wr0ng:pa@ss/word"
    monkeypatch.setenv("PGPASSWORD", wrong)
    monkeypatch.setenv("QRM_REGISTRY", pg_database.url)
    for args in (("plan", "--no-refresh"), ("apply", "--yes", "--no-refresh"), ("ports", "list")):
        done = qrm_process(workspace, *args)
        assert done.returncode == 1, done
        assert done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
        assert "password authentication failed" in done.stderr and wrong not in done.stderr
    monkeypatch.delenv("PGPASSWORD")
    in_url = pg_database.server.url(pg_database.name, with_password=True, password=wrong)
    done = qrm_process(workspace, "--registry", in_url, "plan", "--no-refresh")
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr
    assert "password authentication failed" in done.stderr
    assert "Wr0ng" not in done.stderr and "Wr0ng" not in done.stdout


def test_a_password_in_the_registry_url_never_shows(tmp_path: Path, pg_database: PgDatabase,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGPASSWORD")  # the URL alone must authenticate
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(AGE_KEY))
    ws = Workspace(example(tmp_path / "ws"))
    url = pg_database.url_with_password
    secret = pg_database.password
    quoted = url.split("://", 1)[1].split("@127.0.0.1", 1)[0].split(":", 1)[1]
    leaks: Callable[[str], bool] = lambda s: secret in s or quoted in s or "S3cr" in s  # noqa: E731
    runs = [
        ("--registry", url, "--log-level", "debug", "validate"),
        ("--registry", url, "--log-level", "debug", "plan", "--no-refresh", "--out", str(tmp_path / "plan.json")),
        ("--registry", url, "--log-level", "debug", "plan", "--no-refresh", "--json"),
        ("--registry", url, "--log-level", "debug", "apply", "--yes", "--no-refresh"),
        ("--registry", url, "--log-level", "debug", "ports", "list"),
        ("--registry", url, "--log-level", "debug", "services", "list"),
        ("--registry", url, "--log-level", "debug", "services", "health"),
        ("--registry", url, "--log-level", "debug", "scan"),
        ("--registry", url, "--log-level", "debug", "plan", "--no-refresh", "--markdown"),
    ]
    for args in runs:
        done = qrm_process(ws, *args)
        assert done.returncode == 0, (args[-1], done.stderr)
        assert not leaks(done.stdout) and not leaks(done.stderr), args
    saved = (tmp_path / "plan.json").read_text()
    assert "postgresql+psycopg://qrm:***@" in saved and not leaks(saved)
    for path in ws.root.rglob("*"):
        if path.is_file() and path.suffix != ".enc":
            assert not leaks(path.read_text(errors="replace")), path
    ok(ws, "--registry", url, "plan", "--no-refresh", "--detailed-exitcode")
    assert registry_module.display_url(url) == pg_database.url.replace("qrm@", "qrm:***@")


def test_the_test_runs_mark_changes_when_a_run_of_its_workspace_starts_or_ends(backend: str) -> None:
    """Registry.test_runs_revision, which the dashboard's kept Overview is keyed by: a run of this workspace
    starting or ending changes it, a run of another workspace sharing the registry does not."""
    mine, theirs = (Registry(backend, owner=owner, scoped=True) for owner in ("team-a", "team-b"))
    try:
        marks = [mine.test_runs_revision()]
        mine.record_test_runs([({"suite": "smoke", "environment": "staging", "started_at": "2026-12-02T06:00:01+00:00",
                                 "finished_at": "2026-12-02T06:00:09+00:00", "passed": 1, "failed": 0, "skipped": 0,
                                 "flaky": 0, "duration_ms": 8000.0, "revision": None}, [])])
        marks.append(mine.test_runs_revision())
        run = mine.start_test_run("smoke", "dev", started_at="2026-12-02T06:00:00+00:00",
                                  lease_until="2026-12-02T07:00:00+00:00")
        marks.append(mine.test_runs_revision())
        other = theirs.start_test_run("smoke", "dev", started_at="2026-12-02T06:00:00+00:00",
                                      lease_until="2026-12-02T07:00:00+00:00")
        theirs.record_test_runs([({"id": other, "status": "passed", "finished_at": "2026-12-02T06:00:05+00:00"}, [])])
        assert mine.test_runs_revision() == marks[-1]
        # ends before the newest finished_at (its clock, or the same second): the mark still changes (one fewer running)
        mine.record_test_runs([({"id": run, "status": "failed", "finished_at": "2026-12-02T06:00:00+00:00"}, [])])
        marks.append(mine.test_runs_revision())
        assert len(set(marks)) == 4, marks
    finally:
        mine.close()
        theirs.close()
