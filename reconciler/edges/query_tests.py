"""Runs query test cases on a datasource (the query-test edge, SQLAlchemy).

A query case passes when its SQL executes. Nothing is ever changed:

- the statement runs inside a transaction that is always rolled back (on PostgreSQL a READ ONLY one);
- SQL that writes (the case says `writes`, or components.query_writes recognises the statement) is not
  run at all: EXPLAIN QUERY PLAN (SQLite) or EXPLAIN (PostgreSQL) prepares and plans it, which catches
  unknown tables and columns and syntax errors;
- SQLite files are opened read-only (`mode=ro`), so a writing statement that slipped past both rules
  fails instead of writing, and a missing database file is an error instead of a new empty file;
- at most ROW_LIMIT rows are fetched (fetchmany: the SQL is not rewritten).

Drivers: sqlite (the database path relative to the workspace, or absolute); postgresql (psycopg 3,
`postgresql+psycopg://user:password@host:port/database`, connect timeout 5 s; the transaction is
`SET TRANSACTION READ ONLY` before the statement runs, writing SQL is EXPLAINed). mysql is not
supported yet: a case on such a datasource is an error that says so (no code path runs untested).
Error messages are the database's own, with the password (if one was given) masked; a connection URL
is never part of a message.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from reconciler.core.components import query_writes

ROW_LIMIT = 100
SQLITE_BUSY_TIMEOUT = 5.0
SUPPORTED_DRIVERS = ("sqlite", "postgresql")
CONNECT_TIMEOUT = 5  # seconds
MASK = "***"


class UnsupportedDatasource(ValueError):
    """The datasource cannot be connected to by this version (driver not supported yet)."""


@dataclass(frozen=True)
class QueryResult:
    passed: bool
    duration_ms: float
    error: str | None = None  # the database's message when the SQL did not execute
    rows: int = 0  # rows fetched (at most the row limit)
    truncated: bool = False  # more rows than the limit
    explained: bool = False  # a writing statement: only EXPLAINed
    connected: bool = True  # False: the datasource refused or could not be reached (no SQL ran)
    refused: bool = False  # not run: SQL that could open or write files (ATTACH), or a role that could write files


def sqlite_path(database: str, root: Path) -> Path:
    """A SQLite datasource's file: absolute, or relative to the workspace root."""
    path = Path(database).expanduser()
    return path if path.is_absolute() else root / path


# What SQL in a query test may never do on SQLite, whatever the read-only mode of the main file: ATTACH opens
# (and creates) any other file, read-write, even on a connection opened with mode=ro. (VACUUM INTO, which writes
# a file too, cannot run inside the transaction every query runs in.)
_DENIED = {sqlite3.SQLITE_ATTACH: "ATTACH DATABASE", sqlite3.SQLITE_DETACH: "DETACH DATABASE"}
_denials = threading.local()  # what the authorizer refused last, on this thread (a query runs on one thread)


def _authorize(action: int, arg1: str | None, arg2: str | None, database: str | None, trigger: str | None) -> int:
    if action in _DENIED:
        _denials.last = _DENIED[action]
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
        _denials.last = f"the function {arg2}()"
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


_DENIED_FUNCTIONS = frozenset({"load_extension", "writefile", "readfile", "edit", "fts3_tokenizer"})


def _denied() -> str | None:
    """What the authorizer refused since the last call, on this thread."""
    found: str | None = getattr(_denials, "last", None)
    _denials.last = None
    return found


def sqlite_engine(path: Path, *, read_only: bool = True) -> Engine:
    """An engine on one SQLite file (read-only by default: `mode=ro`, never creates the file; no ATTACH, so no
    other file is opened or created either)."""
    uri = path.resolve().as_uri() + ("?mode=ro" if read_only else "?mode=rw")

    def connect() -> sqlite3.Connection:
        # isolation_level=None: the sqlite3 module opens no transactions of its own (it would not for
        # every writing statement, e.g. WITH ... DELETE); the `begin` listener below opens a real one.
        connection = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT, check_same_thread=False,
                                     isolation_level=None)
        if read_only:
            connection.set_authorizer(_authorize)  # checked when a statement is prepared: EXPLAIN of one too
            connection.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)  # and were ATTACH authorized: no slot for it
        return connection

    engine = sqlalchemy.create_engine("sqlite://", creator=connect, poolclass=NullPool)

    @sqlalchemy.event.listens_for(engine, "begin")
    def begin(connection: sqlalchemy.Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


def postgres_url(host: str, port: int, database: str, username: str | None, password: str | None) -> str:
    """postgresql+psycopg://user:password@host:port/database, user and password URL-quoted."""
    user = quote(username or "", safe="")
    if password:
        user += ":" + quote(password, safe="")
    return f"postgresql+psycopg://{user}{'@' if user else ''}{host}:{port}/{quote(database, safe='')}"


def postgres_engine(host: str, port: int, database: str, username: str | None = None,
                    password: str | None = None) -> Engine:
    """An engine on one PostgreSQL database (psycopg 3); the transaction is made READ ONLY in run_query."""
    # prepare_threshold 0: every statement is prepared (the extended protocol), which takes one statement only, so
    # `SELECT 1; COMMIT; DELETE ...` cannot end the READ ONLY transaction and write after it.
    return sqlalchemy.create_engine(postgres_url(host, port, database, username, password), poolclass=NullPool,
                                    connect_args={"connect_timeout": CONNECT_TIMEOUT, "prepare_threshold": 0})


def datasource_engine(driver: str, database: str, root: Path, *, host: str | None = None, port: int | None = None,
                      username: str | None = None, password: str | None = None) -> Engine:
    """The engine for a project datasource; UnsupportedDatasource for drivers not supported yet."""
    if driver == "sqlite":
        return sqlite_engine(sqlite_path(database, root))
    if driver == "postgresql":
        if host is None or port is None:
            raise UnsupportedDatasource("a postgresql datasource needs the host and port of its service")
        return postgres_engine(host, port, database, username, password)
    raise UnsupportedDatasource(f"query tests on {driver} datasources are not supported yet "
                                f"(supported: {', '.join(SUPPORTED_DRIVERS)})")


def _explain(dialect: str, sql: str) -> str:
    return ("EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN ") + sql


def _message(exc: BaseException, secret: str | None) -> str:
    """The database's own message (not SQLAlchemy's wrapper with the statement), password masked."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    message = text[0] if text else type(exc).__name__
    if secret:
        message = message.replace(secret, MASK)
    return message


# A role that may write server files or run programs: a READ ONLY transaction still lets it COPY ... TO a file
# (or TO PROGRAM) and lo_export().
_FILE_WRITING_ROLE = """
SELECT current_user, rolsuper,
       pg_has_role(current_user, 'pg_write_server_files', 'USAGE'),
       pg_has_role(current_user, 'pg_execute_server_program', 'USAGE')
FROM pg_roles WHERE rolname = current_user
"""


def _file_writing_role(connection: sqlalchemy.Connection) -> str | None:
    """Why the connection's PostgreSQL role may not run query tests, or None."""
    row = connection.exec_driver_sql(_FILE_WRITING_ROLE).first()
    if row is None:
        return None
    name, superuser, writes_files, runs_programs = row
    rights = ["a superuser"] if superuser else [  # a superuser has every role's rights: its own name says it
        r for r, held in (("a member of pg_write_server_files", writes_files),
                          ("a member of pg_execute_server_program", runs_programs)) if held]
    if not rights:
        return None
    return (f"the datasource's role {name!r} is {' and '.join(rights)}: it could write files on the server even in a "
            "read-only transaction (COPY ... TO), so query tests do not run as it; give the datasource a role "
            "without those rights")


def run_query(engine: Engine, sql: str, params: Mapping[str, Any] | None = None, *, writes: bool = False,
              row_limit: int = ROW_LIMIT, secret: str | None = None) -> QueryResult:
    """Run one query case's SQL in a transaction that is rolled back; EXPLAIN it when it writes."""
    explain = writes or query_writes(None, sql)
    statement = sql.strip().rstrip(";")
    _denied()  # forget a refusal of an earlier query on this thread
    if explain:
        statement = _explain(engine.dialect.name, statement)
    started = time.perf_counter()
    try:
        connection = engine.connect()
    except (SQLAlchemyError, sqlite3.Error) as exc:
        engine.dispose()
        return QueryResult(False, (time.perf_counter() - started) * 1000, _message(exc, secret), explained=explain,
                           connected=False)
    try:
        with connection:
            transaction = connection.begin()
            try:
                if engine.dialect.name == "postgresql":
                    connection.exec_driver_sql("SET TRANSACTION READ ONLY")
                    role = _file_writing_role(connection)
                    if role is not None:
                        return QueryResult(False, (time.perf_counter() - started) * 1000, role, explained=explain,
                                           refused=True)
                result = connection.execute(sqlalchemy.text(statement), dict(params or {}))
                rows = result.fetchmany(row_limit + 1) if result.returns_rows else []
                result.close()
            finally:
                transaction.rollback()
    except (SQLAlchemyError, sqlite3.Error) as exc:
        denied = _denied()
        if denied is not None:
            return QueryResult(False, (time.perf_counter() - started) * 1000,
                               f"not authorized: a query test may not use {denied} (it could open or write files)",
                               explained=explain, refused=True)
        return QueryResult(False, (time.perf_counter() - started) * 1000, _message(exc, secret), explained=explain)
    finally:
        engine.dispose()
    return QueryResult(True, (time.perf_counter() - started) * 1000, rows=min(len(rows), row_limit),
                       truncated=len(rows) > row_limit, explained=explain)
