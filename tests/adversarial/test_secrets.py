"""Attacks on secrets.enc by someone without the age key (a contributor's PR, a hand edit), end to end.

A real workspace with a real age key and a real secret applied; the attacker edits secrets.enc as a
text editor would and the commands a reviewer or `qrm watch` runs must refuse, on one line naming
secrets.enc, its line and the entry, with nothing written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.edges import sops
from tests.support.secret_project import CANARY, PROJECT
from tests.support.workspace import Workspace

SHADOW = "quantumblog/prod/DB_PASSWORD"  # resolved before quantumblog/DB_PASSWORD, the real secret


@pytest.fixture
def applied(workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A workspace whose prod .env holds CANARY, set with `qrm secrets set` and written by `qrm apply`."""
    identity, recipient = sops.generate_identity()
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"# public key: {recipient}\n{identity}\n")
    key_file.chmod(0o600)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
    workspace.write(".sops.yaml", f"creation_rules:\n  - path_regex: secrets\\.enc$\n    age: {recipient}\n")
    workspace.manifest("quantumblog.yaml", PROJECT)
    result = workspace.qrm("secrets", "set", "DB_PASSWORD", "-p", "quantumblog", input=CANARY + "\n")
    assert result.exit_code == 0, result.output
    result = workspace.qrm("apply", "--yes", "--no-refresh")
    assert result.exit_code == 0, result.output
    assert f'DB_PASSWORD="{CANARY}"' in env_file(workspace).read_text()
    return workspace


def env_file(ws: Workspace) -> Path:
    return ws.root / "generated" / "quantumblog" / "prod" / ".env"


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the workspace but the lock files (taking a lock is not writing)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock") and not p.name.endswith("-lock")}


def edited(text: str, where: str, entry: str) -> tuple[str, int]:
    """secrets.enc with `entry` put in by hand at `where`; the text and the entry's line (1-based)."""
    lines = text.splitlines(keepends=True)
    at = {"first line": 0, "before sops:": lines.index("sops:\n"), "last line": len(lines)}[where]
    lines.insert(at, entry + "\n")
    return "".join(lines), at + 1


@pytest.mark.parametrize("entry", [f'{SHADOW}: ""', f"{SHADOW}: ''", f"{SHADOW}:", f'"{SHADOW}": ""'],
                         ids=["double-quoted", "single-quoted", "null", "quoted-key"])
@pytest.mark.parametrize("where", ["first line", "before sops:", "last line"])
@pytest.mark.parametrize("command", [("plan", "--no-refresh"), ("apply", "--yes", "--no-refresh"), ("validate",),
                                     ("secrets", "get", "DB_PASSWORD", "-p", "quantumblog", "-e", "prod"),
                                     ("secrets", "set", "OTHER")],
                         ids=["plan", "apply", "validate", "secrets-get", "secrets-set"])
def test_an_empty_entry_added_without_the_key_never_shadows_the_real_secret(
        applied: Workspace, command: tuple[str, ...], where: str, entry: str) -> None:
    """Issue 15, item 5: an empty value adds no bytes to SOPS's MAC, so the edit passes it; it is refused."""
    secrets_file = applied.root / "secrets.enc"
    text, line = edited(secrets_file.read_text(), where, entry)
    secrets_file.write_text(text)
    before = snapshot(applied.root)

    result = applied.qrm(*command, input="another-value\n")

    assert result.exit_code == 1, result.output
    errors = [out for out in result.stderr.splitlines() if out.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error: secrets.enc"), errors[0]
    assert SHADOW in errors[0]
    if command[0] in ("plan", "apply", "validate"):  # located at the entry's line
        assert errors[0].startswith(f"error: secrets.enc:{line}:"), errors[0]
    assert "Traceback" not in result.output and CANARY not in result.output
    assert snapshot(applied.root) == before, "something was written"
    assert f'DB_PASSWORD="{CANARY}"' in env_file(applied).read_text()


def test_removing_the_line_is_the_way_back(applied: Workspace) -> None:
    secrets_file = applied.root / "secrets.enc"
    original = secrets_file.read_text()
    secrets_file.write_text(edited(original, "last line", f'{SHADOW}: ""')[0])
    assert applied.qrm("plan", "--no-refresh").exit_code == 1
    secrets_file.write_text(original)
    result = applied.qrm("plan", "--no-refresh")
    assert result.exit_code == 0, result.output
    assert "No changes." in result.stdout, result.output


def test_an_empty_secret_is_never_written(applied: Workspace) -> None:
    """What qrm refuses to read it never writes: an empty value from stdin is refused and nothing changes."""
    before = snapshot(applied.root)
    result = applied.qrm("secrets", "set", "DB_PASSWORD", "-p", "quantumblog", "-e", "prod", input="\n")
    assert result.exit_code == 1, result.output
    assert "empty" in result.stderr
    assert snapshot(applied.root) == before
