"""The flows qrm's faces share, called as a library: plain arguments in, plain values out, nothing printed.

list_ports and port_ranges (`qrm ports`), stale_schemas (`qrm schema --check`), run_auto_suites (the
suites `qrm apply` and a watcher run after applying), plan_with_components and save_plan (`qrm plan`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.core.schema import json_schemas
from reconciler.core.test_results import SuiteRun
from reconciler.flows.init import stale_schemas, write_schemas
from reconciler.flows.plan import load_saved_plan, plan_with_components, save_plan, saved_plan_document
from reconciler.flows.ports import list_ports, port_ranges
from reconciler.flows.reconcile import reconcile_once
from reconciler.flows.tests_run import run_auto_suites
from reconciler.flows.workspace import open_workspace
from tests.support.gated_suite import gated_manifests
from tests.support.quantum_server import Running, quantum_server
from tests.support.workspace import Workspace


def service(name: str, type: str = "app", host: str = "localhost") -> str:
    return f"---\nkind: Service\nname: {name}\nhost: {host}\ntype: {type}\n"


def apply(ws: Workspace, *args: str) -> None:
    result = ws.qrm(*args, "apply", "--yes", "--no-refresh", "--no-tests")
    assert result.exit_code == 0, result.output


# --- list_ports ------------------------------------------------------------------------------------

def test_list_ports_after_an_apply_gives_every_allocation_with_its_owner_sorted_by_host_and_port(
        workspace: Workspace) -> None:
    workspace.write("qrm.yaml", "name: team-a\n")
    workspace.manifest("svc.yaml", service("web") + service("api") + service("db", type="database"))
    apply(workspace)

    ports = list_ports(open_workspace(workspace.root))

    assert ports.origin == "registry" and ports.workspace == "team-a" and ports.own == 3
    assert [(a["host"], a["port"], a["name"], a["type"], a["owner"]) for a in ports.allocations] == [
        ("localhost", 5400, "db", "database", "team-a"),
        ("localhost", 8000, "api", "app", "team-a"),
        ("localhost", 8001, "web", "app", "team-a"),
    ]
    assert ports.allocations[0]["protocol"] == "tcp" and ports.allocations[0]["pinned"] is False


def test_list_ports_before_any_apply_is_empty_and_says_nothing_is_allocated(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", service("web"))

    ports = list_ports(open_workspace(workspace.root))

    assert ports.allocations == [] and ports.own == 0


def test_list_ports_filters_by_host_and_by_type(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", "kind: Host\nname: alpha\naddress: 10.0.0.1\n"
                       + service("web") + service("db", "database")
                       + service("far-web", host="alpha") + service("far-db", "database", host="alpha"))
    apply(workspace)
    ws = open_workspace(workspace.root)

    assert [a["name"] for a in list_ports(ws, host="alpha").allocations] == ["far-db", "far-web"]
    assert [a["name"] for a in list_ports(ws, type="database").allocations] == ["far-db", "db"]
    assert [a["name"] for a in list_ports(ws, host="localhost", type="app").allocations] == ["web"]
    nothing = list_ports(ws, host="nowhere")
    assert nothing.allocations == [] and nothing.own == 4  # filtered out, not unapplied


def test_in_a_shared_registry_list_ports_shows_other_workspaces_ports_unless_mine(tmp_path: Path) -> None:
    shared = f"sqlite:///{tmp_path / 'shared' / 'registry.db'}"
    teams = {}
    for name in ("team-a", "team-b"):
        teams[name] = Workspace(tmp_path / name)
        teams[name].write("qrm.yaml", f"name: {name}\n")
        teams[name].manifest("svc.yaml", service(f"{name[-1]}-api") + service(f"{name[-1]}-web"))
        apply(teams[name], "--registry", shared)
    b = open_workspace(teams["team-b"].root, shared)

    everyone = list_ports(b)
    mine = list_ports(b, mine=True)

    assert [(a["name"], a["port"], a["owner"]) for a in everyone.allocations] == [
        ("a-api", 8000, "team-a"), ("a-web", 8001, "team-a"), ("b-api", 8002, "team-b"), ("b-web", 8003, "team-b")]
    assert [(a["name"], a["owner"]) for a in mine.allocations] == [("b-api", "team-b"), ("b-web", "team-b")]
    assert everyone.workspace == mine.workspace == "team-b" and everyone.own == mine.own == 2


def test_list_ports_in_a_fresh_clone_reads_the_committed_lock_file(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", service("web"))
    apply(workspace)
    (workspace.root / ".qrm" / "registry.db").unlink()

    ports = list_ports(open_workspace(workspace.root))

    assert ports.origin == "reports"
    assert [(a["name"], a["port"], a["owner"]) for a in ports.allocations] == [("web", 8000, "ws")]


# --- port_ranges -----------------------------------------------------------------------------------

def test_port_ranges_counts_the_allocated_ports_of_each_range(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", service("web") + service("api") + service("db", type="database"))
    apply(workspace)

    ranges = {(r.host, r.type): r for r in port_ranges(open_workspace(workspace.root))}

    app, database, cache = ranges["localhost", "app"], ranges["localhost", "database"], ranges["localhost", "cache"]
    assert (app.name, app.start, app.end, app.used, app.free) == ("app", 8000, 8999, 2, 998)
    assert (database.used, database.free) == (1, 99)
    assert cache.used == 0


# --- stale_schemas ---------------------------------------------------------------------------------

def test_stale_schemas_names_the_schema_files_that_are_missing_or_changed(tmp_path: Path) -> None:
    names = list(json_schemas())
    assert stale_schemas(tmp_path) == names  # none written yet

    write_schemas(tmp_path)
    assert stale_schemas(tmp_path) == []

    (tmp_path / "schemas" / names[0]).write_text("{}\n")
    (tmp_path / "schemas" / names[-1]).unlink()
    assert stale_schemas(tmp_path) == [names[0], names[-1]]


def test_stale_schemas_agrees_with_qrm_schema_check(workspace: Workspace) -> None:
    assert workspace.qrm("schema").exit_code == 0
    name = next(iter(json_schemas()))
    (workspace.root / "schemas" / name).write_text("{}\n")

    result = workspace.qrm("schema", "--check")

    assert stale_schemas(workspace.root) == [name]
    assert result.exit_code == 1 and result.output == f"stale: schemas/{name}\n"


# --- run_auto_suites -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    with quantum_server("v1") as running:
        yield running


def suites(url: str) -> str:
    """Project shop on one environment, a blocking auto_run suite `gate` (one case fails) and a manual one."""
    return gated_manifests(url, blocking=True) + """---
kind: TestSuite
name: manual
project: shop
cases:
  - {id: home, name: home, type: smoke, request: {path: /}, expect: [{status: 200}]}
"""


def test_run_auto_suites_runs_only_the_auto_run_suites_and_returns_their_runs(
        workspace: Workspace, server: Running) -> None:
    workspace.manifest("shop.yaml", suites(server.url))
    apply(workspace)
    seen: list[str] = []

    runs = run_auto_suites(open_workspace(workspace.root), on_run=lambda run: seen.append(run.suite.name))

    assert [run.suite.name for run in runs] == seen == ["gate"]
    [gate] = runs
    assert [t.environment for t in gate.targets] == ["dev"]
    assert {k: gate.counts("dev")[k] for k in ("passed", "failed")} == {"passed": 1, "failed": 1}
    assert gate.blocks
    assert (workspace.root / "reports" / "tests" / "gate" / "dev.yaml").is_file()
    assert not (workspace.root / "reports" / "tests" / "manual").exists()


def test_run_auto_suites_without_an_auto_run_suite_runs_nothing(workspace: Workspace, server: Running) -> None:
    workspace.manifest("shop.yaml", suites(server.url).replace("auto_run: true", "auto_run: false"))
    ran: list[SuiteRun] = []

    assert run_auto_suites(open_workspace(workspace.root), on_run=ran.append) == []
    assert ran == [] and not (workspace.root / "reports" / "tests").exists()


def test_a_reconcile_that_applies_reports_the_auto_run_suites_and_times_them_only_when_there_are_some(
        workspace: Workspace, server: Running) -> None:
    workspace.manifest("shop.yaml", suites(server.url))
    ws = open_workspace(workspace.root)

    result = reconcile_once(ws, trigger="change", apply=True, commit=False, scan=False)

    assert result.outcome == "applied"
    assert result.tests == ["tests gate: 1 passed, 1 failed"] and result.tests_blocking == ["gate"]
    assert "tests" in result.timings

    workspace.manifest("shop.yaml", suites(server.url).replace("auto_run: true", "auto_run: false"))
    quiet = reconcile_once(ws, trigger="change", apply=True, commit=False, scan=False)

    assert quiet.tests == [] and quiet.tests_blocking == [] and "tests" not in quiet.timings
    assert "tests" not in quiet.line()


# --- plan_with_components and save_plan ------------------------------------------------------------

def test_plan_with_components_gives_the_plan_and_the_q_files_changed_since_the_last_scan(
        workspace: Workspace) -> None:
    workspace.manifest("blog.yaml", """
        kind: Project
        name: blog
        source: app
        environments:
          dev: {host: localhost}
        services:
          web: {type: app}
        """)
    workspace.write("app/index.q", '<q:component name="Home" type="page"></q:component>\n')

    context, components = plan_with_components(open_workspace(workspace.root), refresh=False)

    assert [(c.action, c.address) for c in context.plan.changes if c.address.startswith("service.")] == [
        ("create", "service.blog-dev-web")]
    assert components == [{"project": "blog", "path": "index.q", "change": "added", "symbol": "+"}]

    assert workspace.qrm("scan").exit_code == 0
    workspace.write("app/index.q", '<q:component name="Home" type="page"><p>new</p></q:component>\n')
    _, after_scan = plan_with_components(open_workspace(workspace.root), refresh=False)
    assert after_scan == [{"project": "blog", "path": "index.q", "change": "changed", "symbol": "~"}]


def test_a_saved_plan_reads_back_as_written_and_qrm_apply_applies_it(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", service("web"))
    context, _ = plan_with_components(open_workspace(workspace.root), refresh=False, targets=("web",))
    path = workspace.root / "web.plan"

    save_plan(context, path)

    assert load_saved_plan(path) == saved_plan_document(context)
    result = workspace.qrm("apply", str(path))
    assert result.exit_code == 0, result.output
    assert "Apply complete: 1 created" in result.output
