"""Shared fixtures: a workspace in tmp_path, and qrm run as a user runs it (CliRunner or a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import cli
from tests import pgserver

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Workspace:
    root: Path

    def write(self, relative: str, content: str) -> Path:
        """Write a file (dedented) under the workspace, e.g. write("manifests/a.yaml", "kind: ...")."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content).lstrip("\n"))
        return path

    def manifest(self, name: str, content: str) -> Path:
        return self.write(f"manifests/{name}", content)

    def qrm(self, *args: str, input: str | None = None) -> Result:
        """Run qrm in this workspace in-process, as the console script would."""
        return CliRunner().invoke(cli, ["-C", str(self.root), *args], input=input, catch_exceptions=False)

    def qrm_process(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run qrm as a separate process (for locking and concurrency tests)."""
        return subprocess.run([sys.executable, "-m", "reconciler", "-C", str(self.root), *args],
                              capture_output=True, text=True, timeout=timeout, env={**os.environ})

    @property
    def lockfile(self) -> Path:
        return self.root / "reports" / "allocations.yaml"


@pytest.fixture(autouse=True)
def private_age_keys(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the user's real age keys: HOME and XDG_CONFIG_HOME point to a fresh
    folder and the SOPS_AGE_* variables are unset (tests that need a key set them)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("SOPS_AGE_KEY", raising=False)
    monkeypatch.delenv("SOPS_AGE_KEY_FILE", raising=False)
    return home


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    (root / "manifests").mkdir(parents=True)
    return Workspace(root)


# --- PostgreSQL: one server per session, one fresh database per test ---------------------------------

@dataclass(frozen=True)
class PgDatabase:
    """A fresh empty database owned by a login role with a password. `url` has no password (PGPASSWORD
    holds it for the test, and for the processes it starts); `url_with_password` has it, quoted."""

    server: pgserver.PgServer
    name: str
    url: str
    url_with_password: str
    password: str


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pgserver.PgServer]:
    """The session's PostgreSQL server (max_connections 200). No PostgreSQL is a failure, not a skip."""
    try:
        server = pgserver.start(max_connections=200)
    except pgserver.PgServerError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_database(pg_server: pgserver.PgServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[PgDatabase]:
    name = pg_server.create_database()
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    yield PgDatabase(pg_server, name, pg_server.url(name), pg_server.url(name, with_password=True),
                     pg_server.password)
    pg_server.drop_database(name)
