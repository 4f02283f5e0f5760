"""qrm tests generate: the cases generated from real scanned fixture components, and regeneration."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.core import testgen
from reconciler.core.components import Component, Param, Query
from reconciler.core.models import TestCase
from tests.support import paths, qapps
from tests.support.workspace import Workspace

FIXTURES = paths.FIXTURES / "q" / "components"
COPIED = ("login.q", "posts", "admin", "shared", "api.q")
SUITE = "manifests/tests/blog.yaml"


def blog(ws: Workspace) -> Path:
    """A project `blog` whose source folder holds the fixture components; dev and a protected prod."""
    ws.manifest("blog.yaml", """
        kind: Project
        name: blog
        source: ../blog-app
        environments:
          dev: {host: localhost}
          staging: {host: localhost}
          prod: {host: localhost, protected: true}
        datasources:
          blog-db: {driver: sqlite, database: blog.db}
        """)
    components = ws.root.parent / "blog-app" / "components"
    components.mkdir(parents=True)
    for name in COPIED:
        source = FIXTURES / name
        if source.is_dir():
            shutil.copytree(source, components / name)
        else:
            shutil.copy(source, components / name)
    return components


def generate(ws: Workspace) -> str:
    result = ws.qrm("tests", "generate", "blog")
    assert result.exit_code == 0, result.output
    return result.output


def suite(ws: Workspace) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ws.root / SUITE).read_text())
    return data


def cases(ws: Workspace) -> dict[str, dict[str, Any]]:
    return {case["id"]: case for case in suite(ws)["cases"]}


@pytest.fixture
def generated(workspace: Workspace) -> Workspace:
    blog(workspace)
    generate(workspace)
    return workspace


# The ids and types generated per component, in file order.
EXPECTED_IDS: dict[str, list[tuple[str, str]]] = {
    "components/admin/dashboard.q": [
        ("#auth", "auth"), ("#action:deletePost:auth", "auth"), ("#query:removePost", "query")],
    "components/api.q": [
        ("#query:allPosts", "query"), ("#query:insertPost", "query"),
        ("#endpoint:/api/posts", "endpoint"), ("#endpoint:POST /api/posts", "endpoint")],
    "components/login.q": [
        ("#page", "smoke"), ("#action:login:valid", "action"), ("#action:login:missing:email", "action"),
        ("#action:login:too_short:password", "action"), ("#action:login:too_long:password", "action"),
        ("#action:login:wrong_type:email", "action"), ("#form:login-form", "form"), ("#query:authUser", "query")],
    "components/posts/index.q": [("#page", "smoke"), ("#query:recentPosts", "query")],
    "components/shared/header.q": [],  # a partial: no route, nothing to request
}

VALID_LOGIN = {"action": "login", "email": "qa@example.com", "password": "qatestva", "username": "qatestva",
               "age": 18, "plan": "free"}

# Full cases (as written to the file) of some elements.
EXPECTED_CASES: dict[str, dict[str, Any]] = {
    "components/login.q#page": {
        "name": "Smoke: LoginPage loads", "type": "smoke", "component": "components/login.q",
        "request": {"method": "GET", "path": "/login"}, "expect": [{"status": 200}, {"no_errors": True}]},
    "components/login.q#action:login:valid": {
        "name": "Action login: valid input", "type": "action", "component": "components/login.q",
        "request": {"method": "POST", "path": "/login", "form": VALID_LOGIN},
        "expect": [{"status": 302}, {"redirect": "/admin"}, {"flash": "Welcome back!"}]},
    "components/login.q#action:login:missing:email": {
        "name": "Action login: missing email", "type": "action", "component": "components/login.q",
        "request": {"method": "POST", "path": "/login",
                    "form": {k: v for k, v in VALID_LOGIN.items() if k != "email"}},
        "expect": [{"status": 302}, {"redirect": "/login"}, {"flash": "Parameter 'email' is required"}]},
    "components/login.q#action:login:too_short:password": {
        "name": "Action login: password too short", "type": "action", "component": "components/login.q",
        "request": {"method": "POST", "path": "/login", "form": {**VALID_LOGIN, "password": "qatestv"}},
        "expect": [{"status": 302}, {"redirect": "/login"}, {"flash": "Parameter 'password'"}]},
    "components/login.q#action:login:wrong_type:email": {
        "name": "Action login: email of the wrong type", "type": "action", "component": "components/login.q",
        "request": {"method": "POST", "path": "/login", "form": {**VALID_LOGIN, "email": "not-an-email"}},
        "expect": [{"status": 302}, {"redirect": "/login"}, {"flash": "Parameter 'email'"}]},
    "components/login.q#form:login-form": {
        "name": "Form login-form: submit its fields", "type": "form", "component": "components/login.q",
        "request": {"method": "POST", "path": "/login",
                    "form": {"action": "login", "email": "qa@example.com", "password": "qatestva"}},
        "expect": [{"status": 302}, {"redirect": "/admin"}, {"flash": "Welcome back!"}]},
    "components/login.q#query:authUser": {
        "name": "Query authUser on blog-db", "type": "query", "component": "components/login.q",
        "request": {"datasource": "blog-db", "sql": "SELECT id, password_hash FROM users WHERE email = :email",
                    "params": {"email": "qa@example.com"}},
        "expect": [{"no_errors": True}]},
    "components/admin/dashboard.q#auth": {
        "name": "Auth: AdminDashboard redirects to /login without a session", "type": "auth",
        "component": "components/admin/dashboard.q", "request": {"method": "GET", "path": "/admin/dashboard"},
        "expect": [{"status": 302}, {"redirect": "/login"}]},
    "components/admin/dashboard.q#action:deletePost:auth": {
        "name": "Auth: action deletePost redirects to /login without a session", "type": "auth",
        "component": "components/admin/dashboard.q", "writes": True,
        "request": {"method": "POST", "path": "/admin/dashboard", "form": {"action": "deletePost"}},
        "expect": [{"status": 302}, {"redirect": "/login"}]},
    "components/api.q#query:insertPost": {
        "name": "Query insertPost on blog-db", "type": "query", "component": "components/api.q", "writes": True,
        "request": {"datasource": "blog-db", "sql": "INSERT INTO posts (title) VALUES (:title)",
                    "params": {"title": "qatestva"}},
        "expect": [{"no_errors": True}]},
    "components/api.q#endpoint:/api/posts": {
        "name": "Endpoint GET /api/posts answers", "type": "endpoint", "component": "components/api.q",
        "request": {"method": "GET", "path": "/api/posts"}, "expect": [{"status": 200}]},
    "components/posts/index.q#page": {
        "name": "Smoke: PostList loads", "type": "smoke", "component": "components/posts/index.q",
        "request": {"method": "GET", "path": "/posts"}, "expect": [{"status": 200}, {"no_errors": True}]},
}

WRITES = {"components/admin/dashboard.q#action:deletePost:auth", "components/admin/dashboard.q#query:removePost",
          "components/api.q#query:insertPost", "components/api.q#endpoint:POST /api/posts"}


def test_the_suite_document(generated: Workspace) -> None:
    data = suite(generated)
    assert data["kind"] == "TestSuite"
    assert data["name"] == "blog-auto"
    assert data["project"] == "blog"
    assert data["environments"] == ["dev", "staging"]  # prod is protected
    assert data["auto_run"] is False
    assert data["block_on_failure"] is True
    assert set(data["generated_from"]) == set(EXPECTED_IDS)


def test_the_ids_and_types_per_component_in_order(generated: Workspace) -> None:
    expected = [(path + element, kind) for path in sorted(EXPECTED_IDS) for element, kind in EXPECTED_IDS[path]]
    assert [(c["id"], c["type"]) for c in suite(generated)["cases"]] == expected
    for case in suite(generated)["cases"]:
        assert case["component"] == case["id"].split("#")[0]


@pytest.mark.parametrize("case_id", sorted(EXPECTED_CASES))
def test_the_exact_case(generated: Workspace, case_id: str) -> None:
    assert cases(generated)[case_id] == {"id": case_id, **EXPECTED_CASES[case_id]}


def test_too_long_is_one_past_the_limit(generated: Workspace) -> None:
    form = cases(generated)["components/login.q#action:login:too_long:password"]["request"]["form"]
    assert len(form["password"]) == 256
    assert {k: v for k, v in form.items() if k != "password"} == {k: v for k, v in VALID_LOGIN.items()
                                                                    if k != "password"}


def test_writes_marks_exactly_the_cases_that_change_data(generated: Workspace) -> None:
    assert {i for i, c in cases(generated).items() if c.get("writes")} == WRITES


def test_ids_and_file_are_stable_across_runs(generated: Workspace) -> None:
    first = (generated.root / SUITE).read_text()
    output = generate(generated)
    assert "0 added, 0 changed, 0 removed, 17 kept" in output
    assert "unchanged: manifests/tests/blog.yaml" in output
    assert (generated.root / SUITE).read_text() == first


def test_qrm_validate_accepts_the_generated_file(generated: Workspace) -> None:
    result = generated.qrm("validate")
    assert result.exit_code == 0, result.output
    assert "1 test suites" in result.output


def test_the_summary_counts_each_type(workspace: Workspace) -> None:
    blog(workspace)
    output = generate(workspace)
    assert "blog-auto: 17 cases: smoke 2, auth 2, action 5, form 1, query 5, endpoint 2" in output
    assert "17 added, 0 changed, 0 removed, 0 kept" in output
    assert "created manifests/tests/blog.yaml" in output


HAND_CASE = """\
  # checked by hand: the health endpoint
  - id: health
    name: Health answers
    type: custom
    request: {method: GET, path: /health}
    expect: [{status: 200}]
"""


def test_regeneration_keeps_hand_work_and_replaces_changed_components(generated: Workspace) -> None:
    path = generated.root / SUITE
    text = path.read_text()
    # A hand edit of a case of an unchanged component, with a comment.
    text = text.replace("    name: 'Smoke: PostList loads'\n",
                        "    name: 'Smoke: the post list'  # renamed by hand\n")
    # A hand-written case, with a comment of its own.
    text = text.replace("cases:\n", "cases:\n" + HAND_CASE, 1)
    # A hand edit of a case of the component that is about to change: replaced.
    text = text.replace("    name: 'Smoke: LoginPage loads'\n", "    name: edited by hand\n")
    path.write_text(text)
    components = generated.root.parent / "blog-app" / "components"
    login = components / "login.q"
    login.write_text(login.read_text().replace('flash="Welcome back!"', 'flash="Hello again"')
                     .replace('<q:validate field="age" type="integer" min_length="1" min="18" max="120" />', ""))
    shutil.rmtree(components / "admin")

    output = generate(generated)
    after = path.read_text()
    assert "# checked by hand: the health endpoint" in after
    assert "# renamed by hand" in after
    found = cases(generated)
    assert found["health"]["type"] == "custom"
    assert next(iter(found)) == "health"  # hand-written cases stay where they were
    assert found["components/posts/index.q#page"]["name"] == "Smoke: the post list"
    assert found["components/login.q#page"]["name"] == "Smoke: LoginPage loads"
    valid = found["components/login.q#action:login:valid"]
    assert valid["expect"][-1] == {"flash": "Hello again"}
    assert "age" not in valid["request"]["form"]
    assert not [i for i in found if i.startswith("components/admin/")]
    assert "components/admin/dashboard.q" not in suite(generated)["generated_from"]
    # login: its page (edited by hand), 5 action cases (age gone) and the form (new flash); admin: 3 removed
    assert "0 added, 7 changed, 3 removed, 7 kept, 1 hand-written kept" in output
    assert generated.qrm("validate").exit_code == 0


def test_a_generated_case_deleted_by_hand_stays_deleted_until_its_component_changes(generated: Workspace) -> None:
    path = generated.root / SUITE
    data = suite(generated)
    kept = [c for c in data["cases"] if c["id"] != "components/posts/index.q#query:recentPosts"]
    path.write_text(yaml.safe_dump({**data, "cases": kept}, sort_keys=False))
    generate(generated)
    assert "components/posts/index.q#query:recentPosts" not in cases(generated)
    posts = generated.root.parent / "blog-app" / "components" / "posts" / "index.q"
    posts.write_text(posts.read_text().replace("<h2>", "<h3>").replace("</h2>", "</h3>"))
    assert "1 added" in generate(generated)
    ids = list(cases(generated))
    assert ids.index("components/posts/index.q#query:recentPosts") == ids.index("components/posts/index.q#page") + 1


def test_a_new_component_gets_its_cases(generated: Workspace) -> None:
    components = generated.root.parent / "blog-app" / "components"
    (components / "about.q").write_text('<q:component name="About" type="page"><p>About</p></q:component>\n')
    output = generate(generated)
    assert "1 added, 0 changed, 0 removed, 17 kept" in output
    ids = list(cases(generated))
    assert ids[ids.index("components/about.q#page") + 1] == "components/admin/dashboard.q#auth"


def test_an_unknown_project_is_an_error(workspace: Workspace) -> None:
    blog(workspace)
    result = workspace.qrm("tests", "generate", "nope")
    assert result.exit_code == 1
    assert "unknown project 'nope'" in result.output


# ------------------------------------------------------------------------------------- pure functions


@pytest.mark.parametrize(("param", "value"), [
    (Param("e", type="email"), "qa@example.com"),
    (Param("u", type="url"), "https://example.com"),
    (Param("n", type="integer", min=18, max=120), 18),
    (Param("n", type="integer", max=0), 0),
    (Param("n", type="integer"), 1),
    (Param("d", type="decimal", min=0.5), 0.5),
    (Param("b", type="boolean"), "true"),
    (Param("p", enum=("free", "pro")), "free"),
    (Param("s", min_length=2, max_length=4), "qate"),
    (Param("s", min_length=12), "qatestvalueq"),
    (Param("s", pattern=r"^\d+$"), "12345678"),
    (Param("s", pattern=r"^[A-Z]+$", max_length=3), "QAT"),
])
def test_valid_values_follow_type_and_limits(param: Param, value: object) -> None:
    assert testgen.valid_value(param) == value


def test_component_from_dict_round_trips() -> None:
    from reconciler.edges import q_components
    from reconciler.flows.scan import plain

    component = q_components.scan_file(FIXTURES / "login.q", "components/login.q", "")
    assert testgen.component_from_dict(plain(component)) == component


def _case(case_id: str, component: str | None = None, kind: str = "smoke", name: str = "x") -> TestCase:
    return TestCase(id=case_id, name=name, type=kind, component=component)  # type: ignore[arg-type]


def test_merge_rules() -> None:
    existing = [_case("a.q#page", "a.q", name="hand edit"), _case("mine"), _case("b.q#page", "b.q"),
                _case("b.q#gone", "b.q"), _case("c.q#page", "c.q"), _case("x.q#custom", kind="custom")]
    generated = [_case("a.q#page", "a.q"), _case("a.q#new", "a.q"), _case("b.q#page", "b.q", name="new"),
                 _case("b.q#added", "b.q")]
    merged = testgen.merge(existing, generated, current={"a.q", "b.q"}, changed={"b.q"},
                           previous={"a.q", "b.q", "c.q"})
    assert [c.id for c in merged.cases] == ["a.q#page", "mine", "b.q#page", "b.q#added", "x.q#custom"]
    assert merged.cases[0].name == "hand edit"
    assert merged.cases[2].name == "new"
    assert merged.origin == (0, 1, None, None, 5)
    assert merged.added == ("b.q#added",)
    assert merged.changed == ("b.q#page",)
    assert merged.removed == ("b.q#gone", "c.q#page")
    assert merged.kept == ("a.q#page",)
    assert merged.hand_written == ("mine", "x.q#custom")


def test_generation_is_deterministic() -> None:
    components = [Component(path="components/z.q", name="Z", route="/z"),
                  Component(path="components/a.q", name="A", route="/a")]
    first = testgen.generate(components)
    assert [c.id for c in first] == ["components/a.q#page", "components/z.q#page"]
    assert testgen.generate(list(reversed(components))) == first


# ------------------------------------------------------------------------- the served folder, skipped queries

def upstream(ws: Workspace, config: bool, datasources: str = "blog-db: {driver: sqlite, database: blog.db}") -> str:
    """Project `blog` (base_path /quantum-blog) on the upstream shape; returns the served folder."""
    ws.manifest("blog.yaml", f"""
        kind: Project
        name: blog
        source: ../blog-app
        base_path: /quantum-blog
        environments:
          dev: {{host: localhost}}
        datasources:
          {datasources}
        """)
    return qapps.write_app(ws.root.parent / "blog-app", config)


UNDECLARED = "datasource '{}' is not declared: add it under the project's datasources"


@pytest.mark.parametrize("config", [False, True], ids=["no-config", "config-serves-src-components"])
def test_not_served_files_get_no_http_case_and_undeclared_datasources_are_skipped(workspace: Workspace,
                                                                                   config: bool) -> None:
    served = upstream(workspace, config)
    output = generate(workspace)
    found = cases(workspace)
    by_component: dict[str, list[str]] = {}
    for case_id, case in found.items():
        by_component.setdefault(case["component"], []).append(case_id.split("#", 1)[1])
    assert by_component == {
        # not served: only their query cases, skipped, since nothing declares their datasources
        "examples/demo.q": ["query:everything"],
        "projects/other-app/components/index.q": ["query:tasks"],
        f"{served}/api.q": ["endpoint:/api/posts"],
        f"{served}/blog/post.q": ["page", "action:comment:valid", "action:comment:missing:body",
                                  "action:comment:too_short:body", "query:comments", "query:addComment"],
        f"{served}/index.q": ["page", "query:recent"],
    }
    assert found[f"{served}/blog/post.q#page"]["request"] == {"method": "GET", "path": "/blog/post"}
    assert found[f"{served}/index.q#page"]["request"] == {"method": "GET", "path": "/"}  # base_path: the runner's
    skips = {case_id: case.get("skip") for case_id, case in found.items() if case["type"] == "query"}
    app_db = None if config else UNDECLARED.format("app-db")  # declared in the app's quantum.config.yaml only
    assert skips == {
        "examples/demo.q#query:everything": UNDECLARED.format("default"),
        "projects/other-app/components/index.q#query:tasks": UNDECLARED.format("tasks-db"),
        f"{served}/blog/post.q#query:comments": app_db, f"{served}/blog/post.q#query:addComment": app_db,
        f"{served}/index.q#query:recent": None,
    }
    assert f"note: 1 query case(s) skipped: {UNDECLARED.format('default')}" in output.splitlines()
    assert workspace.qrm("validate").exit_code == 0


def test_regeneration_removes_http_cases_of_files_that_are_not_served(workspace: Workspace) -> None:
    """A suite generated before the served folder was known (the issue: page cases for examples/) loses them."""
    upstream(workspace, config=False)
    generate(workspace)
    path = workspace.root / SUITE
    stale = ("  - id: examples/demo.q#page\n    name: 'Smoke: Demo loads'\n    type: smoke\n"
             "    component: examples/demo.q\n    request: {method: GET, path: /examples/demo}\n"
             "    expect: [{status: 200}]\n")
    path.write_text(path.read_text().replace("cases:\n", "cases:\n" + stale, 1))
    assert "examples/demo.q#page" in cases(workspace)
    output = generate(workspace)
    assert "examples/demo.q#page" not in cases(workspace)
    assert "examples/demo.q#query:everything" in cases(workspace)
    assert "0 added, 0 changed, 1 removed" in output


def test_declaring_the_datasource_clears_the_skip_on_regeneration(workspace: Workspace) -> None:
    upstream(workspace, config=False)
    generate(workspace)
    path = workspace.root / SUITE
    # a skip reason of the user's own on another case survives everything
    path.write_text(path.read_text().replace(
        "    component: projects/other-app/components/index.q\n",
        "    component: projects/other-app/components/index.q\n    skip: the other team runs it\n"
        "    # kept by hand\n", 1).replace(
        "    skip: \"datasource 'tasks-db' is not declared: add it under the project's datasources\"\n", "", 1))
    assert cases(workspace)["projects/other-app/components/index.q#query:tasks"]["skip"] == "the other team runs it"
    upstream(workspace, config=False, datasources="{blog-db: {driver: sqlite, database: blog.db}, "
                                                  "default: {driver: sqlite, database: demo.db}}")
    generate(workspace)
    found = cases(workspace)
    assert "skip" not in found["examples/demo.q#query:everything"]
    assert found["projects/other-app/components/index.q#query:tasks"]["skip"] == "the other team runs it"
    assert "# kept by hand" in path.read_text()
    upstream(workspace, config=False)  # and removed again: skipped again
    generate(workspace)
    assert cases(workspace)["examples/demo.q#query:everything"]["skip"] == UNDECLARED.format("default")


def test_known_datasources_skip_nothing_when_not_given() -> None:
    component = Component(path="components/a.q", name="A", route="/a",
                          queries=(Query("q", datasource="nowhere", sql="SELECT 1"),))
    def skips(**kwargs: Any) -> list[tuple[str, str | None]]:
        return [(c.type, c.skip) for c in testgen.generate([component], **kwargs)]

    assert skips() == [("smoke", None), ("query", None)]
    assert skips(datasources={"db"}) == [("smoke", None), ("query", UNDECLARED.format("nowhere"))]
    assert skips(datasources={"nowhere"}) == [("smoke", None), ("query", None)]
