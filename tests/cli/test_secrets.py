"""`qrm init` and `qrm secrets` as a user runs them: real age keys, real secrets.enc files and real
git repositories, all in tmp_path.

The autouse fixture in conftest.py gives every test an empty HOME and no SOPS_AGE_* variables;
a test that needs a key writes one and points SOPS_AGE_KEY_FILE at it.
"""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyrage
import pytest
import yaml
from click.testing import CliRunner, Result

from reconciler.cli import cli
from reconciler.core.errors import SecretsError
from reconciler.core.secret_scope import resolve
from reconciler.edges import sops
from tests.support.workspace import Workspace

# --- helpers -------------------------------------------------------------------------------------------

PROJECT = """\
kind: Project
name: quantumblog
environments:
  dev:  {host: localhost}
  prod: {host: localhost}
services:
  db: {type: database}
datasources:
  main:
    driver: postgresql
    service: db
    database: blog
    username: blog
    password: "secret:DB_PASSWORD"
"""
PASSWORD_LINE = PROJECT.splitlines().index('    password: "secret:DB_PASSWORD"') + 1
PASSWORD_AT = f"manifests/quantumblog.yaml:{PASSWORD_LINE}:5"


@dataclass
class Key:
    file: Path
    recipient: str


def new_key(path: Path) -> Key:
    """A real age key file, as age-keygen writes it (mode 0600)."""
    identity, recipient = sops.generate_identity()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# created: test\n# public key: {recipient}\n{identity}\n")
    path.chmod(0o600)
    return Key(path, recipient)


def sops_yaml(root: Path, *recipients: str) -> None:
    (root / ".sops.yaml").write_text("creation_rules:\n  - path_regex: secrets\\.enc$\n"
                                     f"    age: {','.join(recipients)}\n")


def use_key(monkeypatch: pytest.MonkeyPatch, key: Key | Path | None) -> None:
    """Make `key` the only age key qrm finds (None: no key at all)."""
    if key is None:
        monkeypatch.delenv("SOPS_AGE_KEY_FILE", raising=False)
    else:
        monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key.file if isinstance(key, Key) else key))


def assert_no_key_at_hand() -> None:
    with pytest.raises(SecretsError):
        sops.load_identities()


def qrm(*args: str, input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def set_secret(ws: Workspace, name: str, value: str, *scope: str) -> Result:
    result = ws.qrm("secrets", "set", name, *scope, input=value + "\n")
    assert result.exit_code == 0, result.output
    return result


def get_secret(ws: Workspace, name: str, *scope: str) -> bytes:
    result = ws.qrm("secrets", "get", name, *scope)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def qrm_run(root: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """qrm as a separate process, with bytes on stdin."""
    return subprocess.run([sys.executable, "-m", "reconciler", "-C", str(root), *args], input=input,
                          capture_output=True, timeout=60, env={**os.environ})


def ciphertexts(ws: Workspace) -> dict[str, str]:
    encrypted = sops.read_file(ws.root / "secrets.enc")
    assert encrypted is not None
    return encrypted.flat_values()


def listed(ws: Workspace) -> Any:
    result = ws.qrm("secrets", "list", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def wrapped_data_key(ws: Workspace) -> Any:
    encrypted = sops.read_file(ws.root / "secrets.enc")
    assert encrypted is not None
    return encrypted.metadata["age"]


def fixed_clock(monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    """qrm's clock for timestamps in secrets.enc (`lastmodified`, `changed`, `rotated`)."""
    monkeypatch.setattr(sops, "utc_now", lambda: when)


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t",
                                 "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                                 "GIT_COMMITTER_EMAIL": "t@example.com"})
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Key:
    made = new_key(tmp_path / "keys" / "alice.txt")
    use_key(monkeypatch, made)
    return made


@pytest.fixture
def keyed(workspace: Workspace, key: Key) -> Workspace:
    """A workspace whose .sops.yaml names `key`, with the project that references secret:DB_PASSWORD."""
    sops_yaml(workspace.root, key.recipient)
    workspace.write("manifests/quantumblog.yaml", PROJECT)
    return workspace


# --- qrm init -------------------------------------------------------------------------------------------

def recipients_in_sops_yaml(root: Path) -> list[str]:
    rules = yaml.safe_load((root / ".sops.yaml").read_text())["creation_rules"]
    return [r.strip() for r in rules[0]["age"].split(",")]


def recipient_of(key_file: Path) -> str:
    lines = [line for line in key_file.read_text().splitlines() if line.startswith("AGE-SECRET-KEY-1")]
    assert len(lines) == 1
    return str(pyrage.x25519.Identity.from_str(lines[0]).to_public())


def test_init_makes_an_age_key_in_sops_age_key_file_and_a_sops_yaml_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_age_keys: Path) -> None:
    key_file = tmp_path / "keys" / "qrm.txt"
    use_key(monkeypatch, key_file)
    result = qrm("init", str(tmp_path / "fleet"))
    assert result.exit_code == 0, result.output
    assert key_file.stat().st_mode & 0o777 == 0o600
    recipient = recipient_of(key_file)
    assert recipients_in_sops_yaml(tmp_path / "fleet") == [recipient]
    assert f"created age key {key_file} (recipient {recipient})" in result.stdout
    assert not (private_age_keys / ".config" / "sops").exists()

    fleet = Workspace(tmp_path / "fleet")
    set_secret(fleet, "TOKEN", "made-with-the-init-key")
    assert get_secret(fleet, "TOKEN") == b"made-with-the-init-key"


def test_init_without_sops_age_key_file_uses_sops_default_key_file(tmp_path: Path,
                                                                    private_age_keys: Path) -> None:
    result = qrm("init", str(tmp_path / "fleet"))
    assert result.exit_code == 0, result.output
    key_file = private_age_keys / ".config" / "sops" / "age" / "keys.txt"  # $XDG_CONFIG_HOME/sops/age/keys.txt
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert recipients_in_sops_yaml(tmp_path / "fleet") == [recipient_of(key_file)]


def test_a_second_init_in_another_folder_reuses_the_key(tmp_path: Path, private_age_keys: Path) -> None:
    assert qrm("init", str(tmp_path / "one")).exit_code == 0
    key_file = private_age_keys / ".config" / "sops" / "age" / "keys.txt"
    before = key_file.read_bytes()
    second = qrm("init", str(tmp_path / "two"))
    assert second.exit_code == 0, second.output
    assert f"using age key {key_file}" in second.stdout
    assert key_file.read_bytes() == before
    assert recipients_in_sops_yaml(tmp_path / "two") == recipients_in_sops_yaml(tmp_path / "one")


def test_init_reuses_a_key_made_by_age_keygen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "age-keygen.txt"
    subprocess.run(["age-keygen", "-o", str(key_file)], check=True, capture_output=True, timeout=30)
    use_key(monkeypatch, key_file)
    before = key_file.read_bytes()
    result = qrm("init", str(tmp_path / "fleet"))
    assert result.exit_code == 0, result.output
    assert key_file.read_bytes() == before
    assert recipients_in_sops_yaml(tmp_path / "fleet") == [recipient_of(key_file)]


def test_init_puts_the_key_in_sops_age_key_file_even_when_the_default_key_file_holds_another(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_age_keys: Path) -> None:
    default = new_key(private_age_keys / ".config" / "sops" / "age" / "keys.txt")
    key_file = tmp_path / "keys" / "fleet.txt"
    use_key(monkeypatch, key_file)
    result = qrm("init", str(tmp_path / "fleet"))
    assert result.exit_code == 0, result.output
    assert key_file.is_file(), "SOPS reads SOPS_AGE_KEY_FILE: the key .sops.yaml names must be in it"
    assert recipients_in_sops_yaml(tmp_path / "fleet") == [recipient_of(key_file)] != [default.recipient]


def test_init_refuses_a_damaged_key_file_rather_than_adding_to_it(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "keys.txt"
    key_file.write_text("AGE-SECRET-KEY-1 cut short by a bad paste\n")
    use_key(monkeypatch, key_file)
    result = qrm("init", str(tmp_path / "fleet"))
    assert result.exit_code == 1
    assert result.stderr == f"error: {key_file}:1: not an age identity (AGE-SECRET-KEY-1…)\n"
    assert key_file.read_text() == "AGE-SECRET-KEY-1 cut short by a bad paste\n"
    assert not (tmp_path / "fleet" / ".sops.yaml").exists()


# --- set, get, list, rm ------------------------------------------------------------------------------

AWKWARD_VALUES = [
    "plain",
    "with spaces  and\ttabs ",
    "  leading and trailing spaces  ",
    "# not a comment",
    "key: value # yaml-looking",
    "quotes ' and \" and `backticks`",
    "$HOME and ${PATH} and $(id) and \\n",
    "a=b=c==",
    "line one\nline two\n\nline four",
    "ends with its own newline\n",
    "carriage\r\nreturn\r",
    "pässwörd ✓ 密码 🔑",
    "yes",
    "null",
    "0123",
    "1.50",
    "ENC[AES256_GCM,data:AAAA,iv:AAAA,tag:AAAA,type:str]",
    "x" * 20_000,
]


@pytest.mark.parametrize("value", AWKWARD_VALUES, ids=range(len(AWKWARD_VALUES)))
def test_a_value_from_stdin_comes_back_byte_exact(keyed: Workspace, value: str) -> None:
    set_secret(keyed, "VALUE", value)  # `echo "$VALUE" |` adds one newline, which set strips
    assert get_secret(keyed, "VALUE") == value.encode()


def test_only_a_single_trailing_newline_is_stripped(keyed: Workspace) -> None:
    for given, kept in [("no newline", "no newline"), ("one\n", "one"), ("two\n\n", "two\n"), (" \n", " ")]:
        assert keyed.qrm("secrets", "set", "V", input=given).exit_code == 0
        assert get_secret(keyed, "V") == kept.encode()


def test_a_value_piped_into_a_real_process_comes_back_byte_exact(keyed: Workspace) -> None:
    value = "pässwörd ✓ $HOME 'q' \"d\" #c =\nsecond line\x00\r".encode()
    assert qrm_run(keyed.root, "secrets", "set", "PIPED", input=value + b"\n").returncode == 0
    got = qrm_run(keyed.root, "secrets", "get", "PIPED")
    assert got.returncode == 0, got.stderr
    assert got.stdout == value


def test_a_value_that_is_not_utf8_is_refused_without_a_traceback(keyed: Workspace) -> None:
    set_secret(keyed, "KEPT", "kept")
    before = (keyed.root / "secrets.enc").read_bytes()
    result = qrm_run(keyed.root, "secrets", "set", "BINARY", input=b"\xff\xfe\x80 not text")
    assert result.returncode == 1
    assert result.stderr.decode().startswith("error: ")
    assert len(result.stderr.splitlines()) == 1
    assert b"Traceback" not in result.stderr
    assert (keyed.root / "secrets.enc").read_bytes() == before


def test_get_reads_exactly_the_scope_it_is_given(keyed: Workspace) -> None:
    set_secret(keyed, "DB_PASSWORD", "global")
    set_secret(keyed, "DB_PASSWORD", "project", "--project", "quantumblog")
    set_secret(keyed, "DB_PASSWORD", "prod", "--project", "quantumblog", "--env", "prod")
    assert get_secret(keyed, "DB_PASSWORD") == b"global"
    assert get_secret(keyed, "DB_PASSWORD", "-p", "quantumblog") == b"project"
    assert get_secret(keyed, "DB_PASSWORD", "-p", "quantumblog", "-e", "prod") == b"prod"
    dev = keyed.qrm("secrets", "get", "DB_PASSWORD", "-p", "quantumblog", "-e", "dev")  # no fallback for get
    assert dev.exit_code == 1
    assert dev.stderr == "error: secrets.enc has no secret quantumblog/dev/DB_PASSWORD\n"


def test_list_shows_names_scopes_and_times_never_values_and_needs_no_key(
        keyed: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    fixed_clock(monkeypatch, "2026-01-02T03:04:05Z")
    set_secret(keyed, "API_TOKEN", "value-of-the-token")
    set_secret(keyed, "DB_PASSWORD", "value-of-the-password", "-p", "quantumblog", "-e", "prod")
    use_key(monkeypatch, None)
    assert_no_key_at_hand()

    text = keyed.qrm("secrets", "list")
    assert text.exit_code == 0, text.output
    rows = [line.split() for line in text.stdout.splitlines()]
    assert ["API_TOKEN", "global", "2026-01-02T03:04:05Z"] in rows
    assert ["quantumblog/prod/DB_PASSWORD", "environment", "quantumblog/prod", "2026-01-02T03:04:05Z"] in rows
    assert "2 secret(s); data key last rotated: never" in text.stdout
    assert listed(keyed) == {"rotated_at": None, "secrets": [
        {"key": "API_TOKEN", "name": "API_TOKEN", "scope": "global", "changed_at": "2026-01-02T03:04:05Z"},
        {"key": "quantumblog/prod/DB_PASSWORD", "name": "DB_PASSWORD", "scope": "environment quantumblog/prod",
         "changed_at": "2026-01-02T03:04:05Z"}]}
    for result in (text, keyed.qrm("secrets", "list", "--json")):
        assert "value-of" not in result.output


def test_list_without_a_secrets_file_says_how_to_add_one(keyed: Workspace) -> None:
    result = keyed.qrm("secrets", "list")
    assert result.exit_code == 0
    assert result.stdout == "No secrets. Add one with: qrm secrets set NAME [--project P] [--env E]\n"


def test_rm_removes_one_secret_and_keeps_the_others(keyed: Workspace) -> None:
    set_secret(keyed, "A", "a")
    set_secret(keyed, "B", "b", "-p", "quantumblog")
    before = ciphertexts(keyed)
    result = keyed.qrm("secrets", "rm", "B", "-p", "quantumblog")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Removed quantumblog/B from secrets.enc.\n"
    assert ciphertexts(keyed) == {"A": before["A"]}
    assert [s["key"] for s in listed(keyed)["secrets"]] == ["A"]
    again = keyed.qrm("secrets", "rm", "B", "-p", "quantumblog")
    assert (again.exit_code, again.stderr) == (1, "error: secrets.enc has no secret quantumblog/B\n")


def test_rotate_changes_every_ciphertext_and_no_value(keyed: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    fixed_clock(monkeypatch, "2026-01-01T00:00:00Z")
    values = {"A": "alpha", "B": "beta", "C": "gamma"}
    for name, value in values.items():
        set_secret(keyed, name, value)
    before = ciphertexts(keyed)
    wrapped_before = wrapped_data_key(keyed)
    changed_before = {s["key"]: s["changed_at"] for s in listed(keyed)["secrets"]}

    fixed_clock(monkeypatch, "2026-02-01T00:00:00Z")
    result = keyed.qrm("secrets", "rotate")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Rotated the data key; re-encrypted 3 secret(s).\n"

    after = ciphertexts(keyed)
    assert set(after) == set(before)
    assert all(after[name] != before[name] for name in before)
    assert wrapped_data_key(keyed) != wrapped_before
    for name, value in values.items():
        assert get_secret(keyed, name) == value.encode()
    now = listed(keyed)
    assert now["rotated_at"] == "2026-02-01T00:00:00Z"
    assert {s["key"]: s["changed_at"] for s in now["secrets"]} == changed_before
    assert "data key last rotated: 2026-02-01T00:00:00Z" in keyed.qrm("secrets", "list").stdout


def test_updatekeys_lets_a_new_recipient_read_and_keeps_every_ciphertext(
        keyed: Workspace, key: Key, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_secret(keyed, "A", "alpha")
    set_secret(keyed, "B", "beta", "-p", "quantumblog")
    before = ciphertexts(keyed)
    bob = new_key(tmp_path / "keys" / "bob.txt")

    use_key(monkeypatch, bob)
    refused = keyed.qrm("secrets", "get", "A")
    assert refused.exit_code == 1
    assert "wrong key" in refused.stderr

    use_key(monkeypatch, key)
    sops_yaml(keyed.root, key.recipient, bob.recipient)
    result = keyed.qrm("secrets", "updatekeys")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Data key wrapped for 2 recipient(s): {key.recipient}, {bob.recipient}\n"
    assert ciphertexts(keyed) == before

    use_key(monkeypatch, bob)
    assert get_secret(keyed, "A") == b"alpha"
    assert get_secret(keyed, "B", "-p", "quantumblog") == b"beta"

    sops_yaml(keyed.root, bob.recipient)  # alice leaves
    assert keyed.qrm("secrets", "updatekeys").exit_code == 0
    use_key(monkeypatch, key)
    assert "wrong key" in keyed.qrm("secrets", "get", "A").stderr


# --- values never come from argv --------------------------------------------------------------------

def test_a_value_on_the_command_line_is_a_usage_error(keyed: Workspace) -> None:
    result = keyed.qrm_process("secrets", "set", "DB_PASSWORD", "hunter2-on-the-command-line")
    assert result.returncode == 1
    assert "Usage: qrm secrets set" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2-on-the-command-line" not in result.stderr + result.stdout  # not repeated into logs
    assert not (keyed.root / "secrets.enc").exists()


def answer_on_a_terminal(root: Path, answers: list[bytes], *args: str) -> tuple[int, bytes]:
    """Run `qrm -C ROOT ARGS` on a real terminal (a pty), type each answer after its prompt (the value,
    then its confirmation), and return the exit code and everything the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: qrm on a real terminal
        try:
            os.execve(sys.executable, [sys.executable, "-m", "reconciler", "-C", str(root), *args], dict(os.environ))
        finally:
            os._exit(127)
    seen = bytearray()

    def read_until(marker: bytes | None) -> None:
        deadline = time.monotonic() + 30
        while marker is None or marker not in seen:
            assert time.monotonic() < deadline, f"no {marker!r} from the terminal; saw {bytes(seen)!r}"
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                assert marker is None, f"the terminal closed before {marker!r}; saw {bytes(seen)!r}"
                return
            seen.extend(chunk)

    try:
        for prompt, answer in zip((b"Value of TYPED: ", b"Repeat for confirmation: "), answers, strict=True):
            read_until(prompt)
            os.write(fd, answer + b"\n")
        read_until(None)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), bytes(seen)


def test_on_a_terminal_set_prompts_twice_and_never_echoes_the_value(keyed: Workspace) -> None:
    value = "typed-at-the-prompt-Zq8#v"
    status, seen = answer_on_a_terminal(keyed.root, [value.encode(), value.encode()], "secrets", "set", "TYPED")
    assert status == 0, seen
    assert b"Set TYPED in secrets.enc." in seen
    assert value.encode() not in seen
    assert get_secret(keyed, "TYPED") == value.encode()


# --- scopes: secret:NAME resolves environment, then project, then global ----------------------------

@pytest.mark.parametrize(("available", "wanted"), [
    ({"quantumblog/prod/X", "quantumblog/X", "X"}, "quantumblog/prod/X"),
    ({"quantumblog/X", "X"}, "quantumblog/X"),
    ({"quantumblog/dev/X", "X"}, "X"),
    ({"X"}, "X"),
    ({"otherblog/X", "otherblog/prod/X", "quantumblog/dev/X"}, None),
])
def test_a_reference_resolves_environment_then_project_then_global(available: set[str], wanted: str | None) -> None:
    assert resolve("X", "quantumblog", "prod", available) == wanted


ENV = {"dev": "quantumblog/dev/DB_PASSWORD", "prod": "quantumblog/prod/DB_PASSWORD"}
PROJECT_KEY, GLOBAL_KEY = "quantumblog/DB_PASSWORD", "DB_PASSWORD"


@pytest.mark.parametrize(("keys", "missing", "looked_for"), [
    # keys in secrets.enc -> environments left without the secret, and the keys named as looked for
    ((), ["dev", "prod"], [ENV["dev"], ENV["prod"], PROJECT_KEY, GLOBAL_KEY]),
    ((ENV["prod"],), ["dev"], [ENV["dev"], PROJECT_KEY, GLOBAL_KEY]),
    ((ENV["dev"],), ["prod"], [ENV["prod"], PROJECT_KEY, GLOBAL_KEY]),
    ((ENV["dev"], ENV["prod"]), [], []),
    ((PROJECT_KEY,), [], []),
    ((GLOBAL_KEY,), [], []),
    ((ENV["prod"], PROJECT_KEY), [], []),
    ((ENV["prod"], GLOBAL_KEY), [], []),
    ((PROJECT_KEY, GLOBAL_KEY), [], []),
    ((ENV["dev"], ENV["prod"], PROJECT_KEY, GLOBAL_KEY), [], []),
    (("otherblog/DB_PASSWORD", "otherblog/prod/DB_PASSWORD"), ["dev", "prod"],
     [ENV["dev"], ENV["prod"], PROJECT_KEY, GLOBAL_KEY]),
    (("quantumblog/staging/DB_PASSWORD", "quantumblog/DB_PASSWORD_OLD"), ["dev", "prod"],
     [ENV["dev"], ENV["prod"], PROJECT_KEY, GLOBAL_KEY]),
])
def test_validate_and_plan_check_every_reference_without_a_key(
        keyed: Workspace, monkeypatch: pytest.MonkeyPatch, keys: tuple[str, ...], missing: list[str],
        looked_for: list[str]) -> None:
    set_secret(keyed, "UNRELATED", "u")
    # set refuses scopes the manifests do not declare: declare otherblog and staging while setting them
    prod = "  prod: {host: localhost}\n"
    keyed.write("manifests/quantumblog.yaml", PROJECT.replace(prod, prod + "  staging: {host: localhost}\n")
                + "---\nkind: Project\nname: otherblog\nenvironments:\n" + prod)
    for scoped in keys:
        *scope, name = scoped.split("/")
        set_secret(keyed, name, "v", *[arg for flag, part in zip(["-p", "-e"], scope, strict=False)
                                       for arg in (flag, part)])
    keyed.write("manifests/quantumblog.yaml", PROJECT)
    assert sorted(ciphertexts(keyed)) == sorted([*keys, "UNRELATED"])
    use_key(monkeypatch, None)
    assert_no_key_at_hand()

    text, as_json = keyed.qrm("validate"), keyed.qrm("validate", "--json")
    plan = keyed.qrm("plan", "--no-refresh")
    if not missing:
        assert (text.exit_code, as_json.exit_code, plan.exit_code) == (0, 0, 0), text.output + plan.output
        assert json.loads(as_json.stdout)["valid"] is True
        return
    message = (f"secret DB_PASSWORD is not set for quantumblog environment(s) {', '.join(missing)} "
               f"(secrets.enc has none of {', '.join(looked_for)}); "
               "set it with: qrm secrets set DB_PASSWORD --project quantumblog")
    line = f"error: {PASSWORD_AT}: datasources.main.password: {message}"
    assert (text.exit_code, as_json.exit_code, plan.exit_code) == (1, 1, 1)
    assert text.stderr.splitlines() == [line, "1 problem(s) found."]
    assert json.loads(as_json.stdout)["problems"] == [{
        "file": "manifests/quantumblog.yaml", "line": PASSWORD_LINE, "column": 5,
        "field": "datasources.main.password", "message": message}]
    assert plan.stderr.splitlines() == [line, "1 problem found; nothing was changed"]
    assert plan.stdout == ""


def test_a_reference_without_any_secrets_file_says_so(keyed: Workspace) -> None:
    result = keyed.qrm("validate")
    assert result.exit_code == 1
    assert f"error: {PASSWORD_AT}: datasources.main.password: secret DB_PASSWORD is not set for quantumblog " \
           "environment(s) dev, prod (secrets.enc does not exist)" in result.stderr


# --- plan shows secret names, never values, and needs no key -----------------------------------------

def change_lines(output: str) -> list[str]:
    return [" ".join(line.split()) for line in output.splitlines() if line[:4] in ("  + ", "  ~ ", "  - ", "  ! ")]


def test_plan_lists_changed_added_and_removed_secrets_by_name_only(
        keyed: Workspace, key: Key, monkeypatch: pytest.MonkeyPatch) -> None:
    values = ["project-password-v1", "prod-password-v1", "token-v1", "prod-password-v2", "new-secret-v1"]
    set_secret(keyed, "DB_PASSWORD", values[0], "-p", "quantumblog")
    set_secret(keyed, "DB_PASSWORD", values[1], "-p", "quantumblog", "-e", "prod")
    set_secret(keyed, "API_TOKEN", values[2])
    applied = keyed.qrm("apply", "--yes", "--no-refresh")
    assert applied.exit_code == 0, applied.output
    outputs = [applied.output]

    def plan_without_a_key() -> tuple[list[str], set[str], set[str]]:
        use_key(monkeypatch, None)
        assert_no_key_at_hand()
        text = keyed.qrm("plan", "--no-refresh")
        as_json = keyed.qrm("plan", "--no-refresh", "--json")
        markdown = keyed.qrm("plan", "--no-refresh", "--markdown")
        use_key(monkeypatch, key)
        assert (text.exit_code, as_json.exit_code, markdown.exit_code) == (0, 0, 0), text.output
        outputs.extend(r.output for r in (text, as_json, markdown))
        json_changes = {f"{c['symbol']} {c['address']} ({c['reason']})" for c in json.loads(as_json.stdout)["changes"]}
        markdown_changes = {" ".join(line.split()).removeprefix("! ")
                            for line in markdown.stdout.splitlines() if line[:2] in ("+ ", "! ", "- ")}
        return change_lines(text.stdout), json_changes, markdown_changes

    assert plan_without_a_key() == ([], set(), set())

    set_secret(keyed, "DB_PASSWORD", values[3], "-p", "quantumblog", "-e", "prod")
    changed = "~ secret.quantumblog/prod/DB_PASSWORD (secret changed)"
    env_file = "~ file.generated/quantumblog/prod/.env (content)"  # its placeholder names the new fingerprint
    assert plan_without_a_key() == ([changed, env_file], {changed, env_file}, {changed, env_file})

    set_secret(keyed, "DB_PASSWORD", values[0], "-p", "quantumblog")  # the same value again: no change
    assert plan_without_a_key() == ([changed, env_file], {changed, env_file}, {changed, env_file})

    set_secret(keyed, "NEW_SECRET", values[4], "-p", "quantumblog")
    assert keyed.qrm("secrets", "rm", "API_TOKEN").exit_code == 0
    expected = [changed, env_file, "+ secret.quantumblog/NEW_SECRET (secret added)",
                "- secret.API_TOKEN (secret removed)"]
    text_lines, json_changes, markdown_changes = plan_without_a_key()
    assert sorted(text_lines) == sorted(expected)
    assert json_changes == markdown_changes == set(expected)

    assert keyed.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    assert plan_without_a_key() == ([], set(), set())
    for output in outputs:
        for value in values:
            assert value not in output


def test_plan_tells_a_key_rotation_apart_from_a_value_change(keyed: Workspace, key: Key,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    values = ["project-password-v1", "prod-password-v1", "token-v1", "token-v2"]
    set_secret(keyed, "DB_PASSWORD", values[0], "-p", "quantumblog")
    set_secret(keyed, "DB_PASSWORD", values[1], "-p", "quantumblog", "-e", "prod")
    set_secret(keyed, "API_TOKEN", values[2])
    assert keyed.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    outputs = []

    def secret_lines() -> list[str]:
        use_key(monkeypatch, None)  # plan needs no key to tell them apart
        text, as_json = keyed.qrm("plan", "--no-refresh"), keyed.qrm("plan", "--no-refresh", "--json")
        use_key(monkeypatch, key)
        outputs.extend([text.output, as_json.output])
        from_json = sorted(f"{c['symbol']} {c['address']} ({c['reason']})"
                           for c in json.loads(as_json.stdout)["changes"] if c["address"].startswith("secret."))
        lines = sorted(line for line in change_lines(text.stdout) if " secret." in line)
        assert lines == from_json
        return lines

    rotated = "(re-encrypted: data key rotated; values unchanged)"
    assert keyed.qrm("secrets", "rotate").exit_code == 0
    assert secret_lines() == [f"~ secret.API_TOKEN {rotated}", f"~ secret.quantumblog/DB_PASSWORD {rotated}",
                              f"~ secret.quantumblog/prod/DB_PASSWORD {rotated}"]
    set_secret(keyed, "API_TOKEN", values[3])  # a value changed after the rotation: that one is a change
    assert secret_lines() == ["~ secret.API_TOKEN (secret changed)", f"~ secret.quantumblog/DB_PASSWORD {rotated}",
                              f"~ secret.quantumblog/prod/DB_PASSWORD {rotated}"]
    assert keyed.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    assert secret_lines() == []
    set_secret(keyed, "API_TOKEN", values[2])  # back to an earlier value: a new value all the same
    assert secret_lines() == ["~ secret.API_TOKEN (secret changed)"]
    for output in outputs:
        assert not any(value in output for value in values)


def test_a_fingerprint_recorded_before_value_ids_is_no_change_while_the_ciphertext_is_the_same(
        keyed: Workspace) -> None:
    set_secret(keyed, "DB_PASSWORD", "password", "-p", "quantumblog")
    assert keyed.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    state = keyed.root / "reports" / "state.yaml"
    text = state.read_text()
    assert re.search(r'"fingerprint": "[0-9a-f]{16}/[0-9a-f]{16}"', text)
    (keyed.root / ".qrm" / "registry.db").unlink()  # the record comes from reports/ as an older qrm wrote it
    state.write_text(re.sub(r'("fingerprint": "[0-9a-f]{16})/[0-9a-f]{16}"', r'\1"', text))
    plan = keyed.qrm("plan", "--no-refresh")
    assert " secret." not in plan.stdout, plan.stdout


# --- small diffs and atomic writes --------------------------------------------------------------------

def test_setting_one_secret_of_twenty_is_a_one_value_diff(keyed: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    git(keyed.root, "init", "-q")
    fixed_clock(monkeypatch, "2026-03-01T10:00:00Z")
    for number in range(20):
        set_secret(keyed, f"S{number:02d}", f"value {number}")
    git(keyed.root, "add", "secrets.enc")
    git(keyed.root, "commit", "-q", "-m", "twenty secrets")

    fixed_clock(monkeypatch, "2026-03-02T11:00:00Z")
    set_secret(keyed, "S07", "a new value")
    diff = git(keyed.root, "diff", "--unified=0", "secrets.enc").splitlines()
    removed = [line[1:] for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]
    shapes = [r"^S07: ENC\[AES256_GCM,", r'^        S07: "2026-03-0\d',
              r"^    lastmodified: ", r"^    mac: ENC\[AES256_GCM,"]
    for lines in (removed, added):
        assert len(lines) == 4, diff
        for line, shape in zip(lines, shapes, strict=True):
            assert re.match(shape, line), diff
    assert '        S07: "2026-03-01T10:00:00Z"' in removed
    assert '        S07: "2026-03-02T11:00:00Z"' in added
    assert get_secret(keyed, "S07") == b"a new value"
    assert get_secret(keyed, "S06") == b"value 6"


class Crash(BaseException):
    """The process dies here (a kill, a power cut): not an error qrm could report, so a BaseException."""


def test_a_crash_mid_write_leaves_the_old_file_whole(keyed: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    set_secret(keyed, "A", "alpha")
    set_secret(keyed, "B", "beta")
    path = keyed.root / "secrets.enc"
    before = path.read_bytes()

    def crash(*args: object, **kwargs: object) -> None:
        raise Crash

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", crash)  # the rename inside reconciler.edges.files.write_atomic
        patched.setattr(os, "unlink", lambda *args, **kwargs: None)  # a killed process cleans nothing up
        with pytest.raises(Crash):
            keyed.qrm("secrets", "set", "A", input="never written")
    assert path.read_bytes() == before
    assert [p.name for p in keyed.root.glob(".secrets.enc.*.tmp")] != []  # what the crash left behind
    assert get_secret(keyed, "A") == b"alpha"
    assert get_secret(keyed, "B") == b"beta"

    set_secret(keyed, "C", "gamma")
    assert list(keyed.root.glob(".secrets.enc.*.tmp")) == []
    assert [get_secret(keyed, name) for name in "ABC"] == [b"alpha", b"beta", b"gamma"]


# --- loud and safe failures ------------------------------------------------------------------------------

def flip_first_byte(enc: str) -> str:
    match = re.search(r"data:([A-Za-z0-9+/=]+)", enc)
    assert match is not None
    data = bytearray(base64.b64decode(match[1]))
    data[0] ^= 0x01
    return enc[:match.start(1)] + base64.b64encode(bytes(data)).decode() + enc[match.end(1):]


def edit_line(path: Path, prefix: str, edit: Callable[[str], str | None]) -> None:
    lines = path.read_text().splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    assert len(hits) == 1, prefix
    edited = edit(lines[hits[0]])
    lines[hits[0]:hits[0] + 1] = [] if edited is None else [edited]
    path.write_text("".join(lines))


def truncate(fraction: float) -> Callable[[Path], None]:
    def cut(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * fraction)])
    return cut


def move_ciphertext(path: Path) -> None:
    password = ciphertexts_of(path)["quantumblog/DB_PASSWORD"]
    edit_line(path, "API_TOKEN: ", lambda line: f"API_TOKEN: {password}\n")


def ciphertexts_of(path: Path) -> dict[str, str]:
    encrypted = sops.read_file(path)
    assert encrypted is not None
    return encrypted.flat_values()


@dataclass(frozen=True)
class Damage:
    name: str
    damage: Callable[[Path], None] | None  # what happens to secrets.enc
    key: str  # "alice" (the right key), "bob" (a wrong one), "none", "missing file"
    says: tuple[str, ...]  # besides secrets.enc, the error line names these ({home}, {keys} expand)


DAMAGES = [
    Damage("wrong key", None, "bob", ("none of your age keys opens it (wrong key?)",)),
    Damage("no key", None, "none", ("no age key", "{home}/.config/sops/age/keys.txt")),
    Damage("key file missing", None, "missing file", ("{keys}/missing.txt", "does not exist")),
    Damage("tampered value", lambda p: edit_line(p, "quantumblog/DB_PASSWORD: ", flip_first_byte), "alice",
           ("quantumblog/DB_PASSWORD: the value does not decrypt",)),
    Damage("tampered MAC", lambda p: edit_line(p, "    mac: ", flip_first_byte), "alice",
           ("sops.mac: the value does not decrypt",)),
    Damage("tampered lastmodified", lambda p: edit_line(p, "    lastmodified: ",
                                                         lambda _: '    lastmodified: "2030-01-01T00:00:00Z"\n'),
           "alice", ("sops.mac",)),
    Damage("value removed by hand", lambda p: edit_line(p, "API_TOKEN: ", lambda _: None), "alice",
           ("MAC mismatch",)),
    Damage("ciphertext moved to another name", move_ciphertext, "alice", ("API_TOKEN: the value does not decrypt",)),
    Damage("truncated to 20%", truncate(0.2), "alice", ("truncated",)),
    Damage("truncated to 60%", truncate(0.6), "alice", ("truncated",)),
    Damage("truncated to 95%", truncate(0.95), "alice", ("truncated",)),
    Damage("empty", truncate(0.0), "alice", ("truncated",)),
    Damage("SOPS version 4.0.0", lambda p: edit_line(p, "    version: ", lambda _: "    version: 4.0.0\n"), "alice",
           ("SOPS version 4.0.0 is not supported",)),
]
COMMANDS = [
    (("secrets", "get", "DB_PASSWORD", "--project", "quantumblog"), None),
    (("secrets", "set", "NEW_SECRET"), "new value\n"),
    (("secrets", "set", "API_TOKEN"), "changed value\n"),
    (("secrets", "rm", "API_TOKEN"), None),
    (("secrets", "rotate"), None),
    (("secrets", "updatekeys"), None),
]


def assert_one_error_line(result: Result, *says: str) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for part in ("secrets.enc", *says):
        assert part in lines[0]
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def filled(keyed: Workspace) -> Workspace:
    set_secret(keyed, "DB_PASSWORD", "the-password", "-p", "quantumblog")
    set_secret(keyed, "API_TOKEN", "the-token")
    return keyed


@pytest.mark.parametrize("case", DAMAGES, ids=[d.name for d in DAMAGES])
def test_a_damaged_file_or_a_missing_key_fails_loudly_and_changes_nothing(
        filled: Workspace, case: Damage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        private_age_keys: Path) -> None:
    path = filled.root / "secrets.enc"
    if case.damage is not None:
        case.damage(path)
    before = path.read_bytes()
    keys = tmp_path / "keys"
    use_key(monkeypatch, {"alice": keys / "alice.txt", "bob": new_key(keys / "bob.txt").file,
                          "none": None, "missing file": keys / "missing.txt"}[case.key])
    says = [s.format(home=private_age_keys, keys=keys) for s in case.says]
    for args, stdin in COMMANDS:
        result = filled.qrm(*args, input=stdin)
        assert_one_error_line(result, *says)
        assert result.stdout == ""
        assert path.read_bytes() == before, args
        assert list(filled.root.glob(".secrets.enc.*")) == []


@pytest.mark.parametrize("case", [d for d in DAMAGES if d.name.startswith(("truncated", "empty", "SOPS"))],
                         ids=lambda d: d.name)
def test_list_of_a_damaged_file_fails_loudly_but_needs_no_key(filled: Workspace, case: Damage,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert case.damage is not None
    case.damage(filled.root / "secrets.enc")
    use_key(monkeypatch, None)
    line = assert_one_error_line(filled.qrm("secrets", "list"), *case.says)
    as_json = filled.qrm("secrets", "list", "--json")  # the same error, as the JSON document --json asks for
    assert as_json.exit_code == 1
    assert [e["message"] for e in json.loads(as_json.stdout)["errors"]] == [line.removeprefix("error: ")]


@pytest.mark.parametrize(("args", "says"), [
    (("get", "NOT_THERE"), "secrets.enc has no secret NOT_THERE"),
    (("get", "NOT_THERE", "-p", "quantumblog", "-e", "prod"), "secrets.enc has no secret quantumblog/prod/NOT_THERE"),
    (("rm", "NOT_THERE"), "secrets.enc has no secret NOT_THERE"),
    (("get", "DB_PASSWORD", "--env", "prod"), "--project"),
    (("set", "DB_PASSWORD", "--env", "prod"), "--project"),
    (("rm", "DB_PASSWORD", "--env", "prod"), "--project"),
    (("set", "9_STARTS_WITH_A_DIGIT"), "'9_STARTS_WITH_A_DIGIT' is not a secret name"),
    (("set", "has-a-dash"), "'has-a-dash' is not a secret name"),
    (("set", "A", "-p", "Not A Project"), "is not a secret name"),
    (("set", "A", "-p", "quantumblog", "-e", "a/b"), "is not a secret name"),
    (("set", "PASSWORD_unencrypted"), "SOPS leaves keys ending in _unencrypted unencrypted"),
    (("get", "bad name"), "'bad name' is not a secret name"),
])
def test_a_wrong_name_or_scope_fails_loudly_and_changes_nothing(filled: Workspace, args: tuple[str, ...],
                                                                 says: str) -> None:
    path = filled.root / "secrets.enc"
    before = path.read_bytes()
    result = filled.qrm("secrets", *args, input="some value\n")
    assert_one_error_line(result, says)
    assert path.read_bytes() == before


# --- guardrails: empty values, undeclared scopes, referenced secrets, removed readers, resolution -----

TWO_PROJECTS = PROJECT + """\
---
kind: Project
name: shop
environments:
  staging: {host: localhost}
"""


def set_scoped(ws: Workspace, key: str, value: str) -> Result:
    """Set a secrets.enc key given as NAME, project/NAME or project/env/NAME."""
    *scope, name = key.split("/")
    return set_secret(ws, name, value, *[arg for flag, part in zip(("-p", "-e"), scope, strict=False)
                                         for arg in (flag, part)])


@pytest.mark.parametrize("given", ["", "\n"], ids=["empty stdin", "only a newline"])
def test_set_refuses_an_empty_value_and_changes_nothing(filled: Workspace, given: str) -> None:
    before = (filled.root / "secrets.enc").read_bytes()
    line = assert_one_error_line(filled.qrm("secrets", "set", "API_TOKEN", input=given), "empty")
    assert "API_TOKEN" in line
    assert (filled.root / "secrets.enc").read_bytes() == before
    piped = qrm_run(filled.root, "secrets", "set", "API_TOKEN", input=given.encode())
    assert piped.returncode == 1
    assert len(piped.stderr.splitlines()) == 1 and b"empty" in piped.stderr
    assert (filled.root / "secrets.enc").read_bytes() == before


def test_an_empty_answer_at_the_prompt_is_refused(keyed: Workspace) -> None:
    status, seen = answer_on_a_terminal(keyed.root, [b"", b""], "secrets", "set", "TYPED")
    assert status == 1, seen
    assert b"error: the value of TYPED is empty" in seen
    assert not (keyed.root / "secrets.enc").exists()


@pytest.mark.parametrize(("scope", "says"), [
    (("-p", "quantumblg"), "project 'quantumblg' is not declared in the manifests; known projects: quantumblog, shop"),
    (("-p", "quantumblog", "-e", "staging"), "project 'quantumblog' has no environment 'staging'; "
                                              "its environments: dev, prod"),
    (("-p", "shop", "-e", "prod"), "project 'shop' has no environment 'prod'; its environments: staging"),
])
@pytest.mark.parametrize("command", [("set",), ("get", "--resolve")], ids=["set", "get --resolve"])
def test_a_scope_the_manifests_do_not_declare_is_refused_naming_the_known_ones(
        filled: Workspace, scope: tuple[str, ...], says: str, command: tuple[str, ...]) -> None:
    filled.write("manifests/quantumblog.yaml", TWO_PROJECTS)
    if command == ("get", "--resolve") and "-e" not in scope:
        scope = (*scope, "-e", "prod")
        says = says.split(";")[0]
    before = (filled.root / "secrets.enc").read_bytes()
    assert_one_error_line(filled.qrm("secrets", command[0], "DB_PASSWORD", *command[1:], *scope,
                                     input="a value\n"), says)
    assert (filled.root / "secrets.enc").read_bytes() == before


def test_declared_scopes_are_accepted(filled: Workspace) -> None:
    filled.write("manifests/quantumblog.yaml", TWO_PROJECTS)
    set_secret(filled, "DB_PASSWORD", "shop-staging", "-p", "shop", "-e", "staging")
    set_secret(filled, "DB_PASSWORD", "shop", "-p", "shop")
    assert get_secret(filled, "DB_PASSWORD", "-p", "shop", "-e", "staging") == b"shop-staging"


def test_a_scope_stays_readable_and_removable_after_its_project_is_gone(filled: Workspace) -> None:
    filled.write("manifests/quantumblog.yaml", TWO_PROJECTS.split("---\n")[1])  # quantumblog removed
    assert get_secret(filled, "DB_PASSWORD", "-p", "quantumblog") == b"the-password"
    assert filled.qrm("secrets", "rm", "DB_PASSWORD", "-p", "quantumblog").exit_code == 0


@pytest.mark.parametrize(("keys", "removed", "warnings"), [
    # the only key: both environments lose their password
    ({"quantumblog/DB_PASSWORD"}, ("-p", "quantumblog"),
     [f"warning: {PASSWORD_AT.rsplit(':', 1)[0]}: datasource main of quantumblog/{env} referenced "
      "quantumblog/DB_PASSWORD; now not set: validate, plan and apply will fail" for env in ("dev", "prod")]),
    # prod's own key: prod falls back to the project's
    ({"quantumblog/DB_PASSWORD", "quantumblog/prod/DB_PASSWORD"}, ("-p", "quantumblog", "-e", "prod"),
     [f"warning: {PASSWORD_AT.rsplit(':', 1)[0]}: datasource main of quantumblog/prod referenced "
      "quantumblog/prod/DB_PASSWORD; now resolves to quantumblog/DB_PASSWORD"]),
    # the global key, which only dev reads (prod has its own)
    ({"DB_PASSWORD", "quantumblog/prod/DB_PASSWORD"}, (),
     [f"warning: {PASSWORD_AT.rsplit(':', 1)[0]}: datasource main of quantumblog/dev referenced "
      "DB_PASSWORD; now not set: validate, plan and apply will fail"]),
    # a key no environment reads: no warning
    ({"DB_PASSWORD", "quantumblog/DB_PASSWORD"}, (), []),
])
def test_rm_of_a_referenced_secret_warns_with_file_and_line_and_still_removes_it(
        keyed: Workspace, keys: set[str], removed: tuple[str, ...], warnings: list[str]) -> None:
    for key in sorted(keys):
        set_scoped(keyed, key, f"value-of-{key}")
    result = keyed.qrm("secrets", "rm", "DB_PASSWORD", *removed)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == warnings
    gone = "/".join([*removed[1::2], "DB_PASSWORD"])
    assert result.stdout == f"Removed {gone} from secrets.enc.\n"
    assert {s["key"] for s in listed(keyed)["secrets"]} == keys - {gone}
    assert "value-of" not in result.output


@pytest.mark.parametrize(("keys", "answers", "label"), [
    ({"DB_PASSWORD", "quantumblog/DB_PASSWORD", "quantumblog/prod/DB_PASSWORD"}, "quantumblog/prod/DB_PASSWORD",
     "environment quantumblog/prod key"),
    ({"DB_PASSWORD", "quantumblog/DB_PASSWORD", "quantumblog/dev/DB_PASSWORD"}, "quantumblog/DB_PASSWORD",
     "project quantumblog key"),
    ({"DB_PASSWORD", "shop/DB_PASSWORD"}, "DB_PASSWORD", "global key"),
])
def test_get_resolve_names_the_scope_that_answers_and_prints_its_value(
        keyed: Workspace, keys: set[str], answers: str, label: str) -> None:
    keyed.write("manifests/quantumblog.yaml", TWO_PROJECTS)
    for key in sorted(keys):
        set_scoped(keyed, key, f"value-of-{key}")
    result = keyed.qrm("secrets", "get", "DB_PASSWORD", "--resolve", "-p", "quantumblog", "-e", "prod")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"value-of-{answers}"
    assert result.stderr == f"secret:DB_PASSWORD for quantumblog/prod is {answers} ({label})\n"


def test_get_resolve_that_finds_nothing_names_every_key_looked_for(filled: Workspace) -> None:
    assert_one_error_line(filled.qrm("secrets", "get", "NOT_SET", "--resolve", "-p", "quantumblog", "-e", "prod"),
                          "secret:NOT_SET resolves nowhere for quantumblog/prod: secrets.enc has none of "
                          "quantumblog/prod/NOT_SET, quantumblog/NOT_SET, NOT_SET")


def test_get_resolve_needs_both_project_and_environment(filled: Workspace) -> None:
    result = filled.qrm("secrets", "get", "DB_PASSWORD", "--resolve", "-p", "quantumblog")
    assert result.exit_code != 0
    assert "--resolve needs --project P and --env E" in result.output
    assert "the-password" not in result.output


def test_updatekeys_that_removes_a_reader_says_to_rotate_and_change_the_values(
        keyed: Workspace, key: Key, tmp_path: Path) -> None:
    bob = new_key(tmp_path / "keys" / "bob.txt")
    sops_yaml(keyed.root, key.recipient, bob.recipient)
    set_secret(keyed, "A", "alpha")
    added = keyed.qrm("secrets", "updatekeys")  # nobody removed: no reminder
    assert (added.exit_code, added.stderr) == (0, "")

    sops_yaml(keyed.root, key.recipient)  # bob leaves
    result = keyed.qrm("secrets", "updatekeys")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Data key wrapped for 1 recipient(s): {key.recipient}\n"
    assert result.stderr.splitlines() == [
        f"warning: removed reader(s) {bob.recipient} still know the data key and every value (git history keeps "
        "the old file): run `qrm secrets rotate`, then change each value with `qrm secrets set`"]
    again = keyed.qrm("secrets", "updatekeys")  # already removed: said once
    assert (again.exit_code, again.stderr) == (0, "")
