"""A throwaway PostgreSQL server for the tests and benchmarks: initdb into a temporary folder as the
`postgres` system user (through runuser when running as root), scram-sha-256 for TCP on 127.0.0.1 and
trust on its private Unix socket (for setup), a free port, fsync off; `stop()` removes everything.

Databases are made per test: `create_database()` gives a fresh empty database owned by a login role
with a password (tests/conftest.py's `pg_database` fixture hands a test one as a PgDatabase).
Missing PostgreSQL raises PgServerError (the tests fail, they do not skip):
scripts/setup-interop installs Debian's `postgresql`.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

ROLE = "qrm"
# Characters a URL must quote, so a test notices one that is not quoted (or leaked unquoted).
PASSWORD = "pw:S3cr@t/?#x"


class PgServerError(RuntimeError):
    pass


def bindir() -> Path:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise PgServerError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/setup-interop")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    """A running server; `url(database)` is a SQLAlchemy URL for the test role (no password by default)."""

    port: int
    bindir: Path
    base: Path
    sockets: Path
    as_postgres: list[str]
    role: str = ROLE
    password: str = PASSWORD
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([*self.as_postgres, *args], capture_output=True, text=True, timeout=timeout,
                                  check=check, cwd=self.base)
        except subprocess.CalledProcessError as exc:
            raise PgServerError(f"{' '.join(args[:1])} failed: {exc.stderr or exc.stdout}") from None

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the Unix socket; returns the unaligned, tuples-only output."""
        return self.run(str(self.bindir / "psql"), "-h", str(self.sockets), "-p", str(self.port), "-U", "postgres",
                        "-d", database, "-v", "ON_ERROR_STOP=1", "-q", "-A", "-t", "-c", sql).stdout

    def url(self, database: str, *, with_password: bool = False, password: str | None = None) -> str:
        secret = self.password if password is None else password
        auth = f"{self.role}:{quote(secret, safe='')}" if with_password else self.role
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A fresh empty database owned by the test role; returns its name."""
        name = name or f"qrm_{os.getpid()}_{next(self._numbers)}"
        self.psql(f'CREATE DATABASE "{name}" OWNER {self.role}')
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        try:
            self.run(str(self.bindir / "pg_ctl"), "-D", str(self.base / "data"), "-m", "immediate", "-w", "stop",
                     check=False)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def start(max_connections: int = 200) -> PgServer:
    """Start a server (a few seconds); the caller stops it."""
    binaries = bindir()
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        raise PgServerError("no postgres system user: run scripts/setup-interop") from None
    as_postgres: list[str] = []
    if os.getuid() == 0:
        as_postgres = ["runuser", "-u", "postgres", "--"]
    elif os.getuid() != owner.pw_uid:
        raise PgServerError("initdb must run as the postgres user: run as root or as postgres")
    base = Path(tempfile.mkdtemp(prefix="qrm-pg-"))
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    os.chmod(base, 0o755)
    if os.getuid() == 0:
        os.chown(base, owner.pw_uid, owner.pw_gid)
        os.chown(sockets, owner.pw_uid, owner.pw_gid)
    server = PgServer(free_port(), binaries, base, sockets, as_postgres)
    try:
        server.run(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync",
                   "-E", "UTF8")
        # scram for TCP: the role's password is really checked; trust on the private socket for setup.
        hba = data / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        if os.getuid() == 0:
            os.chown(hba, owner.pw_uid, owner.pw_gid)
        server.run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o",
                   f"-p {server.port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c max_connections={max_connections} -c synchronous_commit=off -c full_page_writes=off",
                   "start")
        secret = server.password.replace("'", "''")
        server.psql(f"CREATE ROLE {server.role} LOGIN CREATEDB PASSWORD '{secret}'")
    except BaseException:
        log = base / "log"
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        server.stop()
        if detail:
            raise PgServerError(f"cannot start PostgreSQL; its log ends:\n{detail}") from None
        raise
    return server


@dataclass(frozen=True)
class PgDatabase:
    """A fresh empty database owned by a login role with a password. `url` has no password (PGPASSWORD
    holds it for the test, and for the processes it starts); `url_with_password` has it, quoted."""

    server: PgServer
    name: str
    url: str
    url_with_password: str
    password: str


__all__ = ["PASSWORD", "ROLE", "PgDatabase", "PgServer", "PgServerError", "bindir", "free_port", "start"]

