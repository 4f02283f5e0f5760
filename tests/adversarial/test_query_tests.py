"""Query tests that try to write (issue 15, item 14): SQL in a test suite runs read-only, and no statement opens,
creates or writes a file. On SQLite, `ATTACH DATABASE` opened (and created) any file read-write despite the
main file's `mode=ro`; it is refused by an authorizer when the statement is prepared, with a clear case error.
On PostgreSQL, the READ ONLY transaction is the guard: a statement list cannot end it and write after it, and
COPY ... TO a server file is refused.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.edges.query_tests import postgres_engine, run_query, sqlite_engine
from tests.support.pgserver import PgServer
from tests.support.workspace import Workspace

REFUSED = "not authorized: a query test may not use ATTACH DATABASE (it could open or write files)"


def make_db(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as connection:
        connection.executescript("CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT); "
                                 "INSERT INTO posts (title) VALUES ('hello');")
    connection.close()
    return path


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.mark.parametrize(("sql", "writes"), [
    ("ATTACH DATABASE '{evil}' AS evil", False),
    ("attach '{evil}' as evil", False),
    ("/* a comment first */ ATTACH '{evil}' AS evil", False),
    ("ATTACH 'file:{evil}?mode=rwc' AS evil", False),  # a URI filename asking for read-write-create
    ("ATTACH '{evil}' AS evil", True),  # only EXPLAINed: the authorizer refuses it when it is prepared
], ids=["attach", "lower-case", "after-a-comment", "uri-mode-rwc", "explained"])
def test_attach_is_refused_and_creates_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sql: str,
                                               writes: bool) -> None:
    db = make_db(tmp_path / "data" / "blog.db")
    monkeypatch.chdir(tmp_path)  # a relative ATTACH path would land here
    before = files_under(tmp_path)
    done = run_query(sqlite_engine(db), sql.format(evil=tmp_path / "evil.db"), writes=writes)
    assert (done.passed, done.error) == (False, REFUSED)
    assert files_under(tmp_path) == before


def test_a_refusal_is_not_remembered_for_the_next_query(tmp_path: Path) -> None:
    db = make_db(tmp_path / "blog.db")
    assert run_query(sqlite_engine(db), f"ATTACH '{tmp_path / 'evil.db'}' AS evil").error == REFUSED
    broken = run_query(sqlite_engine(db), "SELECT nope FROM posts")
    assert broken.error == "no such column: nope"
    assert run_query(sqlite_engine(db), "SELECT title FROM posts").passed


def test_extension_loading_is_refused(tmp_path: Path) -> None:
    done = run_query(sqlite_engine(make_db(tmp_path / "blog.db")), "SELECT load_extension('/tmp/evil.so')")
    assert done.error == "not authorized: a query test may not use the function load_extension() (it could open " \
                         "or write files)"


def test_tests_run_reports_an_attach_as_a_case_error_and_writes_no_file(workspace: Workspace,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    make_db(workspace.root / "data" / "blog.db")
    monkeypatch.chdir(workspace.root)
    cases = [{"id": "attach", "name": "attach", "type": "query", "expect": [{"no_errors": True}],
              "request": {"datasource": "blog", "sql": "ATTACH DATABASE 'data/evil.db' AS evil"}},
             {"id": "select", "name": "select", "type": "query", "expect": [{"no_errors": True}],
              "request": {"datasource": "blog", "sql": "SELECT title FROM posts"}}]
    project = {"kind": "Project", "name": "blog", "datasources": {"blog": {"driver": "sqlite",
                                                                          "database": "data/blog.db"}},
               "environments": {"dev": {"url": "http://127.0.0.1:9"}}}
    suite = {"kind": "TestSuite", "name": "blog-queries", "project": "blog", "block_on_failure": True,
             "cases": cases}
    workspace.manifest("blog.yaml", yaml.safe_dump(project) + "---\n" + yaml.safe_dump(suite))
    result = workspace.qrm("tests", "run", "blog-queries")
    assert result.exit_code == 3, result.output
    report = yaml.safe_load((workspace.root / "reports" / "tests" / "blog-queries" / "dev.yaml").read_text())
    outcomes = {r["id"]: (r["outcome"], r.get("reason", "")) for r in report["results"]}
    assert outcomes == {"attach": ("error", REFUSED), "select": ("passed", "")}
    assert not (workspace.root / "data" / "evil.db").exists()
    assert sorted(p.name for p in (workspace.root / "data").iterdir()) == ["blog.db"]


# --- PostgreSQL -----------------------------------------------------------------------------------

SUPERUSER, SUPER_PASSWORD = "hostile_super", "super-pw"


@pytest.fixture(scope="module")
def blog(pg_server: PgServer) -> Iterator[PgServer]:
    """A database whose table the server's login role owns (it may write it, outside a READ ONLY transaction),
    and a superuser role, which may also write server files."""
    pg_server.psql(f"CREATE DATABASE hostile_blog OWNER {pg_server.role}")
    pg_server.psql("CREATE TABLE posts (id serial PRIMARY KEY, title text); INSERT INTO posts (title) VALUES ('a'); "
                   f"ALTER TABLE posts OWNER TO {pg_server.role}", "hostile_blog")
    pg_server.psql(f"CREATE ROLE {SUPERUSER} LOGIN SUPERUSER PASSWORD '{SUPER_PASSWORD}'")
    try:
        yield pg_server
    finally:
        pg_server.drop_database("hostile_blog")
        pg_server.psql(f"DROP ROLE IF EXISTS {SUPERUSER}")


def pg_engine(server: PgServer, superuser: bool = False) -> Any:
    if superuser:
        return postgres_engine("127.0.0.1", server.port, "hostile_blog", SUPERUSER, SUPER_PASSWORD)
    return postgres_engine("127.0.0.1", server.port, "hostile_blog", server.role, server.password)


def count(server: PgServer) -> int:
    with pg_engine(server).connect() as connection:
        return int(connection.exec_driver_sql("SELECT count(*) FROM posts").scalar_one())


@pytest.mark.parametrize("sql", [
    "SELECT 1; COMMIT; DELETE FROM posts",
    "SELECT 1; ROLLBACK; DELETE FROM posts",
    "SELECT 1; SET TRANSACTION READ WRITE; DELETE FROM posts",
], ids=["commit", "rollback", "read-write"])
def test_a_statement_list_cannot_leave_the_read_only_transaction(blog: PgServer, sql: str) -> None:
    before = count(blog)
    done = run_query(pg_engine(blog), sql)
    assert (done.passed, done.error) == (False, "cannot insert multiple commands into a prepared statement")
    assert count(blog) == before


@pytest.mark.parametrize("superuser", [False, True], ids=["login-role", "superuser"])
@pytest.mark.parametrize("sql", [
    "COPY (SELECT 1) TO '{target}'",
    "SELECT lo_export(lo_from_bytea(0, 'x'), '{target}')",
    "DO $$ BEGIN EXECUTE 'COPY (SELECT 1) TO ''{target}'''; END $$",
], ids=["copy-to", "lo-export", "do-block"])
def test_no_statement_writes_a_server_file(blog: PgServer, sql: str, superuser: bool) -> None:
    """A READ ONLY transaction lets a superuser COPY ... TO a file: such a role runs no query test at all."""
    folder = Path(tempfile.mkdtemp(prefix="qrm-pg-"))  # the server's system user may write here
    folder.chmod(0o777)
    target = folder / "leak.csv"
    try:
        done = run_query(pg_engine(blog, superuser), sql.format(target=target))
        assert not done.passed
        assert not target.exists()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if superuser:
        assert done.refused and done.error == (
            f"the datasource's role '{SUPERUSER}' is a superuser: it could write files on the server even in a "
            "read-only transaction (COPY ... TO), so query tests do not run as it; give the datasource a role "
            "without those rights")


def test_a_role_that_may_write_server_files_runs_no_query(blog: PgServer) -> None:
    blog.psql(f"GRANT pg_write_server_files TO {blog.role}")
    try:
        done = run_query(pg_engine(blog), "SELECT 1")
    finally:
        blog.psql(f"REVOKE pg_write_server_files FROM {blog.role}")
    assert done.refused and done.error is not None
    assert done.error.startswith(f"the datasource's role '{blog.role}' is a member of pg_write_server_files:")
    assert run_query(pg_engine(blog), "SELECT 1").passed  # without the right, the same role runs it
