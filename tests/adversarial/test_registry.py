"""Attacks on what the registry records, by anyone who can read it (issue 15, item 6).

A shared PostgreSQL registry is readable by every workspace that uses it. It used to hold the plain
sha256 of each written .env: whoever knows the template (the registry's own masked text has it) and a
list of candidate passwords could confirm the right one offline. The guesser here does exactly that,
against a real SQLite registry and a real PostgreSQL one, with the right password among the candidates,
and first checks that its reconstruction of the .env is byte-exact (so the test fails if a plain hash
is ever recorded again). What the registry now holds of a .env is an HMAC with this machine's key,
kept outside the workspace.
"""

from __future__ import annotations

import base64
import hashlib
import re
import stat
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from reconciler.edges import machine_key, sops
from tests.support.pgserver import PgDatabase
from tests.support.secret_project import CANARY, PROJECT
from tests.support.workspace import Workspace

CANDIDATES = ["password", "hunter2", "letmein", "Summer2026!", CANARY, "correct horse battery staple"]
ENV = "generated/quantumblog/prod/.env"
PLACEHOLDER = re.compile(r"<secret [^>]*>")


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> str:
    """The workspace's registry: its private SQLite file, or a PostgreSQL database (QRM_REGISTRY)."""
    if request.param == "sqlite":
        monkeypatch.delenv("QRM_REGISTRY", raising=False)
        return f"sqlite:///{workspace.root / '.qrm' / 'registry.db'}"
    database: PgDatabase = request.getfixturevalue("pg_database")
    monkeypatch.setenv("QRM_REGISTRY", database.url)
    return database.url


@pytest.fixture
def applied(workspace: Workspace, registry_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A workspace whose prod .env holds CANARY, set with `qrm secrets set` and written by `qrm apply`."""
    identity, recipient = sops.generate_identity()
    key_file = tmp_path / "age-key.txt"
    key_file.write_text(f"{identity}\n")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
    workspace.write(".sops.yaml", f"creation_rules:\n  - path_regex: secrets\\.enc$\n    age: {recipient}\n")
    workspace.manifest("quantumblog.yaml", PROJECT)
    ok(workspace, "secrets", "set", "DB_PASSWORD", "-p", "quantumblog", input=CANARY + "\n")
    ok(workspace, "apply", "--yes", "--no-refresh")
    assert f'DB_PASSWORD="{CANARY}"' in (workspace.root / ENV).read_text()
    return workspace


def ok(ws: Workspace, *args: str, input: str | None = None) -> str:
    result = ws.qrm(*args, input=input)
    assert result.exit_code == 0, result.output
    return result.output


def changes(ws: Workspace) -> list[str]:
    """The change lines of `qrm plan`, whitespace collapsed."""
    output = ok(ws, "plan", "--no-refresh")
    return [" ".join(line.split()) for line in output.splitlines() if line[:4] in ("  + ", "  ~ ", "  - ", "  ! ")]


def registry_cells(url: str) -> list[str]:
    """Every value of every row of every table, as any reader of the registry sees them."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [str(value) for table in inspect(conn).get_table_names()
                    for row in conn.execute(text(f'SELECT * FROM "{table}"')) for value in row if value is not None]
    finally:
        engine.dispose()


def env_rows(url: str) -> dict[str, tuple[str, str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {str(path): (str(masked), str(sha)) for path, masked, sha in conn.execute(
                text("SELECT path, masked, written_sha FROM generated_files WHERE path LIKE '%/.env'"))}
    finally:
        engine.dispose()


def confirmed_guesses(url: str) -> list[str]:
    """The candidates a guesser confirms from the registry alone: each .env row's masked text with the
    candidate put in place of its placeholder, hashed, and looked for among every value the registry holds."""
    cells = set(registry_cells(url))
    found = []
    for masked, _ in env_rows(url).values():
        for candidate in CANDIDATES:
            rebuilt = PLACEHOLDER.sub(lambda _, c=candidate: c, masked).encode()
            for digest in (hashlib.sha256(rebuilt), hashlib.sha512(rebuilt), hashlib.sha1(rebuilt)):
                if {digest.hexdigest(), digest.hexdigest().upper(), base64.b64encode(digest.digest()).decode(),
                        base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")} & cells:
                    found.append(candidate)
    return found


def the_guesser_rebuilds_the_env_exactly(ws: Workspace, url: str) -> None:
    """The guesser's model is right: with the right candidate its text is the .env on disk, byte for byte."""
    masked, _ = env_rows(url)[ENV]
    assert PLACEHOLDER.sub(lambda _: CANARY, masked) == (ws.root / ENV).read_text()


def as_an_older_qrm_recorded_it(ws: Workspace, url: str) -> None:
    """The .env rows as qrm wrote them before keyed hashes: the plain sha256 of the file's text."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for path in env_rows(url):
                plain = hashlib.sha256((ws.root / path).read_bytes()).hexdigest()
                conn.execute(text("UPDATE generated_files SET written_sha = :sha WHERE path = :path"),
                             {"sha": plain, "path": path})
    finally:
        engine.dispose()


def test_a_guesser_cannot_confirm_the_password_from_the_registry(applied: Workspace, registry_url: str) -> None:
    the_guesser_rebuilds_the_env_exactly(applied, registry_url)
    assert confirmed_guesses(registry_url) == []
    assert not any(CANARY in cell for cell in registry_cells(registry_url))
    (_, recorded), = [row for path, row in env_rows(registry_url).items() if path == ENV]
    assert recorded.startswith("hmac:") and len(recorded) <= 64  # fits the column (VARCHAR(64))


def test_the_key_is_outside_the_workspace_and_private(applied: Workspace) -> None:
    key_file = machine_key.key_file()
    assert key_file.is_file() and applied.root not in key_file.parents
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize("edit", ["the secret's value", "another line", "a line added"])
def test_a_hand_edited_env_is_still_drift(applied: Workspace, edit: str) -> None:
    env = applied.root / ENV
    original = env.read_text()
    edited = {
        "the secret's value": original.replace(CANARY, CANARY[:-1] + "X"),
        "another line": original.replace('DATASOURCE_MAIN_USER="blog"', 'DATASOURCE_MAIN_USER="root"'),
        "a line added": original + "EXTRA=1\n",
    }[edit]
    assert edited != original
    env.write_text(edited)
    assert changes(applied) == [f"! file.{ENV} (edited by hand since the last apply; apply rewrites it)"]
    ok(applied, "apply", "--yes", "--no-refresh")
    assert env.read_text() == original
    assert changes(applied) == []


def test_the_plan_document_holds_no_plain_hash_of_an_edited_env(applied: Workspace) -> None:
    env = applied.root / ENV
    env.write_text(env.read_text().replace(CANARY, "hunter2"))
    plan = ok(applied, "plan", "--no-refresh", "--json")
    assert hashlib.sha256(env.read_bytes()).hexdigest() not in plan
    assert "hunter2" not in plan and CANARY not in plan


def test_a_registry_written_by_the_previous_version_is_rekeyed_by_the_next_apply(
        applied: Workspace, registry_url: str) -> None:
    as_an_older_qrm_recorded_it(applied, registry_url)
    assert confirmed_guesses(registry_url) == [CANARY]  # the oracle this fixes
    env = applied.root / ENV
    before = (env.read_bytes(), env.stat().st_mtime_ns)

    # plan names the one change and why; nothing about the files
    assert changes(applied) == ["! registry (an older qrm recorded a plain sha256 of 1 .env file, which lets "
                                "registry readers test password guesses; apply records keyed ones (HMAC with this "
                                "machine's key), files unchanged)"]
    ok(applied, "apply", "--yes", "--no-refresh")

    assert (env.read_bytes(), env.stat().st_mtime_ns) == before
    assert confirmed_guesses(registry_url) == []
    assert changes(applied) == []
    env.write_text(env.read_text().replace(CANARY, "hunter2"))  # drift still seen after the migration
    assert changes(applied) == [f"! file.{ENV} (edited by hand since the last apply; apply rewrites it)"]


def test_an_old_record_of_a_hand_edited_env_shows_the_edit_and_is_replaced(
        applied: Workspace, registry_url: str) -> None:
    as_an_older_qrm_recorded_it(applied, registry_url)
    env = applied.root / ENV
    original = env.read_text()
    env.write_text(original.replace(CANARY, "hunter2"))
    assert sorted(changes(applied)) == sorted([
        f"! file.{ENV} (edited by hand since the last apply; apply rewrites it)",
        "! registry (an older qrm recorded a plain sha256 of 1 .env file, which lets registry readers test password "
        "guesses; apply records keyed ones (HMAC with this machine's key), files unchanged)"])
    ok(applied, "apply", "--yes", "--no-refresh")
    assert env.read_text() == original
    assert confirmed_guesses(registry_url) == [] and changes(applied) == []


def test_another_machines_key_is_no_spurious_change(applied: Workspace, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared registry read from a machine with another key (or whose key was lost): the .env is
    compared as far as it can be without that key, every line but the secrets' values."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "other-machine"))
    assert machine_key.read_key() is None
    assert changes(applied) == []
    env = applied.root / ENV
    env.write_text(env.read_text().replace('DATASOURCE_MAIN_USER="blog"', 'DATASOURCE_MAIN_USER="root"'))
    assert changes(applied) == [f"! file.{ENV} (edited by hand since the last apply; apply rewrites it)"]


def test_a_damaged_machine_key_is_one_clear_error(applied: Workspace) -> None:
    key_file = machine_key.key_file()
    key_file.write_text("not a key\n")
    before = (applied.root / ENV).read_bytes()
    for command in (("plan", "--no-refresh"), ("apply", "--yes", "--no-refresh")):
        result = applied.qrm(*command)
        assert result.exit_code == 1
        assert result.stderr.splitlines() == [f"error: {key_file}: not a qrm machine key (64 hex digits); move it "
                                              "away: qrm apply makes a new one"]
    assert (applied.root / ENV).read_bytes() == before
    key_file.unlink()  # as the message says: then apply makes a new key, and nothing changes
    assert changes(applied) == []
    ok(applied, "apply", "--yes", "--no-refresh")
    assert machine_key.read_key() is not None


def test_an_old_record_of_a_hand_edit_that_policy_warn_keeps_is_replaced_and_the_edit_still_shows(
        applied: Workspace, registry_url: str) -> None:
    applied.write("qrm.yaml", "generated_policy:\n  .env: warn\n")
    as_an_older_qrm_recorded_it(applied, registry_url)
    env = applied.root / ENV
    kept = env.read_text().replace(CANARY, "hunter2")
    env.write_text(kept)
    warning = f"{ENV} was edited by hand since the last apply; its policy is warn, so apply keeps the edit"
    assert warning in ok(applied, "plan", "--no-refresh")
    ok(applied, "apply", "--yes", "--no-refresh")
    assert env.read_text() == kept
    assert confirmed_guesses(registry_url) == []
    output = ok(applied, "plan", "--no-refresh")
    assert warning in output and "No changes." in output
