"""qrm scan on real files: the components report, incremental rescans, the registry rows, plan's information."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import inspect

from reconciler.core.components import Component
from reconciler.core.state import RecordedService
from reconciler.edges import q_components
from reconciler.edges.registry import SCHEMA_VERSION, Registry, component_files
from reconciler.flows.scan import PARALLEL_THRESHOLD, _scan_one, plain
from tests.support import qapps
from tests.support.qcorpus import write_corpus
from tests.support.workspace import Workspace

LOGIN = """\
<q:component name="LoginPage" type="page">
  <q:action name="login" method="POST">
    <q:param name="email" type="email" required="true" />
    <q:param name="password" type="string" minlength="8" maxlength="255" />
    <q:query name="authUser" datasource="blog-db">
      SELECT id, password_hash FROM users WHERE email = :email
    </q:query>
    <q:redirect url="/admin" flash="Welcome back!" />
  </q:action>
  <form method="POST" action="/login">
    <input type="email" name="email" required="required" />
    <input type="password" name="password" />
  </form>
</q:component>
"""
INDEX = """\
<q:component name="Home" type="page">
  <q:query name="recent" datasource="blog-db" type="select">SELECT id, title FROM posts</q:query>
  <q:include component="shared/header" />
</q:component>
"""
HEADER = """\
<q:component name="Header" type="partial">
  <nav><a href="/">Blog</a></nav>
</q:component>
"""
POSTS = """\
<q:component name="Posts" type="page">
  <q:action name="create" method="POST">
    <q:param name="title" type="string" required="true" />
    <q:query name="addPost" datasource="blog-db" type="insert">INSERT INTO posts (title) VALUES (:title)</q:query>
    <q:redirect url="/posts" flash="Saved" />
  </q:action>
  <q:action name="remove" method="POST">
    <q:query name="deletePost" datasource="blog-db" type="delete">DELETE FROM posts WHERE id = :id</q:query>
  </q:action>
  <form method="POST" action="/posts"><input type="text" name="title" /></form>
</q:component>
"""
BINARY = b"\x00\x01\x02\x03 not a component"


def project(ws: Workspace, name: str = "blog", source: str = "../blog-app", base_path: str = "") -> Path:
    ws.manifest(f"{name}.yaml", f"""
        kind: Project
        name: {name}
        source: {source}
        base_path: "{base_path}"
        environments:
          dev: {{host: localhost}}
        """)
    folder = (ws.root / source).resolve()
    (folder / "components").mkdir(parents=True, exist_ok=True)
    return folder


def write(folder: Path, relative: str, content: str | bytes) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.fixture
def blog(workspace: Workspace) -> Path:
    folder = project(workspace)
    write(folder, "components/login.q", LOGIN)
    write(folder, "components/index.q", INDEX)
    write(folder, "components/shared/header.q", HEADER)
    write(folder, "components/posts.q", POSTS)
    return folder


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The relative path of every file q_components.scan_file parses (in this process: fewer than 200 files)."""
    seen: list[str] = []
    real = q_components.scan_file

    def counting(path: Path, rel: str, base_path: str = "", max_bytes: int = 5_000_000,
                 served: str = "components") -> Component:
        seen.append(rel)
        return real(path, rel, base_path, max_bytes, served)

    monkeypatch.setattr(q_components, "scan_file", counting)
    return seen


def report_of(ws: Workspace, name: str = "blog") -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ws.root / "reports" / "components" / f"{name}.yaml").read_text())
    return loaded


def scan_json(ws: Workspace, *args: str) -> dict[str, Any]:
    result = ws.qrm("scan", "--json", *args)
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.output)
    return document


def registry_rows(ws: Workspace) -> dict[tuple[str, str], tuple[str, str]]:
    registry = Registry(f"sqlite:///{ws.root / '.qrm' / 'registry.db'}")
    try:
        with registry.engine.connect() as conn:
            return {(r.project, r.path): (r.sha256, r.scanned_at) for r in conn.execute(component_files.select())}
    finally:
        registry.close()


def test_a_scan_writes_the_sorted_report_with_totals_and_prints_a_table(workspace: Workspace, blog: Path,
                                                                        calls: list[str]) -> None:
    result = workspace.qrm("scan")
    assert result.exit_code == 0, result.output
    assert sorted(calls) == ["components/index.q", "components/login.q", "components/posts.q",
                             "components/shared/header.q"]
    report = report_of(workspace)
    assert report["project"] == "blog"
    assert report["source"] == "../blog-app"
    assert report["summary"] == "4 components | 3 actions | 2 forms | 4 queries"
    assert report["totals"] == {"components": 4, "actions": 3, "forms": 2, "queries": 4, "unparsed": 0,
                                "not_served": 0}
    assert report["served"] == "components"
    assert report["unparsed"] == []
    paths = [c["path"] for c in report["components"]]
    assert paths == ["components/index.q", "components/login.q", "components/posts.q", "components/shared/header.q"]
    login = report["components"][1]
    assert (login["name"], login["type"], login["route"]) == ("LoginPage", "page", "/login")
    assert [a["name"] for a in login["actions"]] == ["login"]
    assert login["sha256"] == hashlib.sha256(LOGIN.encode()).hexdigest()
    posts = report["components"][2]
    assert [a["writes"] for a in posts["actions"]] == [True, True]
    assert report["components"][0]["route"] == "/"
    lines = result.output.splitlines()
    assert lines[0] == "blog (../blog-app): 4 file(s); 4 parsed, 0 unchanged, 0 removed"
    assert lines[1] == "served: components/ (the default: no quantum.config.yaml)"
    assert lines[2].split() == ["PATH", "NAME", "TYPE", "ROUTE", "ACTIONS", "FORMS", "QUERIES", "PARSE"]
    assert any(line.split()[:4] == ["components/login.q", "LoginPage", "page", "/login"] for line in lines)
    assert "4 components | 3 actions | 2 forms | 4 queries" in lines
    assert "wrote reports/components/blog.yaml" in lines


def test_a_rescan_without_changes_parses_nothing_and_keeps_the_report_and_rows(workspace: Workspace, blog: Path,
                                                                               calls: list[str]) -> None:
    assert workspace.qrm("scan").exit_code == 0
    report = (workspace.root / "reports" / "components" / "blog.yaml").read_bytes()
    rows = registry_rows(workspace)
    calls.clear()
    result = workspace.qrm("scan")
    assert result.exit_code == 0, result.output
    assert calls == []
    assert (workspace.root / "reports" / "components" / "blog.yaml").read_bytes() == report
    assert registry_rows(workspace) == rows  # scanned_at unchanged: nothing was written
    assert "0 parsed, 4 unchanged, 0 removed" in result.output
    assert "unchanged: reports/components/blog.yaml" in result.output


def test_a_changed_file_alone_is_parsed_again(workspace: Workspace, blog: Path, calls: list[str]) -> None:
    workspace.qrm("scan")
    rows = registry_rows(workspace)
    calls.clear()
    write(blog, "components/shared/header.q", HEADER.replace("Header", "SiteHeader"))
    document = scan_json(workspace)
    assert calls == ["components/shared/header.q"]
    scan = document["projects"][0]
    assert (scan["added"], scan["changed"], scan["removed"]) == ([], ["components/shared/header.q"], [])
    assert report_of(workspace)["components"][3]["name"] == "SiteHeader"
    after = registry_rows(workspace)
    assert after[("blog", "components/login.q")] == rows[("blog", "components/login.q")]
    assert after[("blog", "components/shared/header.q")] != rows[("blog", "components/shared/header.q")]


def test_a_deleted_file_disappears_from_the_registry_and_the_report(workspace: Workspace, blog: Path) -> None:
    workspace.qrm("scan")
    (blog / "components" / "posts.q").unlink()
    result = workspace.qrm("scan")
    assert "removed: components/posts.q" in result.output
    report = report_of(workspace)
    assert [c["path"] for c in report["components"]] == ["components/index.q", "components/login.q",
                                                         "components/shared/header.q"]
    assert report["summary"] == "3 components | 1 actions | 1 forms | 2 queries"
    assert ("blog", "components/posts.q") not in registry_rows(workspace)


def test_a_file_that_cannot_be_parsed_is_counted_and_listed_with_its_problems(workspace: Workspace,
                                                                            blog: Path) -> None:
    write(blog, "components/broken.q", BINARY)
    result = workspace.qrm("scan")
    assert result.exit_code == 0, result.output
    report = report_of(workspace)
    assert report["totals"]["components"] == 5
    assert report["totals"]["unparsed"] == 1
    assert report["summary"].endswith("| 1 unparsed")
    [unparsed] = report["unparsed"]
    assert unparsed["path"] == "components/broken.q"
    assert unparsed["parse"] in ("fallback", "skipped")
    assert unparsed["problems"]
    assert "components/broken.q" in [c["path"] for c in report["components"]]
    assert any(line.startswith("problems in components/broken.q") for line in result.output.splitlines())


def test_json_lists_components_and_totals_of_two_projects(workspace: Workspace, blog: Path) -> None:
    shop = project(workspace, "shop", "apps/shop", base_path="/shop")
    write(shop, "components/index.q", INDEX)
    write(shop, "components/cart/index.q", HEADER)
    document = scan_json(workspace)
    assert [p["project"] for p in document["projects"]] == ["blog", "shop"]
    shop_scan = document["projects"][1]
    assert [c["path"] for c in shop_scan["components"]] == ["components/cart/index.q", "components/index.q"]
    assert [c.get("route") for c in shop_scan["components"]] == [None, "/shop/"]  # a partial has no route
    assert document["totals"]["components"] == 6
    assert report_of(workspace, "shop")["totals"]["components"] == 2
    only = scan_json(workspace, "shop")
    assert [p["project"] for p in only["projects"]] == ["shop"]
    assert only["projects"][0]["parsed"] == []


def test_a_project_removed_from_the_manifests_loses_its_rows_and_report(workspace: Workspace, blog: Path) -> None:
    shop = project(workspace, "shop", "apps/shop")
    write(shop, "components/index.q", INDEX)
    scan_json(workspace)
    assert {p for p, _ in registry_rows(workspace)} == {"blog", "shop"}
    (workspace.root / "manifests" / "shop.yaml").unlink()
    scan_json(workspace, "blog")  # a scan of one project leaves the others alone
    assert {p for p, _ in registry_rows(workspace)} == {"blog", "shop"}
    assert [p["project"] for p in scan_json(workspace)["projects"]] == ["blog"]
    assert {p for p, _ in registry_rows(workspace)} == {"blog"}
    assert not (workspace.root / "reports" / "components" / "shop.yaml").exists()
    assert (workspace.root / "reports" / "components" / "blog.yaml").exists()


def test_a_missing_source_folder_is_an_error_naming_project_and_path(workspace: Workspace) -> None:
    workspace.manifest("p.yaml", """
        kind: Project
        name: ghost
        source: ../nowhere
        environments:
          dev: {host: localhost}
        """)
    result = workspace.qrm("scan")
    assert result.exit_code == 1
    assert "project 'ghost': source folder ../nowhere" in result.output
    assert "does not exist" in result.output
    assert not (workspace.root / "reports" / "components").exists()


def test_an_unknown_project_is_an_error(workspace: Workspace, blog: Path) -> None:
    result = workspace.qrm("scan", "nope")
    assert result.exit_code == 1
    assert "unknown project 'nope'; known projects: blog" in result.output


def test_plan_shows_components_changed_since_the_last_scan_and_nothing_after_a_scan(workspace: Workspace,
                                                                                   blog: Path) -> None:
    workspace.qrm("scan")
    clean = workspace.qrm("plan", "--no-refresh")
    assert "Components (since the last scan" not in clean.output
    assert json.loads(workspace.qrm("plan", "--no-refresh", "--json").output)["components"] == []
    write(blog, "components/new.q", HEADER.replace("Header", "New"))
    write(blog, "components/login.q", LOGIN.replace("Welcome back!", "Hello!"))
    (blog / "components" / "posts.q").unlink()
    text = workspace.qrm("plan", "--no-refresh").output
    section = text[text.index("Components (since the last scan"):].splitlines()
    assert section[1:] == ["  ~ blog: components/login.q", "  + blog: components/new.q",
                           "  - blog: components/posts.q"]
    document = json.loads(workspace.qrm("plan", "--no-refresh", "--json").output)
    assert document["components"] == [
        {"project": "blog", "path": "components/login.q", "change": "changed", "symbol": "~"},
        {"project": "blog", "path": "components/new.q", "change": "added", "symbol": "+"},
        {"project": "blog", "path": "components/posts.q", "change": "removed", "symbol": "-"},
    ]
    markdown = workspace.qrm("plan", "--no-refresh", "--markdown").output
    assert "3 component(s) changed since the last scan" in markdown
    assert "+ blog: components/new.q" in markdown
    workspace.qrm("scan")
    assert "Components (since the last scan" not in workspace.qrm("plan", "--no-refresh").output


def test_a_version_5_registry_is_upgraded_to_6_keeping_its_data(workspace: Workspace, blog: Path) -> None:
    url = f"sqlite:///{workspace.root / '.qrm' / 'registry.db'}"
    old = Registry(url, upgrade_to=5)
    old.write([], [RecordedService("api", "localhost", 8000, "app", "http")], revision=None, summary={},
              started_at="2026-11-27T00:00:00.000000Z")
    with old.engine.connect() as conn:
        assert not inspect(conn).has_table("component_files")
    old.close()
    assert workspace.qrm("scan").exit_code == 0
    registry = Registry(url)
    try:
        assert registry.schema_version() == SCHEMA_VERSION >= 6
        assert list(registry.recorded_services()) == ["api"]
        assert registry.count_applies() == 1
        assert sorted(registry.component_shas("blog")) == ["components/index.q", "components/login.q",
                                                           "components/posts.q", "components/shared/header.q"]
    finally:
        registry.close()


def test_component_rows_are_written_and_removed_in_one_call(tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        registry.write_components([], [("a", "x.q", "1" * 64, "{}", "{}"), ("a", "y.q", "2" * 64, "{}", "{}"),
                                       ("b", "x.q", "3" * 64, "{}", "{}")])
        registry.write_components([("a", "x.q")], [("a", "y.q", "4" * 64, '{"name": "Y"}', "{}")])
        assert registry.component_shas("a") == {"y.q": "4" * 64}
        assert registry.component_shas("b") == {"x.q": "3" * 64}
        assert registry.component_rows("a")["y.q"][1] == '{"name": "Y"}'
    finally:
        registry.close()


def test_the_fast_dictionary_form_equals_component_to_dict(tmp_path: Path) -> None:
    write_corpus(tmp_path / "corpus", 60, seed=3)
    for name, content in (("login.q", LOGIN), ("index.q", INDEX), ("posts.q", POSTS), ("broken.q", BINARY)):
        write(tmp_path / "corpus", f"extra/{name}", content)
    paths = sorted((tmp_path / "corpus").rglob("*.q"))
    assert len(paths) >= 64
    for path in paths:
        component = q_components.scan_file(path, path.relative_to(tmp_path / "corpus").as_posix(), "/app")
        assert plain(component) == component.to_dict()


def test_many_changed_files_are_parsed_in_a_process_pool_with_the_same_result(workspace: Workspace,
                                                                              tmp_path: Path) -> None:
    folder = project(workspace)
    write_corpus(folder / "components", PARALLEL_THRESHOLD + 40, seed=1)
    pooled = scan_json(workspace)["projects"][0]
    assert len(pooled["parsed"]) > PARALLEL_THRESHOLD
    report = (workspace.root / "reports" / "components" / "blog.yaml").read_bytes()
    serial = [json.loads(_scan_one((str(folder / c["path"]), c["path"], "", c["sha256"], "components"))[0])
              for c in pooled["components"]]
    assert pooled["components"] == serial
    shutil.rmtree(workspace.root / ".qrm")
    scan_json(workspace)
    assert (workspace.root / "reports" / "components" / "blog.yaml").read_bytes() == report


def test_a_new_base_path_rescans_the_project_so_routes_follow_it(workspace: Workspace, blog: Path,
                                                                 calls: list[str]) -> None:
    workspace.qrm("scan")
    calls.clear()
    project(workspace, base_path="/blog")
    workspace.qrm("scan")
    assert len(calls) == 4
    routes = [c.get("route") for c in report_of(workspace)["components"]]
    assert routes[:3] == ["/blog/", "/blog/login", "/blog/posts"]


# --- the app's quantum.config.yaml: the served folder -----------------------------------------------

@pytest.mark.parametrize("config", [False, True], ids=["no-config", "config-serves-src-components"])
def test_the_upstream_shape_routes_and_the_not_served_files(workspace: Workspace, config: bool) -> None:
    folder = project(workspace, base_path="/quantum-blog")
    served = qapps.write_app(folder, config)
    result = workspace.qrm("scan")
    assert result.exit_code == 0, result.output
    report = report_of(workspace)
    by_path = {c["path"]: c for c in report["components"]}
    expected = {f"{served}/{p}": (None if r is None else "/quantum-blog" + r) for p, r in qapps.SERVED.items()}
    assert {p: by_path[p].get("route") for p in expected} == expected
    assert all("not_served" not in by_path[p] for p in expected)
    outside = qapps.not_served(config)
    assert sorted(p for p, c in by_path.items() if "not_served" in c) == outside
    assert {by_path[p]["not_served"] for p in outside} == {f"outside the served folder {served}/ (paths.components)"}
    assert all("route" not in by_path[p] for p in outside)  # pages, but nothing serves them
    assert report["served"] == served
    assert report["totals"]["not_served"] == len(outside)
    assert report["summary"].endswith(f"| {len(outside)} not served")
    lines = result.output.splitlines()
    where = "paths.components of ../blog-app/quantum.config.yaml" if config else "the default: no quantum.config.yaml"
    assert lines[1] == f"served: {served}/ ({where})"
    assert any(line.split()[0] == "examples/demo.q" and "(not served)" in line for line in lines)
    assert f"not served: {len(outside)} file(s) outside {served}/; scanned and reported, but no HTTP test cases " \
           "are generated for them" in lines
    document = scan_json(workspace)["projects"][0]
    assert document["not_served"] == outside
    assert document["app_config"] == {
        "file": "../blog-app/quantum.config.yaml" if config else None, "served": served,
        "datasources": ["app-db"] if config else [], "notes": []}


def test_changing_the_served_folder_rescans_and_moves_the_marking(workspace: Workspace, calls: list[str]) -> None:
    folder = project(workspace)
    qapps.write_app(folder, config=False)
    workspace.qrm("scan")
    assert report_of(workspace)["totals"]["not_served"] == 2
    calls.clear()
    qapps.write(folder, "quantum.config.yaml", "paths:\n  components: .\n")
    workspace.qrm("scan")
    assert len(calls) == 6  # every file: routes changed
    report = report_of(workspace)
    assert report["served"] == "."
    assert report["totals"]["not_served"] == 0
    routes = {c["path"]: c.get("route") for c in report["components"]}
    assert routes["examples/demo.q"] == "/examples/demo"
    assert routes["components/blog/post.q"] == "/components/blog/post"
    calls.clear()
    workspace.qrm("scan")
    assert calls == []


@pytest.mark.parametrize("older", [{"served_folder"}, {"reader"}, {"served_folder", "reader"}],
                         ids=["before-the-served-folder", "an-older-reader", "both"])
def test_a_report_of_an_older_scan_is_rescanned_once(workspace: Workspace, blog: Path, calls: list[str],
                                                     older: set[str]) -> None:
    """Rows written before the served folder was recorded, or by a reader that read less of a file
    (before uploads' accept/maxsize and every q:import form), are parsed again, once."""
    workspace.qrm("scan")
    registry = Registry(f"sqlite:///{workspace.root / '.qrm' / 'registry.db'}")
    try:
        rows = registry.component_rows("blog")
        old = {path: (sha, line, json.dumps({k: v for k, v in json.loads(summary).items() if k not in older}))
               for path, (sha, line, summary, _) in rows.items()}
        registry.write_components([], [("blog", path, *row) for path, row in old.items()])
    finally:
        registry.close()
    calls.clear()
    workspace.qrm("scan")
    assert len(calls) == 4
    calls.clear()
    workspace.qrm("scan")
    assert calls == []


def test_a_malformed_app_config_is_an_error_naming_file_line_and_field(workspace: Workspace, blog: Path) -> None:
    write(blog, "quantum.config.yaml", "server:\n  port: 8080\npaths:\n  components: /srv/components\n")
    result = workspace.qrm("scan")
    assert result.exit_code == 1
    assert "error: ../blog-app/quantum.config.yaml:4:3: paths.components: '/srv/components' is not inside the " \
           "app's folder" in result.output
    assert "Traceback" not in result.output
    assert not (workspace.root / "reports" / "components").exists()


def test_a_reconcile_reports_a_malformed_app_config_with_its_line(workspace: Workspace, blog: Path) -> None:
    from reconciler.flows.reconcile import reconcile_once
    from reconciler.flows.workspace import open_workspace

    write(blog, "quantum.config.yaml", "paths:\n  components: [a]\n")
    result = reconcile_once(open_workspace(workspace.root), trigger="change", apply=False, commit=False,
                            run_tests=False)
    assert result.problems == ["scan: ../blog-app/quantum.config.yaml:2:3: paths.components: must be a folder of "
                               "the app, like ./components, not a list"]


def test_a_password_in_the_app_config_is_never_shown(workspace: Workspace, blog: Path) -> None:
    write(blog, "quantum.config.yaml",
          "datasources:\n  blog-db: {driver: postgresql, host: db, port: 5432, password: hunter2-pw}\n")
    result = workspace.qrm("scan")
    assert result.exit_code == 0, result.output
    assert "note: datasources.blog-db.password: ignored (qrm never reads a password from quantum.config.yaml); " \
           "the query tests take it from the secret DATASOURCE_BLOG_DB_PASSWORD: qrm secrets set " \
           "DATASOURCE_BLOG_DB_PASSWORD --project blog" in result.output
    assert "hunter2-pw" not in result.output
    assert "hunter2-pw" not in scan_json(workspace, "blog").__repr__()
    assert "hunter2-pw" not in (workspace.root / "reports" / "components" / "blog.yaml").read_text()


# --- symbolic links -----------------------------------------------------------------------------------

def test_a_components_folder_reached_through_a_symlink_is_scanned(workspace: Workspace, tmp_path: Path) -> None:
    folder = project(workspace)
    (folder / "components").rmdir()
    shared = tmp_path / "shared-app" / "components"  # outside the source folder
    write(shared, "index.q", INDEX)
    write(shared, "posts/index.q", POSTS)
    (folder / "components").symlink_to(shared, target_is_directory=True)
    write(tmp_path / "lib", "header.q", HEADER)
    (shared / "shared").symlink_to(tmp_path / "lib", target_is_directory=True)  # a link inside the linked folder
    result = workspace.qrm("scan")
    assert result.exit_code == 0, result.output
    routes = {c["path"]: c.get("route") for c in report_of(workspace)["components"]}
    assert routes == {"components/index.q": "/", "components/posts/index.q": "/posts",
                      "components/shared/header.q": None}


def test_a_symlink_to_an_ancestor_does_not_loop(workspace: Workspace, blog: Path) -> None:
    (blog / "components" / "again").symlink_to(blog, target_is_directory=True)  # the source folder itself
    (blog / "components" / "shared" / "up").symlink_to(blog / "components", target_is_directory=True)
    (blog / "components" / "self").symlink_to(".", target_is_directory=True)
    write(blog, "extra/card.q", HEADER.replace("Header", "Card"))
    (blog / "components" / "more").symlink_to("../extra", target_is_directory=True)  # no loop: followed
    result = workspace.qrm("scan")
    assert result.exit_code == 0, result.output
    assert [c["path"] for c in report_of(workspace)["components"]] == [
        "components/index.q", "components/login.q", "components/more/card.q", "components/posts.q",
        "components/shared/header.q", "extra/card.q"]


def test_a_folder_linked_twice_is_listed_under_both_paths(workspace: Workspace, blog: Path, tmp_path: Path) -> None:
    write(tmp_path / "widgets", "card.q", HEADER.replace("Header", "Card"))
    (blog / "components" / "a").symlink_to(tmp_path / "widgets", target_is_directory=True)
    (blog / "components" / "b").symlink_to(tmp_path / "widgets", target_is_directory=True)
    (blog / "components" / "broken").symlink_to(tmp_path / "nowhere", target_is_directory=True)
    assert workspace.qrm("scan").exit_code == 0
    paths = [c["path"] for c in report_of(workspace)["components"]]
    assert "components/a/card.q" in paths and "components/b/card.q" in paths
    assert len(paths) == 6


def test_a_link_outside_that_leads_back_in_stops_there(tmp_path: Path) -> None:
    """source/ext -> /outside, and /outside/back -> source: a loop through a folder outside; followed once."""
    from reconciler.flows.scan import q_files

    source, outside = tmp_path / "source", tmp_path / "outside"
    write(source, "components/a.q", HEADER)
    write(outside, "b.q", HEADER)
    (source / "components" / "ext").symlink_to(outside, target_is_directory=True)
    (outside / "back").symlink_to(source, target_is_directory=True)
    (outside / "parent").symlink_to(tmp_path, target_is_directory=True)  # contains the way: a loop too
    assert q_files(source) == ["components/a.q", "components/ext/b.q"]
