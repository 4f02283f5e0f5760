"""Query test cases on a real PostgreSQL server (the session's server of tests/support/pgserver.py, on a free
port of 127.0.0.1): a SELECT with a parameter passes, an unknown column fails with the database's
message and never the password, writing SQL is only EXPLAINed and the rows stay unchanged, the
transaction is READ ONLY, and `qrm tests run` with a postgresql datasource whose service is pinned to
the server's port and whose password is a secret.

A missing PostgreSQL fails the tests (scripts/setup-interop installs Debian's `postgresql`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from reconciler.edges import query_tests, sops
from reconciler.edges.query_tests import postgres_engine, run_query
from tests.support.pgserver import PgServer
from tests.support.workspace import Workspace

USER, PASSWORD, DATABASE = "qa", "s3cret:pw@/?", "blog"


@dataclass(frozen=True)
class Server:
    port: int


@pytest.fixture(scope="module")
def postgres(pg_server: PgServer) -> Iterator[Server]:
    """The session's server with a role `qa` and a database `blog` of 250 posts, for this module."""
    pg_server.psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
    pg_server.psql(f"CREATE DATABASE {DATABASE} OWNER {USER}")
    try:
        pg_server.psql("CREATE TABLE posts (id serial PRIMARY KEY, title text NOT NULL, author text); "
                       "INSERT INTO posts (title, author) SELECT 'post ' || i, "
                       "CASE WHEN i % 2 = 1 THEN 'qa' ELSE 'other' END "
                       f"FROM generate_series(0, 249) AS i; ALTER TABLE posts OWNER TO {USER}", DATABASE)
        yield Server(pg_server.port)
    finally:
        pg_server.drop_database(DATABASE)
        pg_server.psql(f"DROP ROLE IF EXISTS {USER}")


def engine(server: Server, password: str = PASSWORD) -> Any:
    return postgres_engine("127.0.0.1", server.port, DATABASE, USER, password)


def count(server: Server) -> int:
    with engine(server).connect() as connection:
        return int(connection.exec_driver_sql("SELECT count(*) FROM posts").scalar_one())


def test_a_select_with_a_parameter_passes(postgres: Server) -> None:
    done = run_query(engine(postgres), "SELECT id, title FROM posts WHERE author = :author AND id < :n",
                     {"author": "qa", "n": 10}, secret=PASSWORD)
    assert done.passed and done.error is None and not done.explained
    assert done.rows == 4 and not done.truncated  # ids 2, 4, 6, 8


def test_the_row_limit(postgres: Server) -> None:
    done = run_query(engine(postgres), "SELECT * FROM posts")
    assert done.passed and done.rows == query_tests.ROW_LIMIT and done.truncated


def test_an_unknown_column_fails_with_the_database_message(postgres: Server) -> None:
    done = run_query(engine(postgres), f"SELECT nope FROM posts WHERE title = '{PASSWORD}'", secret=PASSWORD)
    assert not done.passed
    assert done.error is not None and 'column "nope" does not exist' in done.error
    assert PASSWORD not in done.error


def test_a_wrong_password_fails_without_the_password(postgres: Server) -> None:
    done = run_query(engine(postgres, "wrong-pw"), "SELECT 1", secret="wrong-pw")
    assert not done.passed and "password authentication failed" in (done.error or "")
    assert "wrong-pw" not in (done.error or "")


@pytest.mark.parametrize("sql", [
    "INSERT INTO posts (title, author) VALUES (:title, 'qa')",
    "DELETE FROM posts",
    "UPDATE posts SET title = :title",
])
def test_writing_sql_is_explained_and_changes_nothing(postgres: Server, sql: str) -> None:
    before = count(postgres)
    done = run_query(engine(postgres), sql, {"title": "qa"})
    assert done.passed and done.explained, done.error
    assert count(postgres) == before


def test_writing_sql_that_does_not_plan_fails(postgres: Server) -> None:
    done = run_query(engine(postgres), "DELETE FROM nope", writes=True)
    assert not done.passed and done.explained and 'relation "nope" does not exist' in (done.error or "")


def test_the_transaction_is_read_only(postgres: Server) -> None:
    """A writing statement that nothing recognises (a CTE): the READ ONLY transaction refuses it."""
    before = count(postgres)
    done = run_query(engine(postgres), "WITH gone AS (DELETE FROM posts RETURNING id) SELECT count(*) FROM gone")
    assert not done.passed and not done.explained and "read-only transaction" in (done.error or "")
    assert count(postgres) == before


def test_the_url_quotes_the_password() -> None:
    url = query_tests.postgres_url("db.example", 5432, "blog", "qa", "a:b@c/d")
    assert url == "postgresql+psycopg://qa:a%3Ab%40c%2Fd@db.example:5432/blog"


# --- through `qrm tests run` ------------------------------------------------------------------------

def test_tests_run_on_a_postgresql_datasource(workspace: Workspace, monkeypatch: pytest.MonkeyPatch,
                                              postgres: Server) -> None:
    identity, recipient = sops.generate_identity()
    key = workspace.root.parent / "age" / "keys.txt"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text(f"{identity}\n")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key))
    workspace.write(".sops.yaml", f"creation_rules:\n  - path_regex: secrets\\.enc$\n    age: {recipient}\n")

    def case(id: str, sql: str, writes: bool = False, **params: Any) -> dict[str, Any]:
        return {"id": id, "name": id, "type": "query", "writes": writes,
                "request": {"datasource": "main", "sql": sql, "params": params}, "expect": [{"no_errors": True}]}

    project = {"kind": "Project", "name": "blog", "services": {"db": {"type": "database"}},
               "datasources": {"main": {"driver": "postgresql", "service": "db", "database": DATABASE,
                                        "username": USER, "password": "secret:DB_PASSWORD"}},
               "environments": {"dev": {"url": "http://127.0.0.1:9", "ports": {"db": postgres.port}}}}
    suite = {"kind": "TestSuite", "name": "blog-queries", "project": "blog", "block_on_failure": True,
             "environments": ["dev"], "cases": [
                 case("by-author", "SELECT * FROM posts WHERE author = :author AND id > :n", author="qa", n=0),
                 case("broken", "SELECT nope FROM posts"),
                 case("delete", "DELETE FROM posts WHERE id > :n", writes=True, n=0),
             ]}
    workspace.manifest("blog.yaml", yaml.safe_dump(project) + "---\n" + yaml.safe_dump(suite))
    done = workspace.qrm("secrets", "set", "DB_PASSWORD", input=f"{PASSWORD}\n")
    assert done.exit_code == 0, done.output
    before = count(postgres)
    result = workspace.qrm("tests", "run", "blog-queries", "--env", "dev")
    assert result.exit_code == 3, result.output  # block_on_failure and a failed case
    assert count(postgres) == before
    report_file = workspace.root / "reports" / "tests" / "blog-queries" / "dev.yaml"
    dev = {r["id"]: r for r in yaml.safe_load(report_file.read_text())["results"]}
    assert dev["by-author"]["outcome"] == "passed", dev["by-author"]
    assert dev["broken"]["outcome"] == "failed" and 'column "nope" does not exist' in dev["broken"]["reason"]
    assert dev["delete"]["outcome"] == "passed", dev["delete"]
    assert PASSWORD not in report_file.read_text() and PASSWORD not in result.output


def test_tests_run_on_a_datasource_of_the_app_config(workspace: Workspace, monkeypatch: pytest.MonkeyPatch,
                                                      postgres: Server) -> None:
    """quantum.config.yaml declares the connection; the password comes from secrets.enc only: the secret its
    ${VAR} names (its default, a plaintext password, is never used), or DATASOURCE_<NAME>_PASSWORD."""
    identity, recipient = sops.generate_identity()
    key = workspace.root.parent / "age" / "keys.txt"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text(f"{identity}\n")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key))
    workspace.write(".sops.yaml", f"creation_rules:\n  - path_regex: secrets\\.enc$\n    age: {recipient}\n")
    app = workspace.root.parent / "app"
    app.mkdir()
    (app / "quantum.config.yaml").write_text(f"""\
datasources:
  main:
    driver: postgresql
    host: ${{DB_HOST:127.0.0.1}}
    port: ${{DB_PORT:{postgres.port}}}
    database: {DATABASE}
    username: {USER}
    password: ${{DB_PASSWORD:plaintext-default}}
  second: {{driver: postgres, host: 127.0.0.1, port: {postgres.port}, database: {DATABASE}, user: {USER},
           password: written-in-the-file}}
""")

    def case(id: str, datasource: str) -> dict[str, Any]:
        return {"id": id, "name": id, "type": "query", "expect": [{"no_errors": True}],
                "request": {"datasource": datasource, "sql": "SELECT count(*) FROM posts"}}

    project = {"kind": "Project", "name": "blog", "source": "../app",
               "environments": {"dev": {"url": "http://127.0.0.1:9"}}}
    suite = {"kind": "TestSuite", "name": "blog-queries", "project": "blog", "environments": ["dev"],
             "cases": [case("main", "main"), case("second", "second")]}
    workspace.manifest("blog.yaml", yaml.safe_dump(project) + "---\n" + yaml.safe_dump(suite))
    assert workspace.qrm("secrets", "set", "DB_PASSWORD", "--project", "blog", input=f"{PASSWORD}\n").exit_code == 0
    report_file = workspace.root / "reports" / "tests" / "blog-queries" / "dev.yaml"

    def run() -> dict[str, dict[str, Any]]:
        result = workspace.qrm("tests", "run", "blog-queries")
        for text in (result.output, report_file.read_text()):
            assert PASSWORD not in text and "written-in-the-file" not in text and "plaintext-default" not in text
        return {r["id"]: r for r in yaml.safe_load(report_file.read_text())["results"]}

    dev = run()
    assert dev["main"]["outcome"] == "passed", dev["main"]
    assert (dev["second"]["outcome"], dev["second"]["reason"]) == (
        "error", "datasource 'second' needs secret DATASOURCE_SECOND_PASSWORD, which is not set for blog/dev "
                 "(qrm secrets set DATASOURCE_SECOND_PASSWORD --project blog); a password in quantum.config.yaml "
                 "is never read")
    assert workspace.qrm("secrets", "set", "DATASOURCE_SECOND_PASSWORD", input=f"{PASSWORD}\n").exit_code == 0
    assert run()["second"]["outcome"] == "passed"
