"""The registry (the SQLAlchemy edge): allocations, services and apply history; and the state `qrm serve`
shares between its replicas and keeps over a restart: test runs while they run, Idempotency-Keys of writes,
webhook delivery ids.

SQLAlchemy Core, not the ORM: bulk inserts of 10,000 rows cost ~40 ms instead of ~540 ms,
and every read is one query. The schema is versioned in the `meta` table and upgraded in
place by numbered steps that keep the data; each step runs in the same transaction as the
version bump, so a crash mid-upgrade leaves the previous version whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError

from reconciler.core.errors import AllocationRaceError, NoRegistryError, RegistryError
from reconciler.core.health import HealthRecord
from reconciler.core.state import RecordedFile, RecordedService

SCHEMA_VERSION = 10
FINISHED = ("passed", "failed")  # the statuses of a run that history and compare count
_CHUNK = 500  # rows per IN (...) list: far under SQLite's variable limit

metadata = MetaData()


def _owner() -> Column[str]:
    """The workspace a row belongs to (qrm.yaml name, else its git remote): in a shared registry each
    workspace reads, changes and prunes only its own rows, and allocation avoids everyone's."""
    return Column("owner", String(200), nullable=False, server_default="")


meta_table = Table("meta", metadata, Column("key", String(64), primary_key=True), Column("value", Text))
allocations = Table(
    "allocations", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("host", String(253), nullable=False),
    Column("port", Integer, nullable=False),
    Column("service", String(200), nullable=False, unique=True),
    Column("type", String(63), nullable=False),
    Column("allocated_at", String(32), nullable=False),
    _owner(),
    UniqueConstraint("host", "port", name="uq_allocations_host_port"),
)
services = Table(
    "services", metadata,
    Column("name", String(200), primary_key=True),
    Column("host", String(253), nullable=False),
    Column("port", Integer, nullable=False),
    Column("type", String(63), nullable=False),
    Column("protocol", String(16), nullable=False),
    Column("pinned", Boolean, nullable=False, default=False),
    Column("health", Text),
    Column("tags", Text, nullable=False, default="[]"),
    Column("project", String(63)),
    Column("environment", String(63)),
    Column("registered_at", String(32), nullable=False),
    _owner(),
)
secrets_table = Table(
    "secrets", metadata,
    Column("owner", String(200), primary_key=True, server_default=""),
    Column("name", String(300), primary_key=True),
    Column("fingerprint", String(64), nullable=False),  # of the ciphertext; never the value
    Column("recorded_at", String(32), nullable=False),
)
health_table = Table(
    "health", metadata,
    Column("service", String(200), primary_key=True),
    Column("status", String(16), nullable=False),  # passing | warning | critical
    Column("successes", Integer, nullable=False),  # consecutive
    Column("failures", Integer, nullable=False),  # consecutive
    Column("latency_ms", Float),
    Column("checked_at", String(32)),
    Column("reason", Text, nullable=False),
    Column("target", Text, nullable=False),  # what was checked (a record of another target is void)
    Column("address", String(300)),  # address:port the check connected to
    _owner(),
)
generated_files = Table(
    "generated_files", metadata,
    Column("owner", String(200), primary_key=True, server_default=""),
    Column("path", String(500), primary_key=True),
    Column("masked", Text, nullable=False),  # the rendering with secret placeholders (no values)
    Column("written_sha", String(64), nullable=False),  # sha256 of what apply wrote, to tell hand edits
    Column("written_at", String(32), nullable=False),
)
component_files = Table(
    "component_files", metadata,
    Column("owner", String(200), primary_key=True, server_default=""),
    Column("project", String(63), primary_key=True),
    Column("path", String(1000), primary_key=True),  # relative to the project's source folder
    Column("sha256", String(64), nullable=False),  # of the file's bytes when it was scanned
    Column("component", Text, nullable=False),  # Component.to_dict() as JSON: the line of the report
    # name, type, route, counts, parse and problems as JSON: what the table and totals need, read without
    # decoding the whole component (5,000 components decode in 0.3 s, their summaries in 0.02 s)
    Column("summary", Text, nullable=False),
    Column("scanned_at", String(32), nullable=False),
)
applies = Table(
    "applies", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", String(32), nullable=False),
    Column("finished_at", String(32)),
    Column("revision", String(64)),
    Column("outcome", String(16), nullable=False),
    Column("summary", Text, nullable=False),
    Column("error", Text),
    _owner(),
)
test_runs = Table(
    "test_runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("suite", String(63), nullable=False),
    Column("environment", String(63), nullable=False),
    Column("started_at", String(32), nullable=False),
    Column("finished_at", String(32), nullable=False),
    Column("passed", Integer, nullable=False),
    Column("failed", Integer, nullable=False),  # failed and errors
    Column("skipped", Integer, nullable=False),
    Column("flaky", Integer, nullable=False),  # passed only after a retry
    Column("duration_ms", Float, nullable=False),
    Column("revision", String(64)),
    _owner(),
    # Version 9: a run `qrm serve` started has a row while it runs (finished_at "" until it ends).
    # running | passed | failed | error | interrupted; "passed"/"failed" for every finished `qrm tests run`.
    Column("status", String(16), nullable=False, server_default=""),
    Column("error", Text),  # why a run ended in error or was interrupted (one line, never a secret)
    Column("lease_until", String(32)),  # a running run whose lease passed was cut off (its server died)
    Index("ix_test_runs_suite", "suite", "id"),
)
test_results = Table(
    "test_results", metadata,
    Column("run_id", Integer, nullable=False),
    Column("case_id", String(200), nullable=False),
    Column("outcome", String(16), nullable=False),  # passed | failed | error | skipped
    Column("attempts", Integer, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("name", Text, nullable=False, server_default=""),  # version 9: what GET /test-runs/{id} shows
    Column("type", String(16), nullable=False, server_default=""),
    Index("ix_test_results_run", "run_id"),
)
idempotency_keys = Table(  # version 9: the Idempotency-Keys of the API's writes, kept IDEMPOTENCY_TTL
    "idempotency_keys", metadata,
    Column("owner", String(200), primary_key=True, server_default=""),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),  # sha256 of the operation and request
    Column("answer", Text),  # the first success's answer as JSON; NULL while its request is in progress
    Column("created_at", String(32), nullable=False),
    Column("claimed_at", String(32), nullable=False),  # when the request in progress took the key
)
webhook_deliveries = Table(  # version 9: the delivery ids of webhooks in, kept a window (flows/hooks)
    "webhook_deliveries", metadata,
    Column("owner", String(200), primary_key=True, server_default=""),
    Column("source", String(16), primary_key=True),  # github | gitlab | generic
    Column("delivery", String(200), primary_key=True),
    Column("received_at", String(32), nullable=False),
)

# Version 10: notifications. The outbox holds each event once per notifier (its payload: never an address or
# credential, those are resolved at send time); times are epoch seconds, as delivery compares them with now.
notify_outbox = Table(
    "notify_outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _owner(),
    Column("notifier", String(63), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("dedupe_key", String(64), nullable=False),
    Column("recovery", Boolean, nullable=False, default=False),
    Column("payload", Text, nullable=False),  # Event.as_payload() as JSON
    Column("status", String(16), nullable=False),  # pending | delivered | failed | gone
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),  # when pending; a sender's claim pushes it past its send
    Column("claim", String(40), nullable=False, server_default=""),  # the pass that last claimed the row
    Column("last_error", Text, nullable=False, server_default=""),  # the last attempt's reason (never a secret)
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float),
    Index("ix_notify_outbox_due", "status", "next_attempt_at"),
    Index("ix_notify_outbox_dedupe", "owner", "notifier", "dedupe_key", "created_at"),
)
notify_disabled = Table(  # notifiers a 410 disabled, until their manifest changes or `qrm notify enable`
    "notify_disabled", metadata,
    Column("owner", String(200), primary_key=True, server_default=""),
    Column("notifier", String(63), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("manifest", String(64), nullable=False),  # sha256 of the notifier's manifest when it was disabled
    Column("disabled_at", Float, nullable=False),
)


def _v1(conn: Connection) -> None:
    """Version 1: allocations and apply history."""
    for table in (meta_table, allocations, applies):
        table.create(conn, checkfirst=True)


def _v2(conn: Connection) -> None:
    """Version 2: a services table with registration details; existing allocations become services."""
    services.create(conn, checkfirst=True)
    now = _now()
    rows = [
        {"name": r.service, "host": r.host, "port": r.port, "type": r.type, "protocol": "http",
         "pinned": False, "health": None, "tags": "[]", "project": None, "environment": None,
         "registered_at": now}
        for r in conn.execute(select(allocations))
    ]
    if rows:
        conn.execute(insert(services), rows)


def _v3(conn: Connection) -> None:
    """Version 3: which secrets (by name and ciphertext fingerprint) the last apply saw."""
    secrets_table.create(conn, checkfirst=True)


def _v4(conn: Connection) -> None:
    """Version 4: the health of each service as the last `qrm services health` round left it."""
    health_table.create(conn, checkfirst=True)


def _v5(conn: Connection) -> None:
    """Version 5: generated files as the last apply wrote them."""
    generated_files.create(conn, checkfirst=True)


def _v6(conn: Connection) -> None:
    """Version 6: the components of each project's .q files as the last `qrm scan` read them."""
    component_files.create(conn, checkfirst=True)


def _v7(conn: Connection) -> None:
    """Version 7: test runs (one row per suite, environment and run) and their case results."""
    test_runs.create(conn, checkfirst=True)
    test_results.create(conn, checkfirst=True)


# Tables whose primary key gains the owner in version 8 (a workspace's own names and paths: two
# workspaces may both have a project "blog"); the others only gain the column.
_REKEYED = (secrets_table, generated_files, component_files)
_OWNED = (allocations, services, health_table, applies, test_runs)


def _v8(conn: Connection, owner: str) -> None:
    """Version 8: every row records its owner; rows from before belong to the workspace that upgrades."""
    inspector = inspect(conn)
    for table in (*_REKEYED, *_OWNED):
        if not inspector.has_table(table.name):
            continue
        if "owner" in {c["name"] for c in inspector.get_columns(table.name)}:
            # Made by this version's definitions by an earlier step: its rows have the default owner.
            conn.execute(table.update().where(table.c.owner == "").values(owner=owner))
            continue
        if table in _REKEYED:
            rows = [dict(r._mapping) for r in conn.execute(select(*[c for c in table.c if c.name != "owner"]))]
            table.drop(conn)
            table.create(conn)
            if rows:
                conn.execute(insert(table), [{**row, "owner": owner} for row in rows])
        else:
            conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN owner VARCHAR(200) NOT NULL DEFAULT ''")
            conn.execute(table.update().values(owner=owner))


# Columns that version 9 adds: (table, column, its DDL type and default).
_V9_COLUMNS = ((test_runs, "status", "VARCHAR(16) NOT NULL DEFAULT ''"), (test_runs, "error", "TEXT"),
               (test_runs, "lease_until", "VARCHAR(32)"), (test_results, "name", "TEXT NOT NULL DEFAULT ''"),
               (test_results, "type", "VARCHAR(16) NOT NULL DEFAULT ''"))


def _v9(conn: Connection) -> None:
    """Version 9: what `qrm serve` shares between replicas: a test run's row from its start (status, error,
    lease; its cases' names and types), the Idempotency-Keys of writes and the webhook delivery ids. Runs
    recorded before were finished: passed, or failed when a case failed."""
    inspector = inspect(conn)
    for table, column, ddl in _V9_COLUMNS:
        if column not in {c["name"] for c in inspector.get_columns(table.name)}:  # else made by today's definition
            conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column} {ddl}")
    conn.execute(test_runs.update().where(test_runs.c.status == "").values(
        status=case((test_runs.c.failed > 0, "failed"), else_="passed")))
    idempotency_keys.create(conn, checkfirst=True)
    webhook_deliveries.create(conn, checkfirst=True)


def _v10(conn: Connection) -> None:
    """Version 10: the notification outbox and the notifiers a 410 disabled."""
    notify_outbox.create(conn, checkfirst=True)
    notify_disabled.create(conn, checkfirst=True)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: _v1, 2: _v2, 3: _v3, 4: _v4, 5: _v5, 6: _v6, 7: _v7, 9: _v9, 10: _v10}


def _now() -> str:
    return stamp(datetime.now(UTC))


def stamp(moment: datetime) -> str:
    """A time as the registry stores it (UTC, fixed width, so text order is time order)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class NotificationRow:
    """One event for one notifier, as emit enqueues it."""

    notifier: str
    kind: str
    dedupe_key: str
    payload: str  # JSON
    recovery: bool = False


@dataclass(frozen=True)
class ApplyRecord:
    id: int
    started_at: str
    finished_at: str | None
    revision: str | None
    outcome: str
    summary: dict[str, Any]
    error: str | None


def _search(name: Column[str], port: Column[int], text: str) -> ColumnElement[bool]:
    """A row whose name holds `text` (LIKE, its wildcards escaped), or whose port is `text` when it is a number."""
    found = name.contains(text, autoescape=True)
    return or_(found, port == int(text)) if text.isdigit() and len(text) <= 5 else found


def default_url(workspace_root: Path) -> str:
    # URL.create quotes the path: a folder named with `?`, `#` or `%41` stays the folder it is.
    return URL.create("sqlite", database=str(workspace_root / ".qrm" / "registry.db")).render_as_string()


def display_url(url: str) -> str:
    """The URL without its password, for messages (also when the URL does not parse)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return _PASSWORD.sub(r"\1***@", url, count=1)


# scheme://user:PASSWORD@ in a URL that SQLAlchemy cannot parse; greedy up to the last "@".
_PASSWORD = re.compile(r"(://[^:/@]*:).*@")


class Registry:
    """One registry. `owner` stamps every row written; `scoped` (a shared registry) makes every read,
    change and prune see only the owner's rows, while `foreign_allocations` shows everyone else's.
    A workspace's private registry is not scoped: all its rows are its own, whatever its name was."""

    def __init__(self, url: str, *, owner: str = "", scoped: bool = False, upgrade_to: int = SCHEMA_VERSION,
                 create: bool = True, rebuild: str = ""):
        """`rebuild` says how a damaged SQLite file is replaced ("run qrm apply, which rebuilds it from
        ..."), after "move it away and "; every error names the file and that fix, on one line."""
        self.url = url
        self.owner = owner
        self.scoped = scoped
        self.rebuild = rebuild or "restore it from a backup"
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError):  # ValueError: a port that is not a number
            raise RegistryError(f"invalid registry URL {display_url(url)!r}; "
                                "expected e.g. sqlite:///path/registry.db") from None
        self.file = _sqlite_file(parsed.get_backend_name(), parsed.database)
        if self.file is not None:
            try:
                self.file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RegistryError(_folder_problem(self.file, exc)) from None
        try:
            self.engine: Engine = create_engine(url)
        except Exception as exc:
            raise RegistryError(f"cannot open registry {display_url(url)}: {exc}") from None
        # Every driver error of every statement (and of connecting) becomes one line naming the
        # registry and the fix; IntegrityError stays itself (write() turns it into AllocationRaceError).
        event.listen(self.engine, "handle_error", self._driver_error)
        if self.engine.dialect.name == "sqlite":
            _sqlite_setup(self.engine)
        if not create and self._is_empty():
            self.close()
            raise NoRegistryError(f"registry {display_url(url)} has no qrm tables yet")
        self._upgrade(upgrade_to)

    def _driver_error(self, context: ExceptionContext) -> None:
        if isinstance(context.sqlalchemy_exception, IntegrityError):
            return
        error = _one_line(context.original_exception)
        if self.file is None:
            raise RegistryError(f"registry {display_url(self.url)}: {error}")
        raise RegistryError(_sqlite_problem(self.file, error, self.rebuild))

    def _is_empty(self) -> bool:
        with self.engine.connect() as conn:
            return not inspect(conn).has_table("meta")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(qrm_write=True) as conn, conn.begin():
            yield conn

    def _upgrade(self, target: int) -> None:
        with self._write() as conn:
            if conn.dialect.name == "postgresql":  # two first runs at once: one creates, the other waits
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(CAST(%s AS integer), 0)", (_LOCK_SPACE,))
            current = self._version(conn)
            if current > SCHEMA_VERSION:
                raise RegistryError(
                    f"registry {display_url(self.url)} has schema version {current}, newer than this qrm "
                    f"understands ({SCHEMA_VERSION}); upgrade qrm")
            for version in range(current + 1, target + 1):
                if version == 8:  # the only step that needs the owner
                    _v8(conn, self.owner)
                else:
                    MIGRATIONS[version](conn)
                conn.execute(delete(meta_table).where(meta_table.c.key == "schema_version"))
                conn.execute(insert(meta_table).values(key="schema_version", value=str(version)))

    @staticmethod
    def _version(conn: Connection) -> int:
        if not inspect(conn).has_table("meta"):
            return 0
        value = conn.execute(select(meta_table.c.value).where(meta_table.c.key == "schema_version")).scalar()
        return int(value) if value is not None else 0

    def _mine(self, table: Table) -> ColumnElement[bool]:
        return table.c.owner == self.owner if self.scoped else true()

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return self._version(conn)

    def recorded_services(self, *, foreign: bool = False) -> dict[str, RecordedService]:
        """This workspace's services; with `foreign`, the other workspaces' (none when not scoped)."""
        # Plain SQL through the driver: SQLAlchemy's result processing is most of the cost of 10,000 rows.
        sql = "SELECT name, host, port, type, protocol, pinned, health, tags, project, environment FROM services"
        if foreign and not self.scoped:
            return {}
        with self.engine.connect() as conn:
            if self.scoped:
                mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
                rows = conn.exec_driver_sql(f"{sql} WHERE owner {'<>' if foreign else '='} {mark}",
                                            (self.owner,)).all()
            else:
                rows = conn.exec_driver_sql(sql).all()
        parsed: dict[str, Any] = {}
        return {name: _recorded(name, host, port, type_, protocol, pinned, health, tags, project, environment, parsed)
                for name, host, port, type_, protocol, pinned, health, tags, project, environment in rows}

    def revision(self) -> str:
        """A mark that changes whenever any workspace's services or allocations change: the id and finish
        time of the newest apply of any owner (every write of services records one in the same transaction;
        the first apply of a rebuilt registry has a new time). "" before the first apply."""
        with self.engine.connect() as conn:
            row = conn.execute(select(applies.c.id, applies.c.finished_at).order_by(applies.c.id.desc())
                               .limit(1)).first()
        return "" if row is None else f"{row[0]}@{row[1]}"

    def health_revision(self) -> str:
        """A mark that changes whenever a health round changes this workspace's records: their count, newest
        check time and the sums of their counters and latencies (one scan of the table, no row decoded)."""
        h = health_table.c
        with self.engine.connect() as conn:
            row = conn.execute(select(func.count(), func.max(h.checked_at), func.sum(h.successes),
                                      func.sum(h.failures), func.sum(h.latency_ms)).where(
                self._mine(health_table))).one()
        return "/".join(str(v) for v in row)

    def has_records(self) -> bool:
        """Whether this workspace recorded anything here (a service, a secret or a generated file); when not,
        its committed reports are its record (flows.recorded)."""
        with self.engine.connect() as conn:
            return any(conn.execute(select(literal(1)).select_from(table).where(self._mine(table)).limit(1)).first()
                       for table in (services, secrets_table, generated_files))

    def service_places(self) -> list[tuple[str, str, int]]:
        """(name, host, port) of this workspace's services: what port ranges and checks need, no JSON."""
        with self.engine.connect() as conn:
            return [(n, h, p) for n, h, p in conn.execute(
                select(services.c.name, services.c.host, services.c.port).where(self._mine(services)))]

    def port_rows(self, *, host: str | None = None, type: str | None = None, project: str | None = None,
                  foreign: bool = True, limit: int | None = None, offset: int = 0, search: str | None = None,
                  ) -> tuple[int, int, list[RecordedService | ForeignRow]]:
        """One page of the allocations `qrm ports list` shows, filtered, sorted by host, port and name in the
        database: (this workspace's services in all, the rows that match, the page). A row of the page is
        this workspace's service, or (with `foreign`, in a shared registry) another workspace's allocation as
        a ForeignRow. A `project` filter leaves the other workspaces' out: their allocations have no project.
        `search`: the rows whose name holds it, or whose port it is (digits)."""
        s, a = services.c, allocations.c
        own_filters = [self._mine(services)]
        own_filters += [_search(s.name, s.port, search)] if search else []
        own_filters += [s.host == host] if host is not None else []
        own_filters += [s.type == type] if type is not None else []
        own_filters += [s.project == project] if project is not None else []
        parts = [select(s.name, s.host, s.port, s.type, s.protocol, s.pinned, s.health, s.tags, s.project,
                        s.environment, literal("", String).label("owner"), literal(1).label("own")).where(*own_filters)]
        if foreign and self.scoped and project is None:
            others = [a.owner != self.owner]
            others += [_search(a.service, a.port, search)] if search else []
            others += [a.host == host] if host is not None else []
            others += [a.type == type] if type is not None else []
            parts.append(select(a.service, a.host, a.port, a.type, null(), null(), null(), null(), null(), null(),
                                a.owner, literal(0)).where(*others))
        rows = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery()
        # Python's order (code points), which PostgreSQL gives only with the C collation.
        by_host = rows.c.host.collate("C") if self.engine.dialect.name == "postgresql" else rows.c.host
        page = select(rows).order_by(by_host, rows.c.port, rows.c.name).offset(offset)
        if limit is not None:
            page = page.limit(limit)
        with self.engine.connect() as conn:
            own = int(conn.execute(select(func.count()).select_from(services).where(self._mine(services)))
                      .scalar_one())
            total = int(conn.execute(select(func.count()).select_from(rows)).scalar_one())
            found = conn.execute(page).all()
        parsed: dict[str, Any] = {}
        return own, total, [
            _recorded(name, host_, port, type_, protocol, pinned, health, tags, project_, environment, parsed) if mine
            else (name, host_, port, type_, owner)
            for name, host_, port, type_, protocol, pinned, health, tags, project_, environment, owner, mine in found]

    def recorded_secrets(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {name: fingerprint for name, fingerprint in conn.execute(
                select(secrets_table.c.name, secrets_table.c.fingerprint).where(self._mine(secrets_table)))}

    def recorded_files(self) -> dict[str, RecordedFile]:
        with self.engine.connect() as conn:
            return {path: RecordedFile(path, masked, sha) for path, masked, sha in conn.execute(
                select(generated_files.c.path, generated_files.c.masked, generated_files.c.written_sha).where(
                    self._mine(generated_files)))}

    def allocation_rows(self) -> list[dict[str, Any]]:
        """Every allocation of every owner, by host and port (what `qrm ports list` shows)."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(allocations).order_by(
                allocations.c.host, allocations.c.port))]

    def foreign_allocations(self) -> list[tuple[str, int, str, str, str]]:
        """(host, port, service, owner, type) of the other workspaces' allocations; none when not scoped."""
        if not self.scoped:
            return []
        with self.engine.connect() as conn:
            return [(h, p, s, o, t) for h, p, s, o, t in conn.execute(
                select(allocations.c.host, allocations.c.port, allocations.c.service, allocations.c.owner,
                       allocations.c.type).where(allocations.c.owner != self.owner))]

    @contextmanager
    def allocation_lock(self, hosts: Iterable[str]) -> Iterator[float]:
        """Hold the allocation lock of each host (sorted, so two holders never deadlock) from before
        the plan reads what is taken until its allocations are committed; yields the seconds waited.

        PostgreSQL: session advisory locks, so workspaces on different machines take turns per host.
        SQLite: an flock beside the database file (one machine; BEGIN IMMEDIATE alone would not
        cover the plan that precedes the write)."""
        names = sorted(set(hosts))
        started = time.perf_counter()
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                for host in names:
                    conn.exec_driver_sql("SELECT pg_advisory_lock(CAST(%s AS integer), hashtext(%s))",
                                         (_LOCK_SPACE, f"host:{host}"))
                conn.commit()
                try:
                    yield time.perf_counter() - started
                finally:
                    conn.exec_driver_sql("SELECT pg_advisory_unlock_all()")
                    conn.commit()
            return
        if self.file is None:  # an in-memory database: one process
            yield 0.0
            return
        lock = f"{self.file}.alloc-lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RegistryError(f"cannot create the allocation lock {_shown(Path(lock))} beside the registry: "
                                f"{exc.strerror}: {_elsewhere(self.file.parent)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield time.perf_counter() - started
        finally:
            os.close(fd)

    def leader_lease(self, name: str, holder: str) -> LeaderLease:
        """The leader lease of workspace `name` among the replicas that share this registry (not yet taken);
        `holder` names this replica to the others (host and pid)."""
        return LeaderLease(self, name, holder)

    def write(
        self,
        removed: Sequence[str],
        added: Sequence[RecordedService],
        *,
        revision: str | None,
        summary: dict[str, Any],
        started_at: str,
        secrets: dict[str, str] | None = None,
        files_removed: Sequence[str] = (),
        files_written: Sequence[RecordedFile] = (),
    ) -> int:
        """Remove and add services with their allocations, and record the apply: all in one transaction."""
        now = _now()
        try:
            with self._write() as conn:
                owner = self.owner
                for chunk in _chunks(removed):
                    conn.execute(delete(services).where(services.c.name.in_(chunk), self._mine(services)))
                    conn.execute(delete(allocations).where(allocations.c.service.in_(chunk), self._mine(allocations)))
                if added:
                    _bulk_insert(conn, allocations, [
                        {"host": s.host, "port": s.port, "service": s.name, "type": s.type, "allocated_at": now,
                         "owner": owner} for s in added])
                    encoded: dict[int, str] = {}
                    _bulk_insert(conn, services, [_service_row(s, now, encoded, owner) for s in added])
                if secrets is not None:  # the whole set: few rows, replaced every time
                    conn.execute(delete(secrets_table).where(self._mine(secrets_table)))
                    if secrets:
                        conn.execute(insert(secrets_table), [
                            {"owner": owner, "name": n, "fingerprint": f, "recorded_at": now}
                            for n, f in sorted(secrets.items())])
                gone = [*files_removed, *(f.path for f in files_written)]
                for chunk in _chunks(gone):
                    conn.execute(delete(generated_files).where(generated_files.c.path.in_(chunk),
                                                               self._mine(generated_files)))
                if files_written:
                    conn.execute(insert(generated_files), [
                        {"owner": owner, "path": f.path, "masked": f.masked, "written_sha": f.written_sha,
                         "written_at": now} for f in files_written])
                result = conn.execute(insert(applies).values(
                    started_at=started_at, finished_at=now, revision=revision, outcome="success",
                    summary=json.dumps(summary, sort_keys=True), error=None, owner=owner))
                return int(result.inserted_primary_key[0])  # type: ignore[index]
        except IntegrityError as exc:
            raise AllocationRaceError(
                "the registry refused the allocation (a port or service is already recorded; did another "
                f"apply run at the same time?): {_one_line(exc.orig)}; nothing was applied") from None

    def record_failure(self, *, revision: str | None, summary: dict[str, Any], started_at: str, error: str) -> None:
        with self._write() as conn:
            conn.execute(insert(applies).values(
                started_at=started_at, finished_at=_now(), revision=revision, outcome="failed",
                summary=json.dumps(summary, sort_keys=True), error=error, owner=self.owner))

    def history(self, limit: int = 20) -> list[ApplyRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(applies).where(self._mine(applies)).order_by(applies.c.id.desc())
                                .limit(limit)).all()
        return [ApplyRecord(r.id, r.started_at, r.finished_at, r.revision, r.outcome, json.loads(r.summary),
                            r.error) for r in rows]

    def recorded_health(self, *, foreign: bool = False) -> dict[str, HealthRecord]:
        """The health this workspace's rounds recorded; with `foreign`, the other workspaces' rounds'."""
        if foreign and not self.scoped:
            return {}
        with self.engine.connect() as conn:
            return _read_health(conn, health_table.c.owner != self.owner if foreign else self._mine(health_table))

    def record_health(
        self, update: Callable[[dict[str, HealthRecord]], Sequence[HealthRecord]], *, prune: bool = True
    ) -> list[HealthRecord]:
        """Replace the health of the services `update` returns, in one transaction and one bulk insert.

        `update` gets the records as they are inside the transaction (so two rounds at once both
        count) and returns the new ones. With `prune`, records of services that are no longer
        registered go too.
        """
        with self._write() as conn:
            records = list(update(_read_health(conn, self._mine(health_table))))
            for chunk in _chunks(r.service for r in records):
                conn.execute(delete(health_table).where(health_table.c.service.in_(chunk)))
            if records:
                _bulk_insert(conn, health_table, [
                    {"service": r.service, "status": r.status, "successes": r.successes, "failures": r.failures,
                     "latency_ms": r.latency_ms, "checked_at": r.checked_at, "reason": r.reason, "target": r.target,
                     "address": r.address, "owner": self.owner} for r in records])
            if prune:
                conn.execute(delete(health_table).where(
                    self._mine(health_table),
                    health_table.c.service.not_in(select(services.c.name).where(self._mine(services)))))
        return records

    def component_rows(self, project: str) -> dict[str, tuple[str, str, str, str]]:
        """path -> (sha256, component JSON, summary JSON, scanned_at) of every scanned file of a project."""
        with self.engine.connect() as conn:
            return {path: (sha, component, summary, scanned_at) for path, sha, component, summary, scanned_at
                    in conn.execute(select(component_files.c.path, component_files.c.sha256,
                                           component_files.c.component, component_files.c.summary,
                                           component_files.c.scanned_at).where(
                        component_files.c.project == project, self._mine(component_files)))}

    def component_shas(self, project: str) -> dict[str, str]:
        """path -> sha256 of every scanned file of a project (no component JSON: what plan compares)."""
        with self.engine.connect() as conn:
            return {path: sha for path, sha in conn.execute(
                select(component_files.c.path, component_files.c.sha256).where(
                    component_files.c.project == project, self._mine(component_files)))}

    def write_components(self, removed: Sequence[tuple[str, str]],
                         written: Sequence[tuple[str, str, str, str, str]]) -> str:
        """Remove (project, path) rows and (re)write (project, path, sha256, component JSON, summary JSON)
        rows, in one transaction; returns the scanned_at time of the written rows."""
        now = _now()
        by_project: dict[str, list[str]] = {}
        for project, path in [*removed, *((w[0], w[1]) for w in written)]:
            by_project.setdefault(project, []).append(path)
        with self._write() as conn:
            for project, paths in sorted(by_project.items()):
                for chunk in _chunks(paths):
                    conn.execute(delete(component_files).where(
                        component_files.c.project == project, component_files.c.path.in_(chunk),
                        self._mine(component_files)))
            if written:
                _bulk_insert(conn, component_files, [
                    {"owner": self.owner, "project": project, "path": path, "sha256": sha, "component": component,
                     "summary": summary, "scanned_at": now} for project, path, sha, component, summary in written])
        return now

    def prune_component_projects(self, keep: Sequence[str]) -> list[str]:
        """Delete the component rows of every project not in `keep`; the projects whose rows went."""
        with self._write() as conn:
            projects = {p for (p,) in conn.execute(select(component_files.c.project).distinct().where(
                self._mine(component_files)))}
            gone = sorted(projects - set(keep))
            if gone:
                conn.execute(delete(component_files).where(component_files.c.project.in_(gone),
                                                           self._mine(component_files)))
        return gone

    def record_test_runs(self, runs: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]]) -> list[int]:
        """Record test runs (a test_runs row without id, and its test_results rows without run_id):
        all in one transaction, the results of each run in one bulk insert; returns the run ids. A row
        with an `id` finishes that run (start_test_run made it): its row is updated, whatever its status
        (a run that ends after its lease was taken for cut off did end)."""
        ids = []
        with self._write() as conn:
            for given, results in runs:
                run = {"status": "failed" if given.get("failed") else "passed", **given}
                if "id" in run:
                    run_id = int(run["id"])
                    conn.execute(test_runs.update().where(test_runs.c.id == run_id, self._mine(test_runs)).values(
                        **{k: v for k, v in run.items() if k != "id"}, lease_until=None))
                    conn.execute(delete(test_results).where(test_results.c.run_id == run_id))
                else:
                    result = conn.execute(insert(test_runs).values(**{"owner": self.owner, **run}))
                    run_id = int(result.inserted_primary_key[0])  # type: ignore[index]
                ids.append(run_id)
                if results:
                    _bulk_insert(conn, test_results, [{"run_id": run_id, **r} for r in results])
        return ids

    def start_test_run(self, suite: str, environment: str, *, started_at: str, lease_until: str) -> int:
        """A running run's row (its id is the run's id everywhere: the API, history); no counts yet."""
        with self._write() as conn:
            result = conn.execute(insert(test_runs).values(
                suite=suite, environment=environment, started_at=started_at, finished_at="", passed=0, failed=0,
                skipped=0, flaky=0, duration_ms=0.0, revision=None, owner=self.owner, status="running",
                error=None, lease_until=lease_until))
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def renew_test_runs(self, run_ids: Sequence[int], lease_until: str) -> None:
        """Extend the lease of these runs while they still run."""
        if not run_ids:
            return
        with self._write() as conn:
            conn.execute(test_runs.update().where(test_runs.c.id.in_(list(run_ids)), test_runs.c.status == "running",
                                                  self._mine(test_runs)).values(lease_until=lease_until))

    def interrupt_test_runs(self, error: str, *, run_ids: Sequence[int] | None = None,
                            lease_before: str | None = None, finished_at: str = "") -> list[int]:
        """Mark running runs interrupted: these `run_ids`, or those whose lease ended before `lease_before`;
        the ids marked."""
        where = [test_runs.c.status == "running", self._mine(test_runs)]
        if run_ids is not None:
            where.append(test_runs.c.id.in_(list(run_ids)))
        if lease_before is not None:
            where.append(test_runs.c.lease_until < lease_before)
        with self._write() as conn:
            marked = [int(i) for (i,) in conn.execute(select(test_runs.c.id).where(*where))]
            if marked:
                conn.execute(test_runs.update().where(test_runs.c.id.in_(marked), test_runs.c.status == "running")
                             .values(status="interrupted", error=error, finished_at=finished_at or _now(),
                                     lease_until=None))
        return marked

    def test_run_row(self, run_id: int) -> dict[str, Any] | None:
        """One run of this workspace, whatever its status; None when there is none of that id."""
        with self.engine.connect() as conn:
            row = conn.execute(select(test_runs).where(test_runs.c.id == run_id, self._mine(test_runs))).first()
        return dict(row._mapping) if row is not None else None

    def last_test_run_id(self) -> int:
        """The highest run id of this workspace; 0 when it has none."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(test_runs.c.id)).where(self._mine(test_runs))).scalar() or 0)

    def test_run_rows(self, suite: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The finished runs of a suite (passed or failed: not running, cut off or in error), newest first."""
        query = select(test_runs).where(test_runs.c.suite == suite, self._mine(test_runs),
                                        test_runs.c.status.in_(FINISHED)).order_by(test_runs.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # --- Idempotency-Keys and webhook deliveries (what `qrm serve`'s replicas share) ---------------------

    def claim_idempotency_key(self, key: str, fingerprint: str, *, now: str, expired_before: str,
                              stale_before: str) -> tuple[str, str | None]:
        """Take `key` for a request, in one transaction: ("claimed", None) when it is new (or expired, or its
        request in progress claimed it before `stale_before`: its process died), ("replay", answer JSON) when
        a request with this fingerprint succeeded, ("conflict", None) when it was used for another request,
        ("busy", None) while the same request is in progress elsewhere. Expired keys are deleted."""
        table = idempotency_keys
        with self._write() as conn:
            conn.execute(delete(table).where(table.c.created_at < expired_before, self._mine(table)))
            if _insert_or_nothing(conn, table, {"owner": self.owner, "key": key, "fingerprint": fingerprint,
                                                "answer": None, "created_at": now, "claimed_at": now}):
                return "claimed", None
            query = select(table.c.fingerprint, table.c.answer, table.c.claimed_at).where(
                table.c.owner == self.owner, table.c.key == key)
            row = conn.execute(query.with_for_update() if conn.dialect.name == "postgresql" else query).one()
            if row.fingerprint != fingerprint:
                return "conflict", None
            if row.answer is not None:
                return "replay", str(row.answer)
            if row.claimed_at >= stale_before:
                return "busy", None
            conn.execute(table.update().where(table.c.owner == self.owner, table.c.key == key).values(claimed_at=now))
            return "claimed", None

    def store_idempotency_answer(self, key: str, answer: str) -> None:
        """The answer of the request that claimed `key`: what a retry with it gets."""
        with self._write() as conn:
            conn.execute(idempotency_keys.update().where(idempotency_keys.c.owner == self.owner,
                                                         idempotency_keys.c.key == key).values(answer=answer))

    def release_idempotency_key(self, key: str) -> None:
        """Give back a key whose request failed (a retry does it again)."""
        with self._write() as conn:
            conn.execute(delete(idempotency_keys).where(idempotency_keys.c.owner == self.owner,
                                                        idempotency_keys.c.key == key,
                                                        idempotency_keys.c.answer.is_(None)))

    def first_delivery(self, source: str, delivery: str, *, now: str, expired_before: str) -> bool:
        """Whether this webhook delivery id is new (and remember it), in one transaction; ids received before
        `expired_before` are forgotten."""
        table = webhook_deliveries
        with self._write() as conn:
            conn.execute(delete(table).where(table.c.received_at < expired_before, self._mine(table)))
            return _insert_or_nothing(conn, table, {"owner": self.owner, "source": source, "delivery": delivery,
                                                    "received_at": now})

    # --- Notifications: the outbox and the disabled notifiers ---------------------------------------------

    def enqueue_notifications(self, rows: Sequence[NotificationRow], *, now: float,
                              windows: dict[str, float]) -> list[int]:
        """Add a pending row for each of `rows`, unless its notifier already has one with the same dedupe key
        created within its window (`windows`: notifier -> seconds); recoveries always; one transaction.
        The ids of the rows added."""
        table = notify_outbox
        added: list[int] = []
        with self._write() as conn:
            for row in rows:
                window = windows.get(row.notifier, 0.0)
                if not row.recovery and window > 0 and conn.execute(
                        select(table.c.id).where(self._mine(table), table.c.notifier == row.notifier,
                                                 table.c.dedupe_key == row.dedupe_key,
                                                 table.c.created_at > now - window).limit(1)).first() is not None:
                    continue
                result = conn.execute(insert(table).values(
                    owner=self.owner, notifier=row.notifier, kind=row.kind, dedupe_key=row.dedupe_key,
                    recovery=row.recovery, payload=row.payload, status="pending", attempts=0, next_attempt_at=now,
                    last_error="", created_at=now, delivered_at=None))
                key = result.inserted_primary_key
                assert key is not None
                added.append(int(key[0]))
        return added

    def due_notifications(self, now: float, limit: int = 200, ids: Sequence[int] | None = None
                          ) -> list[dict[str, Any]]:
        """Pending rows whose next attempt is due, oldest first (`ids`: only these)."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(self._due(now, limit, ids))]

    def _due(self, now: float, limit: int, ids: Sequence[int] | None) -> Any:
        table = notify_outbox
        query = select(table).where(self._mine(table), table.c.status == "pending", table.c.next_attempt_at <= now)
        if ids is not None:
            query = query.where(table.c.id.in_(list(ids)))
        return query.order_by(table.c.id).limit(limit)

    def claim_notifications(self, now: float, until: float, claim: str, limit: int = 200,
                            ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Take the due rows for one delivery pass, in one transaction: their next attempt moves to `until`, so
        no other sender takes them meanwhile (a sender that dies leaves them due again then); a row another
        sender took first is not among those returned. `claim`: this pass's unique token."""
        table = notify_outbox
        with self._write() as conn:
            wanted = [r.id for r in conn.execute(self._due(now, limit, ids).with_only_columns(table.c.id))]
            if not wanted:
                return []
            # the conditions again: on PostgreSQL a row another pass claimed meanwhile is re-read and skipped
            conn.execute(table.update().where(table.c.id.in_(wanted), table.c.status == "pending",
                                              table.c.next_attempt_at <= now).values(next_attempt_at=until,
                                                                                     claim=claim))
            return [dict(r._mapping) for r in conn.execute(
                select(table).where(table.c.id.in_(wanted), table.c.claim == claim,
                                    table.c.next_attempt_at == until).order_by(table.c.id))]

    def finish_notifications(self, outcomes: Sequence[dict[str, Any]]) -> None:
        """Record a pass's outcomes in one transaction; each: id, status, attempts, next_attempt_at,
        last_error, delivered_at."""
        if not outcomes:
            return
        table = notify_outbox
        statement = table.update().where(table.c.id == bindparam("row_id")).values(
            status=bindparam("status"), attempts=bindparam("attempts"), next_attempt_at=bindparam("next_attempt_at"),
            last_error=bindparam("last_error"), delivered_at=bindparam("delivered_at"))
        with self._write() as conn:
            conn.execute(statement, [{**{k: v for k, v in o.items() if k != "id"}, "row_id": o["id"]}
                                     for o in outcomes])

    def notification_rows(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest outbox rows, newest first."""
        table = notify_outbox
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(table).where(self._mine(table)).order_by(table.c.id.desc()).limit(limit))]

    def pending_notifications(self) -> int:
        table = notify_outbox
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table).where(
                self._mine(table), table.c.status == "pending")).scalar_one())

    def disabled_notifiers(self) -> dict[str, tuple[str, str, float]]:
        """notifier -> (reason, sha256 of its manifest then, when)."""
        table = notify_disabled
        with self.engine.connect() as conn:
            return {r.notifier: (r.reason, r.manifest, r.disabled_at)
                    for r in conn.execute(select(table).where(self._mine(table)))}

    def disable_notifier(self, notifier: str, reason: str, manifest: str, now: float) -> None:
        """Disable a notifier (its receiver answered 410 Gone); its pending rows become gone."""
        with self._write() as conn:
            _insert_or_nothing(conn, notify_disabled, {"owner": self.owner, "notifier": notifier, "reason": reason,
                                                       "manifest": manifest, "disabled_at": now})
            conn.execute(notify_outbox.update().where(
                self._mine(notify_outbox), notify_outbox.c.notifier == notifier,
                notify_outbox.c.status == "pending").values(status="gone", last_error=reason))

    def enable_notifier(self, notifier: str) -> bool:
        """Whether it was disabled."""
        with self._write() as conn:
            return bool(conn.execute(delete(notify_disabled).where(
                notify_disabled.c.owner == self.owner, notify_disabled.c.notifier == notifier)).rowcount)

    def test_result_rows(self, run_ids: Sequence[int]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        with self.engine.connect() as conn:
            for start in range(0, len(run_ids), _CHUNK):
                chunk = list(run_ids[start:start + _CHUNK])
                rows += [dict(r._mapping) for r in conn.execute(
                    select(test_results).where(test_results.c.run_id.in_(chunk)))]
        return rows

    def count_applies(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(applies).where(self._mine(applies))).scalar_one())


def _insert_or_nothing(conn: Connection, table: Table, row: dict[str, Any]) -> bool:
    """Insert `row` unless its primary key exists (INSERT ... ON CONFLICT DO NOTHING: a concurrent insert of
    the same key waits for the other and then does nothing); whether it was inserted."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    # RETURNING, not rowcount: psycopg's rowcount of this statement is -1 under SQLAlchemy
    key = next(iter(table.primary_key.columns))
    return conn.execute(upsert(table).values(**row).on_conflict_do_nothing().returning(key)).first() is not None


# Another workspace's allocation in a shared registry: (service, host, port, type, owner).
ForeignRow = tuple[str, str, int, str, str]


def _recorded(name: str, host: str, port: int, type_: str, protocol: str, pinned: Any, health: str | None,
              tags: str | None, project: str | None, environment: str | None, parsed: dict[str, Any],
              ) -> RecordedService:
    """A services row as a RecordedService. Thousands of services share a few health checks and tag lists:
    `parsed` keeps each JSON text's value, so each is parsed once per read."""

    def from_json(text: str | None) -> Any:
        if text is None:
            return None
        value = parsed.get(text)
        if value is None:
            value = parsed[text] = json.loads(text)
        return value

    return RecordedService(name=name, host=host, port=port, type=type_, protocol=protocol, pinned=bool(pinned),
                           health=from_json(health), tags=tuple(from_json(tags) or ()), project=project,
                           environment=environment)


def _read_health(conn: Connection, where: ColumnElement[bool]) -> dict[str, HealthRecord]:
    rows = conn.execute(select(
        health_table.c.service, health_table.c.status, health_table.c.successes, health_table.c.failures,
        health_table.c.latency_ms, health_table.c.checked_at, health_table.c.reason, health_table.c.target,
        health_table.c.address).where(where)).all()
    return {r[0]: HealthRecord(*r) for r in rows}


def _bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows through the driver's executemany with a prepared statement.

    SQLAlchemy Core's insert() processes every parameter set in Python (0.4 s for 20,000 rows
    here); the driver alone takes 0.15 s. Drivers with another parameter style use Core.
    """
    style = conn.dialect.paramstyle
    if style not in ("qmark", "format", "pyformat") or not rows:
        conn.execute(insert(table), rows)
        return
    columns = list(rows[0])
    mark = "?" if style == "qmark" else "%s"
    preparer = conn.dialect.identifier_preparer
    statement = (f"INSERT INTO {preparer.format_table(table)} ({', '.join(preparer.quote(c) for c in columns)}) "
                 f"VALUES ({', '.join([mark] * len(columns))})")
    conn.exec_driver_sql(statement, [tuple(row[c] for c in columns) for row in rows])


def _service_row(s: RecordedService, now: str, encoded: dict[int, str], owner: str) -> dict[str, Any]:
    """A services row; `encoded` memoizes the JSON of health checks that services share (by identity)."""
    health = None
    if s.health is not None:
        health = encoded.get(id(s.health))
        if health is None:
            health = encoded[id(s.health)] = json.dumps(s.health, sort_keys=True)
    return {
        "name": s.name, "host": s.host, "port": s.port, "type": s.type, "protocol": s.protocol,
        "pinned": s.pinned, "health": health, "tags": json.dumps(list(s.tags)), "project": s.project,
        "environment": s.environment, "registered_at": now, "owner": owner,
    }


def _chunks(items: Iterable[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _one_line(error: BaseException | None) -> str:
    """A driver's message on one line (libpq's span several)."""
    return " ".join(str(error).split())


def _sqlite_file(backend: str, database: str | None) -> Path | None:
    """The file of a SQLite registry; None for a server or an in-memory database."""
    return Path(database) if backend == "sqlite" and database not in (None, "", ":memory:") else None


def _shown(path: Path) -> str:
    """A path as a user typed it: relative when it is below the current folder."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _elsewhere(folder: Path) -> str:
    return f"make {_shown(folder)} writable, or name another registry with --registry URL (or QRM_REGISTRY)"


def _folder_problem(file: Path, error: OSError) -> str:
    """Why the folder of a SQLite registry cannot be made, and the fix."""
    # mkdir names the folder it could not make: the one to make writable is the folder that holds it.
    blocking = Path(error.filename).parent if error.filename else file.parent
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        # A file where a folder of the path should be (the first one that is not a folder).
        blocking = next((p for p in reversed(file.parents) if p.exists() and not p.is_dir()), blocking)
        return (f"cannot create the registry {_shown(file)}: {_shown(blocking)} is a file, not a folder: "
                "move it away, or name another registry with --registry URL (or QRM_REGISTRY)")
    return f"cannot create the folder of the registry {_shown(file)}: {error.strerror}: {_elsewhere(blocking)}"


def _sqlite_problem(file: Path, error: str, rebuild: str) -> str:
    """What is wrong with a SQLite registry file, and the fix, from the driver's message and the file
    itself (SQLite says "unable to open database file" of a directory and of a read-only folder alike)."""
    shown = _shown(file)
    replace = f"move it away and {rebuild}"
    if file.is_dir():
        return f"{shown} is a directory, not a SQLite database: {replace}"
    if "file is not a database" in error:
        return f"{shown} is not a SQLite database (corrupt?): {replace}"
    if "malformed" in error or "corrupt" in error:
        return f"{shown} is damaged ({error}): {replace}"
    if file.parent.is_dir() and not os.access(file.parent, os.W_OK):
        return (f"{shown}: its folder {_shown(file.parent)} is not writable ({error}; SQLite writes its "
                f"journal beside the database): {_elsewhere(file.parent)}")
    if file.exists() and not os.access(file, os.W_OK):
        return f"{shown} is read-only ({error}): {_elsewhere(file)}"
    return f"registry {shown}: {error}"


# The first key of qrm's advisory locks (the second is hashtext(host)), so they never collide with
# another application's locks on the same PostgreSQL.
_LOCK_SPACE = 0x51524D  # "QRM"
_LEASE_SPACE = _LOCK_SPACE + 1  # the leader leases (the second key is hashtext(workspace name))
# A leader whose machine vanishes (no FIN, no RST) is dropped by PostgreSQL after about idle + interval * count
# seconds of silence: keepalives of the lease's own session (user-settable), not of the whole server.
_LEASE_KEEPALIVES = (("tcp_keepalives_idle", "10"), ("tcp_keepalives_interval", "5"), ("tcp_keepalives_count", "3"))


class LeaderLease:
    """Which replica of a workspace reconciles: whoever holds this lease, for as long as its process lives.

    PostgreSQL: a session advisory lock (pg_try_advisory_lock) on a connection of its own, kept open while
    held; when the holder dies, even by SIGKILL, the kernel closes its socket, PostgreSQL ends the session
    and the lock is free. The lock's keys are qrm's lease space and hashtext(workspace name), so two
    workspaces sharing one database never block each other; the connection's application_name names the
    holder for the others. SQLite: an flock on a file beside the database (one machine), named by a digest
    of the workspace name, holding the holder's name."""

    def __init__(self, registry: Registry, name: str, holder: str) -> None:
        self.registry = registry
        self.name = name
        self.holder_name = holder[:60]  # application_name keeps 63 bytes
        self._conn: Connection | None = None
        self._fd: int | None = None
        self._memory = False  # an in-memory registry: one process, which leads
        self.file = (registry.file.with_name(f"{registry.file.name}.leader-"
                                             f"{hashlib.sha256(name.encode()).hexdigest()[:16]}")
                     if registry.file is not None else None)

    @property
    def postgresql(self) -> bool:
        return self.registry.engine.dialect.name == "postgresql"

    def describe(self) -> str:
        """What the lease is, for messages: the lock or the file (never a password)."""
        if self.postgresql:
            return f"advisory lock 'leader:{self.name}' on {display_url(self.registry.url)}"
        return f"flock of {_shown(self.file)}" if self.file is not None else "in-memory registry (one process)"

    @property
    def held(self) -> bool:
        return self._conn is not None or self._fd is not None or self._memory

    def try_acquire(self) -> bool:
        """Take the lease when nobody holds it; True when this replica holds it (now or already)."""
        if self.held:
            return True
        if self.postgresql:
            conn = self.registry.engine.connect()
            try:
                got = bool(conn.exec_driver_sql("SELECT pg_try_advisory_lock(CAST(%s AS integer), hashtext(%s))",
                                                (_LEASE_SPACE, f"leader:{self.name}")).scalar())
                if got:
                    conn.exec_driver_sql("SELECT set_config('application_name', %s, false)",
                                         (f"qrm leader {self.holder_name}",))
                    for setting, value in _LEASE_KEEPALIVES:
                        conn.exec_driver_sql("SELECT set_config(%s, %s, false)", (setting, value))
                conn.commit()
            except BaseException:
                conn.invalidate()
                conn.close()
                raise
            if not got:
                conn.close()
                return False
            self._conn = conn
            return True
        if self.file is None:
            self._memory = True
            return True
        try:
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RegistryError(f"cannot create the leader lease {_shown(self.file)} beside the registry: "
                                f"{exc.strerror}: {_elsewhere(self.file.parent)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        with contextlib.suppress(OSError):  # the name only serves holder(): the lease holds without it
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{self.holder_name}\n".encode(), 0)
        self._fd = fd
        return True

    def still_held(self) -> bool:
        """Whether the lease is still this replica's: on PostgreSQL its session must still answer (a
        restarted server, or a session ended by an administrator, frees the lock); False lets go of it."""
        if self._conn is None:
            return self.held
        try:
            self._conn.exec_driver_sql("SELECT 1")
            self._conn.commit()
            return True
        except Exception:
            self._drop()
            return False

    def holder(self) -> str | None:
        """Who holds the lease now, as its holder named itself (None when free or not known)."""
        if self.held:
            return self.holder_name
        if self.postgresql:
            with self.registry.engine.connect() as conn:
                name = conn.exec_driver_sql(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND l.classid = CAST(%s AS oid) AND l.objid = CAST(hashtext(%s) AS oid) AND l.objsubid = 2",
                    (_LEASE_SPACE, f"leader:{self.name}")).scalar()
            return str(name).removeprefix("qrm leader ") if name else None
        if self.file is None:
            return None
        try:
            return self.file.read_text().strip() or None
        except OSError:
            return None

    def release(self) -> None:
        """Let go (a replica that stops): the next replica's try takes it."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.exec_driver_sql("SELECT pg_advisory_unlock(CAST(%s AS integer), hashtext(%s))",
                                           (_LEASE_SPACE, f"leader:{self.name}"))
                self._conn.commit()
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.invalidate()  # the session ends with it: no lock or application_name back in the pool
                self._conn.close()
            self._conn = None
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None
        self._memory = False


def _sqlite_setup(engine: Engine) -> None:
    """Real transactions on SQLite: the driver's implicit BEGIN is replaced by our own.

    Writes start with BEGIN IMMEDIATE so two processes serialize at the start of a write
    instead of failing at commit; busy_timeout makes the second one wait rather than error.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("qrm_write") else "BEGIN")


__all__ = ["SCHEMA_VERSION", "ApplyRecord", "LeaderLease", "NotificationRow", "Registry", "default_url", "display_url"]
