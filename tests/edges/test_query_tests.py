"""Query test cases on a real SQLite file: a SELECT with a parameter passes, an unknown column fails with
the database's message, writing SQL is only EXPLAINed, the row limit, the rollback, unsupported drivers (mysql),
and `qrm tests run` with query cases (protected environments, passwords from secrets.enc)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.edges import query_tests, sops
from reconciler.edges.query_tests import run_query, sqlite_engine
from tests.support.workspace import Workspace


def make_db(path: Path, rows: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT NOT NULL, author TEXT)")
        db.executemany("INSERT INTO posts (title, author) VALUES (?, ?)",
                       [(f"post {i}", "qa" if i % 2 else "other") for i in range(rows)])
    db.close()
    return path


def count(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM posts").fetchone()[0])
    finally:
        db.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "data" / "blog.db")


def test_a_select_with_a_parameter_passes(db: Path) -> None:
    done = run_query(sqlite_engine(db), "SELECT id, title FROM posts WHERE author = :author", {"author": "qa"})
    assert done.passed and done.error is None and not done.explained
    assert done.rows == 1 and done.duration_ms > 0


def test_an_unknown_column_fails_with_the_database_message(db: Path) -> None:
    done = run_query(sqlite_engine(db), "SELECT nope FROM posts")
    assert not done.passed
    assert done.error == "no such column: nope"


def test_a_missing_database_file_fails_and_is_not_created(tmp_path: Path) -> None:
    done = run_query(sqlite_engine(tmp_path / "missing.db"), "SELECT 1")
    assert not done.passed and "unable to open" in (done.error or "")
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.parametrize("sql", [
    "INSERT INTO posts (title, author) VALUES (:title, 'qa')",
    "DELETE FROM posts",
    "UPDATE posts SET title = :title",
])
def test_writing_sql_is_explained_and_changes_nothing(db: Path, sql: str) -> None:
    before = count(db)
    done = run_query(sqlite_engine(db), sql, {"title": "qa"})
    assert done.passed and done.explained
    assert count(db) == before


def test_writing_sql_that_does_not_plan_fails(db: Path) -> None:
    done = run_query(sqlite_engine(db), "DELETE FROM nope", writes=True)
    assert not done.passed and done.explained and done.error == "no such table: nope"


def test_the_row_limit(tmp_path: Path) -> None:
    db = make_db(tmp_path / "big.db", rows=250)
    done = run_query(sqlite_engine(db), "SELECT * FROM posts")
    assert done.passed and done.rows == query_tests.ROW_LIMIT and done.truncated
    small = run_query(sqlite_engine(db), "SELECT * FROM posts", row_limit=300)
    assert small.rows == 250 and not small.truncated


def test_the_transaction_is_rolled_back(db: Path) -> None:
    """A writing statement that nothing recognises (a CTE) on a writable connection: it executes, and
    the rollback undoes it. (Datasources are opened read-only, where it would fail instead.)"""
    sql = "WITH gone AS (SELECT id FROM posts) DELETE FROM posts WHERE id IN (SELECT id FROM gone)"
    before = count(db)
    done = run_query(sqlite_engine(db, read_only=False), sql)
    assert done.passed and not done.explained
    assert count(db) == before
    read_only = run_query(sqlite_engine(db), sql)
    assert not read_only.passed and "readonly" in (read_only.error or "")
    assert count(db) == before


def test_the_password_is_masked_in_messages(db: Path) -> None:
    done = run_query(sqlite_engine(db), "SELECT 'hunter2' FROM nope WHERE x = 'hunter2'", secret="nope")
    assert not done.passed and "nope" not in (done.error or "") and query_tests.MASK in (done.error or "")


def test_mysql_is_not_supported_yet(tmp_path: Path) -> None:
    with pytest.raises(query_tests.UnsupportedDatasource, match="not supported yet"):
        query_tests.datasource_engine("mysql", "blog", tmp_path)


def test_relative_sqlite_paths_are_relative_to_the_workspace(tmp_path: Path) -> None:
    assert query_tests.sqlite_path("data/blog.db", tmp_path) == tmp_path / "data" / "blog.db"
    assert query_tests.sqlite_path("/srv/blog.db", tmp_path) == Path("/srv/blog.db")


# --- through `qrm tests run` ------------------------------------------------------------------------

def query_case(id: str, sql: str, datasource: str = "blog", writes: bool = False, **params: Any) -> dict[str, Any]:
    case: dict[str, Any] = {"id": id, "name": id, "type": "query",
                            "request": {"datasource": datasource, "sql": sql, "params": params},
                            "expect": [{"no_errors": True}]}
    if writes:
        case["writes"] = True
    return case


def manifests(datasources: dict[str, Any], cases: list[dict[str, Any]]) -> str:
    project = {"kind": "Project", "name": "blog", "datasources": datasources,
               "environments": {"dev": {"url": "http://127.0.0.1:9"},
                                "prod": {"url": "http://127.0.0.1:9", "protected": True}}}
    suite = {"kind": "TestSuite", "name": "blog-queries", "project": "blog", "block_on_failure": True,
             "environments": ["dev", "prod"], "cases": cases}
    return yaml.safe_dump(project) + "---\n" + yaml.safe_dump(suite)


def results(workspace: Workspace, env: str) -> dict[str, dict[str, Any]]:
    report = yaml.safe_load((workspace.root / "reports" / "tests" / "blog-queries" / f"{env}.yaml").read_text())
    return {r["id"]: r for r in report["results"]}


def test_tests_run_runs_query_cases(workspace: Workspace) -> None:
    db = make_db(workspace.root / "data" / "blog.db")
    workspace.manifest("blog.yaml", manifests({"blog": {"driver": "sqlite", "database": "data/blog.db"},
                                               "pg": {"driver": "postgresql", "database": "blog"}}, [
        query_case("by-author", "SELECT * FROM posts WHERE author = :author AND id > :n", author="qa", n=0),
        query_case("broken", "SELECT nope FROM posts"),
        query_case("insert", "INSERT INTO posts (title) VALUES (:title)", writes=True, title="qa"),
        query_case("postgres", "SELECT 1", datasource="pg"),
        query_case("unknown", "SELECT 1", datasource="nope"),
    ]))
    before = count(db)
    result = workspace.qrm("tests", "run", "blog-queries")
    assert result.exit_code == 3, result.output  # block_on_failure and a failed case
    assert count(db) == before
    dev, prod = results(workspace, "dev"), results(workspace, "prod")
    assert dev["by-author"]["outcome"] == "passed" and dev["by-author"]["duration_ms"] > 0
    assert (dev["broken"]["outcome"], dev["broken"]["reason"]) == ("failed", "no such column: nope")
    assert dev["insert"]["outcome"] == "passed"
    assert prod["insert"]["outcome"] == "skipped" and "protected" in prod["insert"]["reason"]
    assert dev["postgres"]["outcome"] == "error" and "needs a service" in dev["postgres"]["reason"]
    assert (dev["unknown"]["outcome"], dev["unknown"]["reason"]) == (
        "error", "datasource 'nope' is not declared: add it under the project's datasources (declared: blog, pg)")


def with_password_secret(workspace: Workspace, monkeypatch: pytest.MonkeyPatch, sql: str) -> None:
    """A sqlite datasource with `password: secret:DB_PASSWORD`, the secret set with a real age key."""
    make_db(workspace.root / "blog.db")
    identity, recipient = sops.generate_identity()
    key = workspace.root.parent / "age" / "keys.txt"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text(f"{identity}\n")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key))
    workspace.write(".sops.yaml", f"creation_rules:\n  - path_regex: secrets\\.enc$\n    age: {recipient}\n")
    workspace.manifest("blog.yaml", manifests({
        "blog": {"driver": "sqlite", "database": "blog.db", "username": "qa", "password": "secret:DB_PASSWORD"},
        "open": {"driver": "sqlite", "database": "blog.db"},
    }, [query_case("locked", sql), query_case("free", "SELECT 1", datasource="open")]))
    done = workspace.qrm("secrets", "set", "DB_PASSWORD", input="hunter2-pw\n")
    assert done.exit_code == 0, done.output


def test_a_password_without_an_age_key_is_an_error_of_that_case(workspace: Workspace,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with_password_secret(workspace, monkeypatch, "SELECT 1")
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    result = workspace.qrm("tests", "run", "blog-queries", "--env", "dev")
    assert result.exit_code == 3, result.output
    dev = results(workspace, "dev")
    assert dev["free"]["outcome"] == "passed"
    assert dev["locked"]["outcome"] == "error" and "no age key" in dev["locked"]["reason"]


def test_a_password_is_decrypted_with_the_age_key(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    with_password_secret(workspace, monkeypatch, "SELECT 'hunter2-pw' AS x FROM nope")
    result = workspace.qrm("tests", "run", "blog-queries", "--env", "dev")
    assert result.exit_code == 3, result.output
    dev = results(workspace, "dev")
    assert dev["free"]["outcome"] == "passed"
    assert dev["locked"]["outcome"] == "failed" and dev["locked"]["reason"] == "no such table: nope"
    assert "hunter2-pw" not in (workspace.root / "reports" / "tests" / "blog-queries" / "dev.yaml").read_text()


# --- datasources of the app's own quantum.config.yaml ------------------------------------------------

APP_CONFIG = """\
datasources:
  app-db:
    driver: ${DB_DRIVER:sqlite}
    database: ./data/app.db
  half:
    driver: postgresql
    database: shop
    host: ${DB_HOST}
"""


def app_project(workspace: Workspace, config: str, cases: list[dict[str, Any]]) -> Path:
    """Project `blog` whose source folder ../app holds `config` as its quantum.config.yaml."""
    app = workspace.root.parent / "app"
    app.mkdir(parents=True, exist_ok=True)
    (app / "quantum.config.yaml").write_text(config)
    document = manifests({"blog": {"driver": "sqlite", "database": "data/blog.db"}}, cases)
    workspace.manifest("blog.yaml", document.replace("kind: Project\n", "kind: Project\nsource: ../app\n", 1))
    return app


def test_a_datasource_of_the_app_config_runs_and_one_declared_nowhere_is_named(workspace: Workspace) -> None:
    app = app_project(workspace, APP_CONFIG, [
        query_case("app", "SELECT title FROM posts WHERE author = :author", datasource="app-db", author="qa"),
        query_case("half", "SELECT 1", datasource="half"),
        query_case("nowhere", "SELECT 1", datasource="default"),
        {**query_case("skipped", "SELECT 1", datasource="default"),
         "skip": "datasource 'default' is not declared: add it under the project's datasources"},
    ])
    make_db(app / "data" / "app.db")  # relative to the app's folder, where the server runs
    result = workspace.qrm("tests", "run", "blog-queries", "--env", "dev")
    assert result.exit_code == 3, result.output
    dev = results(workspace, "dev")
    assert dev["app"]["outcome"] == "passed", dev["app"]
    assert (dev["half"]["outcome"], dev["half"]["reason"]) == (
        "error", "datasource 'half' of ../app/quantum.config.yaml: its connection details are incomplete (host, "
                 "port missing, or only ${VAR} without a default); give them there, or declare the datasource "
                 "under the project's datasources")
    assert (dev["nowhere"]["outcome"], dev["nowhere"]["reason"]) == (
        "error", "datasource 'default' is not declared: add it under the project's datasources "
                 "(declared: app-db, blog, half)")
    assert (dev["skipped"]["outcome"], dev["skipped"]["reason"]) == (
        "skipped", "datasource 'default' is not declared: add it under the project's datasources")


def test_a_malformed_app_config_is_an_error_of_the_cases_that_need_it(workspace: Workspace) -> None:
    make_db(workspace.root / "data" / "blog.db")
    app_project(workspace, "datasources:\n  app-db:\n    driver: sqlite\n    port: many\n", [
        query_case("own", "SELECT 1"), query_case("app", "SELECT 1", datasource="app-db")])
    result = workspace.qrm("tests", "run", "blog-queries", "--env", "dev")
    assert result.exit_code == 3, result.output
    dev = results(workspace, "dev")
    assert dev["own"]["outcome"] == "passed"  # the Project's datasource does not need the file
    assert (dev["app"]["outcome"], dev["app"]["reason"]) == (
        "error", "datasource 'app-db' is not in the project's datasources, and ../app/quantum.config.yaml:4:5: "
                 "datasources.app-db.port: must be a port number (1-65535), not 'many'")
