"""Ownership in a shared registry: each workspace changes only its own rows; allocation avoids everyone's.

Here the shared registry is one SQLite file named by --registry (tests/edges/test_registry_postgres.py runs
the same on PostgreSQL). A registry given by --registry, QRM_REGISTRY or qrm.yaml is shared; the
default .qrm/registry.db is private.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from reconciler.edges.registry import SCHEMA_VERSION, Registry, allocations, health_table, secrets_table
from tests.support.paths import FIXTURES
from tests.support.workspace import Workspace


def services(*names: str, port: int | None = None) -> str:
    pin = f"port: {port}\n" if port else ""
    return "".join(f"---\nkind: Service\nname: {n}\nhost: localhost\ntype: app\n{pin}" for n in names)


def team(tmp_path: Path, name: str, *names: str) -> Workspace:
    ws = Workspace(tmp_path / name)
    ws.write("qrm.yaml", f"name: {name}\n")
    ws.manifest("svc.yaml", services(*names))
    return ws


@pytest.fixture
def shared(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shared' / 'registry.db'}"


def run(ws: Workspace, url: str, *args: str) -> tuple[int, str]:
    result = ws.qrm("--registry", url, *args)
    return result.exit_code, result.output


def ports(ws: Workspace, url: str, *extra: str) -> list[tuple[str, int, str]]:
    code, out = run(ws, url, "ports", "list", "--json", *extra)
    assert code == 0, out
    return [(a["name"], a["port"], a["owner"]) for a in json.loads(out)["allocations"]]


def test_two_workspaces_share_a_registry_without_colliding(tmp_path: Path, shared: str) -> None:
    a = team(tmp_path, "team-a", "a-api", "a-web")
    b = team(tmp_path, "team-b", "b-api", "b-web")
    assert run(a, shared, "apply", "--yes", "--no-refresh")[0] == 0
    assert run(b, shared, "apply", "--yes", "--no-refresh")[0] == 0

    everyone = ports(a, shared)
    assert everyone == [("a-api", 8000, "team-a"), ("a-web", 8001, "team-a"),
                        ("b-api", 8002, "team-b"), ("b-web", 8003, "team-b")]
    assert ports(b, shared, "--mine") == [("b-api", 8002, "team-b"), ("b-web", 8003, "team-b")]
    table = run(b, shared, "ports", "list")[1]
    assert table.splitlines()[0].split()[-1] == "OWNER" and "team-a" in table

    # Each plans and lists only its own services.
    assert run(a, shared, "plan", "--no-refresh", "--detailed-exitcode")[0] == 0
    listed = json.loads(run(b, shared, "services", "list", "--json")[1])
    assert sorted(s["name"] for s in listed["services"]) == ["b-api", "b-web"]

    # Removing all of A's services releases A's ports only; B keeps its rows, and B's next service
    # takes the lowest free port (A's old one).
    a.manifest("svc.yaml", "")
    code, out = run(a, shared, "apply", "--yes", "--no-refresh")
    assert code == 0 and "b-api" not in out
    assert ports(b, shared) == [("b-api", 8002, "team-b"), ("b-web", 8003, "team-b")]
    b.manifest("svc.yaml", services("b-api", "b-web", "b-new"))
    assert run(b, shared, "apply", "--yes", "--no-refresh")[0] == 0
    assert ("b-new", 8000, "team-b") in ports(b, shared)


def test_a_port_or_name_another_workspace_holds_is_a_conflict(tmp_path: Path, shared: str) -> None:
    a = team(tmp_path, "team-a", "a-api")
    assert run(a, shared, "apply", "--yes", "--no-refresh")[0] == 0  # a-api gets 8000

    pinned = team(tmp_path, "team-b")
    pinned.manifest("svc.yaml", services("b-api", port=8000))
    code, out = run(pinned, shared, "apply", "--yes", "--no-refresh")
    assert code == 1
    assert "port 8000 on localhost is pinned by b-api but is allocated to a-api of workspace 'team-a'" in out

    same_name = team(tmp_path, "team-c", "a-api")
    code, out = run(same_name, shared, "plan", "--no-refresh")
    assert code == 1
    assert "service a-api is registered by workspace 'team-a' in the shared registry" in out
    assert ports(a, shared) == [("a-api", 8000, "team-a")]  # nothing of theirs was written


def test_health_rounds_and_scans_touch_only_their_own_rows(tmp_path: Path, shared: str) -> None:
    a = team(tmp_path, "team-a", "a-api")
    b = team(tmp_path, "team-b", "b-api")
    for ws in (a, b):
        assert run(ws, shared, "apply", "--yes", "--no-refresh")[0] == 0
        assert run(ws, shared, "services", "health")[0] == 0
    a.manifest("svc.yaml", "")
    assert run(a, shared, "apply", "--yes", "--no-refresh")[0] == 0
    assert run(a, shared, "services", "health")[0] == 0  # prunes A's health of removed services only
    registry = Registry(shared)
    try:
        with registry.engine.connect() as conn:
            rows = sorted(conn.execute(select(health_table.c.service, health_table.c.owner)).all())
    finally:
        registry.close()
    assert [tuple(r) for r in rows] == [("b-api", "team-b")]


def test_without_a_name_the_identity_is_the_git_remote(tmp_path: Path, shared: str) -> None:
    ws = Workspace(tmp_path / "checkout")
    ws.manifest("svc.yaml", services("api"))
    subprocess.run(["git", "init", "-q", str(ws.root)], check=True)
    subprocess.run(["git", "-C", str(ws.root), "remote", "add", "origin", "git@github.com:acme/fleet.git"],
                   check=True)
    assert run(ws, shared, "apply", "--yes", "--no-refresh")[0] == 0
    assert ports(ws, shared) == [("api", 8000, "github.com/acme/fleet")]
    # Another checkout of the same repository (its manifests and committed lock file) is the same
    # workspace: it finds its services applied.
    clone = Workspace(tmp_path / "elsewhere")
    clone.manifest("svc.yaml", services("api"))
    clone.write("reports/allocations.yaml", ws.lockfile.read_text())
    subprocess.run(["git", "init", "-q", str(clone.root)], check=True)
    subprocess.run(["git", "-C", str(clone.root), "remote", "add", "origin", "https://github.com/acme/fleet"],
                   check=True)
    assert run(clone, shared, "plan", "--no-refresh", "--detailed-exitcode")[0] == 0


def test_a_version_7_registry_is_upgraded_and_its_rows_belong_to_the_workspace(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript((FIXTURES / "registry-v7.sql").read_text())
    url = f"sqlite:///{path}"
    registry = Registry(url, owner="fleet", scoped=True)
    try:
        assert registry.schema_version() == SCHEMA_VERSION == 10
        assert {n: s.port for n, s in registry.recorded_services().items()} == {
            "quantumblog-dev-web": 8001, "quantum-admin": 8500}
        assert registry.recorded_secrets() == {"quantumblog/BLOG_DB_PASSWORD": "f1f2f3"}
        assert list(registry.recorded_files()) == ["generated/quantumblog/dev/nginx.conf"]
        assert list(registry.component_shas("quantumblog")) == ["components/login.q"]
        assert [h.revision for h in registry.history()] == ["abc123"]
        with registry.engine.connect() as conn:
            owners = {r.owner for r in conn.execute(select(allocations.c.owner))}
            owners |= {r.owner for r in conn.execute(select(secrets_table.c.owner))}
        assert owners == {"fleet"}
    finally:
        registry.close()
    # Scoped to another owner, the same rows are someone else's: taken, not planned.
    other = Registry(url, owner="someone-else", scoped=True)
    try:
        assert other.recorded_services() == {}
        assert sorted(f[:4] for f in other.foreign_allocations()) == [
            ("localhost", 8001, "quantumblog-dev-web", "fleet"), ("localhost", 8500, "quantum-admin", "fleet")]
    finally:
        other.close()


def test_the_private_registry_keeps_its_rows_when_the_workspace_is_renamed(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("api", "web"))
    assert workspace.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    workspace.write("qrm.yaml", "name: renamed\n")
    assert workspace.qrm("plan", "--no-refresh", "--detailed-exitcode").exit_code == 0


def test_qrm_yaml_names_the_registry_password_by_environment_variable(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace.write("qrm.yaml", "registry: postgresql+psycopg://qrm:${QRM_DB_PASSWORD}@127.0.0.1:1/qrm\n")
    monkeypatch.delenv("QRM_DB_PASSWORD", raising=False)
    result = workspace.qrm("plan", "--no-refresh")
    assert result.exit_code == 1
    assert "qrm.yaml: registry: environment variable QRM_DB_PASSWORD is not set" in result.output

    monkeypatch.setenv("QRM_DB_PASSWORD", "p@ss/w:rd%")
    from reconciler.flows.workspace import open_workspace

    url = open_workspace(workspace.root).registry_url()
    assert url == "postgresql+psycopg://qrm:p%40ss%2Fw%3Ard%25@127.0.0.1:1/qrm"  # quoted for the URL
    result = workspace.qrm("plan", "--no-refresh")  # nothing listens on port 1: a one-line error
    assert result.exit_code == 1
    assert "p@ss" not in result.output and "p%40ss" not in result.output


def test_discover_finds_another_workspaces_service_by_name(tmp_path: Path, shared: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        a = team(tmp_path, "team-a")
        a.manifest("svc.yaml", f"kind: Service\nname: orders-db\nhost: localhost\ntype: database\nprotocol: tcp\n"
                               f"port: {port}\n")
        b = team(tmp_path, "team-b", "b-api")
        assert run(a, shared, "apply", "--yes", "--no-refresh")[0] == 0
        assert run(b, shared, "apply", "--yes", "--no-refresh")[0] == 0
        assert run(a, shared, "services", "health")[0] == 0  # team-a's round finds it passing

        code, out = run(b, shared, "services", "discover", "orders-db")
        assert (code, out.strip()) == (0, f"127.0.0.1:{port}")
        listed = json.loads(run(b, shared, "services", "list", "--json")[1])
        assert [s["name"] for s in listed["services"]] == ["b-api"]  # the list stays the workspace's own
        assert run(b, shared, "services", "discover", "nobody")[0] == 1
