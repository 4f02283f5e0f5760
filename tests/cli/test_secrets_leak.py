"""A secret value never leaks: a canary secret, used by a project's datasource, is looked for in the
output of every command (at debug log level, in every format, failing and succeeding) and in every
file of the workspace. Only `qrm secrets get` and `qrm secrets textconv` may print it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.edges import sops
from tests.support import api_server
from tests.support.workspace import Workspace

CANARY = "canary-" + os.urandom(32).hex()  # random and long: it cannot turn up by chance
PIECES = [CANARY, CANARY[7:39], CANARY[-32:]]  # a shortened or cut value is a leak too

PROJECT = """\
kind: Project
name: quantumblog
source: app
environments:
  dev:  {host: localhost}
  prod: {host: localhost}
services:
  web: {type: app}
  db:  {type: database}
datasources:
  main: {driver: postgresql, service: db, database: blog, username: blog, password: "secret:DB_PASSWORD"}
"""


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """--log-level debug reconfigures the root logger in this process; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def command_paths(command: click.Command = cli,
                  path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command and group of qrm, with the words that name it."""
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from command_paths(sub, (*path, name))


class Outputs:
    """Everything qrm printed, by what was run."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.seen: list[tuple[str, str]] = []
        self.allowed: list[tuple[str, str]] = []  # `secrets get` and `secrets textconv`: the value is the point

    def qrm(self, *args: str, input: str | None = None, expect: int | None = 0, allowed: bool = False) -> str:
        result = CliRunner().invoke(cli, ["-C", str(self.ws.root), "--log-level", "debug", *args], input=input,
                                    catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, (args, result.output)
        (self.allowed if allowed else self.seen).append((f"qrm {' '.join(args)}", result.stdout + result.stderr))
        return result.stdout

    def process(self, *args: str, expect: int = 0) -> str:
        result = subprocess.run([sys.executable, "-m", "reconciler", "-C", str(self.ws.root), *args],
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, "QRM_LOG_LEVEL": "debug"})
        assert result.returncode == expect, (args, result.stdout + result.stderr)
        if expect == 0:
            assert " DEBUG " in result.stderr  # the debug log is really on
        self.seen.append((f"process qrm {' '.join(args)}", result.stdout + result.stderr))
        return result.stdout + result.stderr

    def watch(self, *args: str) -> None:
        """Run `qrm watch` until its first reconcile is done, then stop it with SIGTERM."""
        process = subprocess.Popen([sys.executable, "-m", "reconciler", "-C", str(self.ws.root), "watch", *args],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env={**os.environ, "QRM_LOG_LEVEL": "debug"})
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "reconcile (start)" in line:
                process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, "".join(lines)
        assert any(" DEBUG " in line for line in lines) and any("committed" in line for line in lines), lines
        self.seen.append((f"process qrm watch {' '.join(args)}", "".join(lines)))

    def serve(self, reader: str, keeper: str) -> None:
        """`qrm serve` at debug level: every read path with a read token, then the .env with a token that
        has the secrets scope (the one answer allowed to hold the value); its log and answers are looked at."""
        env = {**os.environ, "QRM_LOG_LEVEL": "debug"}
        server = api_server.start(self.ws.root, env, log_level="debug")
        answers = []
        try:
            for path in ("/health", "/resources/ports", "/resources/ports/ranges", "/resources/ports/check/8000",
                         "/resources/services", "/resources/secrets", "/plan?refresh=false",
                         "/resources/generate/env/quantumblog?environment=prod",
                         "/resources/generate/env/quantumblog?environment=dev",
                         "/resources/generate/docker-compose/quantumblog?environment=prod",
                         "/resources/generate/env/quantumblog?environment=nope", "/resources/ports?host=nope"):
                answer = server.get(path, reader)
                answers.append(f"GET {path} {answer.status_code} {answer.text}")
            allowed = server.get("/resources/generate/env/quantumblog?environment=prod", keeper).text
            self.allowed.append(("GET /resources/generate/env/quantumblog (secrets scope)", allowed))
        finally:
            assert server.stop() == 0
        assert " DEBUG " in server.log()
        self.seen.append(("process qrm serve (answers)", "\n".join(answers)))
        self.seen.append(("process qrm serve (log)", server.log()))

    def damaged(self, damage: Callable[[Path], None], *commands: tuple[str, ...]) -> None:
        """Run commands against a damaged secrets.enc (each must fail), then put the file back."""
        path = self.ws.root / "secrets.enc"
        whole = path.read_bytes()
        damage(path)
        for args in commands:
            self.qrm(*args, input="new value\n", expect=1)
        path.write_bytes(whole)


def flip_first_data_byte(prefix: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        text = path.read_text()
        line = next(line for line in text.splitlines() if line.startswith(prefix))
        match = re.search(r"data:(.)", line)
        assert match is not None
        swapped = line[:match.start(1)] + ("B" if match[1] == "A" else "A") + line[match.end(1):]
        path.write_text(text.replace(line, swapped))
    return damage


def test_the_canary_secret_appears_nowhere_but_in_get_and_textconv(
        workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, keys = workspace, tmp_path / "keys"
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(keys / "alice.txt"))
    out = Outputs(ws)
    out.qrm("init", str(ws.root))  # makes the key and .sops.yaml
    ws.write("manifests/quantumblog.yaml", PROJECT)

    # The canary is the prod password; other scopes hold ordinary values.
    out.qrm("secrets", "set", "DB_PASSWORD", "--project", "quantumblog", "--env", "prod", input=CANARY + "\n")
    out.qrm("secrets", "set", "DB_PASSWORD", "--project", "quantumblog", input="ordinary-project-password\n")
    out.qrm("secrets", "set", "API_TOKEN", input="ordinary-token\n")

    # Reading, planning and applying, in every format.
    out.qrm("validate")
    out.qrm("validate", "--json")
    out.qrm("plan", "--no-refresh")
    out.qrm("plan", "--no-refresh", "--json")
    out.qrm("plan", "--no-refresh", "--markdown")
    out.qrm("plan", "--no-refresh", "--detailed-exitcode", expect=2)
    out.qrm("plan", "--no-refresh", "--out", str(ws.root / "saved-plan.json"))
    out.qrm("apply", str(ws.root / "saved-plan.json"))
    out.qrm("secrets", "rotate")  # every fingerprint changes: the plan lists every secret
    out.qrm("plan", "--no-refresh", "--json")
    out.qrm("apply", "--yes", "--no-refresh", "--json")
    out.qrm("secrets", "set", "DB_PASSWORD", "--project", "quantumblog", input="ordinary-project-password-2\n")
    out.process("plan", "--no-refresh")
    out.process("apply", "--yes", "--no-refresh")
    # Report commits: apply --commit and a watcher (the .env holding the canary is generated, not committed).
    identity = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com", "GIT_COMMITTER_NAME": "Dev",
                "GIT_COMMITTER_EMAIL": "dev@example.com"}

    def commit_all(message: str) -> None:  # apply --commit and watch --apply reconcile what is committed
        for command in (["add", "-A"], ["commit", "-qm", message]):
            subprocess.run(["git", "-C", str(ws.root), *command], check=True, env={**os.environ, **identity})

    commit_all("workspace")
    out.qrm("secrets", "setup-git")
    out.qrm("secrets", "set", "API_TOKEN", input="ordinary-token-1\n")
    commit_all("new API_TOKEN")
    out.qrm("apply", "--yes", "--no-refresh", "--commit")
    out.qrm("secrets", "set", "API_TOKEN", input="ordinary-token-1b\n")
    commit_all("newer API_TOKEN")
    out.watch("--apply", "--interval", "60")
    out.qrm("render", "--project", "quantumblog", "--env", "prod", "--file", "env")
    out.qrm("render", "--project", "quantumblog", "--env", "prod", "--file", "quantum")
    out.qrm("files", "--json")
    # Writes through git: a commit of a manifest, then an apply that writes the .env holding the canary.
    out.qrm("ports", "allocate", "canary-check", "--type", "app", "--caller", "leak-test")
    out.qrm("ports", "allocate", "canary-check", "--type", "app", "--json")
    out.qrm("ports", "release", "canary-check", "--json")
    out.qrm("ports", "release", "canary-check", expect=1)
    ws.write("app/components/login.q", """
        <q:component name="LoginPage" type="page">
          <q:query name="me" datasource="main">SELECT id FROM users WHERE id = :id</q:query>
        </q:component>
        """)
    out.qrm("scan")
    out.qrm("scan", "quantumblog", "--json")
    out.qrm("ports", "list")
    out.qrm("ports", "list", "--json")
    out.qrm("ports", "ranges")
    out.qrm("ports", "ranges", "--json")
    out.qrm("ports", "check", "8000", expect=None)
    out.qrm("ports", "check", "8999", "--json", expect=None)
    out.qrm("services", "list")
    out.qrm("services", "list", "--json")
    out.qrm("services", "health")
    out.qrm("services", "health", "--json")
    out.qrm("services", "discover", "quantumblog-web", expect=None)
    out.qrm("schema", "--check")
    out.qrm("secrets", "set", "SHORT_LIVED", input="ordinary-short-lived\n")
    out.qrm("secrets", "list")
    out.qrm("secrets", "list", "--json")
    out.qrm("secrets", "rm", "SHORT_LIVED")

    # qrm serve and its tokens: only a token with the secrets scope gets the value, and nothing logs it.
    reader = out.qrm("token", "create", "leak-reader").strip()
    keeper = out.qrm("token", "create", "leak-keeper", "--scope", "read", "--scope", "secrets").strip()
    out.qrm("token", "list")
    out.qrm("token", "list", "--json")
    out.serve(reader, keeper)
    out.qrm("token", "revoke", "leak-reader")

    # Keys: rotate again in a real process, then a second reader.
    out.process("secrets", "rotate")
    identity, bob = sops.generate_identity()
    (keys / "bob.txt").write_text(identity + "\n")
    sops_yaml = ws.root / ".sops.yaml"
    sops_yaml.write_text(sops_yaml.read_text().replace("    age: ", f"    age: {bob},"))
    out.qrm("secrets", "updatekeys")
    out.process("secrets", "updatekeys")
    sops_yaml.write_text(sops_yaml.read_text().replace(f"    age: {bob},", "    age: "))  # bob leaves
    assert "warning: removed reader(s)" in out.process("secrets", "updatekeys")

    # Guardrails: an empty value, undeclared scopes, a referenced secret removed, resolution.
    out.qrm("secrets", "set", "DB_PASSWORD", "-p", "quantumblog", "-e", "prod", input="\n", expect=1)
    out.qrm("secrets", "set", "DB_PASSWORD", "-p", "quantumblg", "-e", "prod", input=CANARY + "\n", expect=1)
    out.qrm("secrets", "set", "DB_PASSWORD", "-p", "quantumblog", "-e", "stage", input=CANARY + "\n", expect=1)
    out.qrm("secrets", "set", "DB_PASSWORD", "-p", "quantumblog", "-e", "dev", input=CANARY + "-dev\n")
    out.qrm("secrets", "rm", "DB_PASSWORD", "-p", "quantumblog", "-e", "dev")  # warns: dev referenced it
    assert "referenced quantumblog/dev/DB_PASSWORD" in out.seen[-1][1]
    out.qrm("secrets", "get", "DB_PASSWORD", "--resolve", "-p", "quantumblog", "-e", "stage", expect=1)
    out.qrm("secrets", "get", "NOT_SET", "--resolve", "-p", "quantumblog", "-e", "prod", expect=1)
    out.qrm("secrets", "get", "DB_PASSWORD", "--resolve", "-p", "quantumblog", expect=1)
    resolved = CliRunner().invoke(cli, ["-C", str(ws.root), "--log-level", "debug", "secrets", "get", "DB_PASSWORD",
                                        "--resolve", "-p", "quantumblog", "-e", "prod"], catch_exceptions=False)
    assert (resolved.exit_code, resolved.stdout) == (0, CANARY)  # the value on stdout, as get prints it
    out.seen.append(("qrm secrets get --resolve (its stderr)", resolved.stderr))

    # Failures: each is loud, none repeats the value.
    out.qrm("secrets", "set", "DB_PASSWORD", CANARY, expect=1)  # a value on the command line
    out.process("secrets", "set", "DB_PASSWORD", "--project", "quantumblog", "--env", "prod", CANARY, expect=1)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(keys / "wrong.txt"))
    (keys / "wrong.txt").write_text(sops.generate_identity()[0] + "\n")
    out.qrm("secrets", "get", "DB_PASSWORD", "-p", "quantumblog", "-e", "prod", expect=1)
    out.qrm("secrets", "set", "OTHER", input="x\n", expect=1)
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    out.qrm("secrets", "get", "DB_PASSWORD", "-p", "quantumblog", "-e", "prod", expect=1)
    out.qrm("secrets", "rotate", expect=1)
    out.qrm("plan", "--no-refresh")  # plan needs no key
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(keys / "alice.txt"))
    prod_value = "quantumblog/prod/DB_PASSWORD: "
    for damage in (flip_first_data_byte(prod_value), flip_first_data_byte("    mac: "),
                   lambda p: p.write_bytes(p.read_bytes()[:len(p.read_bytes()) * 2 // 3]),
                   lambda p: p.write_text(p.read_text().replace("version: 3.9.4", "version: 4.0.0"))):
        out.damaged(damage, ("secrets", "get", "DB_PASSWORD", "-p", "quantumblog", "-e", "prod"),
                    ("secrets", "set", "DB_PASSWORD", "-p", "quantumblog", "-e", "prod"), ("secrets", "rotate"),
                    ("secrets", "updatekeys"), ("secrets", "rm", "API_TOKEN"))
    out.damaged(lambda p: None, ("secrets", "get", "MISSING"), ("secrets", "get", "DB_PASSWORD", "--env", "prod"),
                ("secrets", "set", "9INVALID"), ("secrets", "set", "A", "-p", "Not Valid"),
                ("secrets", "rm", "MISSING"))
    ws.write("manifests/broken.yaml", """\
        kind: Project
        name: brokenblog
        environments: {prod: {host: localhost}}
        datasources: {main: {driver: sqlite, database: x, password: "secret:NOT_SET"}}
        """)
    out.qrm("validate", expect=1)
    out.qrm("validate", "--json", expect=1)
    out.qrm("plan", "--no-refresh", expect=1)
    out.qrm("apply", "--yes", "--no-refresh", expect=1)
    (ws.root / "manifests" / "broken.yaml").unlink()

    # git's merge driver: a clean merge and a conflict over the canary's own key.
    enc = ws.root / "secrets.enc"
    base = tmp_path / "base.enc"
    shutil.copy(enc, base)
    out.qrm("secrets", "set", "API_TOKEN", input="ordinary-token-2\n")
    theirs = tmp_path / "theirs.enc"
    shutil.copy(enc, theirs)
    shutil.copy(base, enc)
    out.qrm("secrets", "set", "DB_PASSWORD", "-p", "quantumblog", "-e", "prod", input=CANARY + "-ours\n")
    out.qrm("secrets", "merge-driver", str(base), str(enc), str(theirs))
    shutil.copy(enc, theirs)
    out.qrm("secrets", "set", "DB_PASSWORD", "-p", "quantumblog", "-e", "prod", input=CANARY + "-mine\n")
    shutil.copy(enc, tmp_path / "mine.enc")
    out.qrm("secrets", "merge-driver", str(base), str(tmp_path / "mine.enc"), str(theirs), expect=1)

    out.qrm("tests", "run", expect=1)  # no TestSuite in this workspace: exit 1, nothing printed of secrets
    out.qrm("tests", "generate", "nope", expect=1)  # an unknown project
    out.qrm("tests", "compare", "nope", expect=1)  # never run: exit 1
    out.qrm("tests", "history", "nope", "--json", expect=1)
    out.qrm("notify", "test", "nope", expect=1)  # no Notifier in this workspace
    out.qrm("notify", "deliver")
    out.qrm("notify", "log")
    out.qrm("notify", "log", "--json")
    out.qrm("notify", "enable", "nope")

    # --help of every command and group, and the version.
    for path, _ in command_paths():
        out.qrm(*path, "--help")
    out.qrm("--version")

    # Where the value may appear, it does (so this test would see a leak).
    out.qrm("secrets", "get", "DB_PASSWORD", "-p", "quantumblog", "-e", "prod", allowed=True)
    out.qrm("secrets", "textconv", str(enc), allowed=True)
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    assert "quantumblog/prod/DB_PASSWORD: <encrypted " in out.qrm("secrets", "textconv", str(enc))  # no key
    assert all(CANARY in text for _, text in out.allowed)
    ran = [what.removeprefix("process ") for what, _ in out.seen]
    for path, command in command_paths():
        if not isinstance(command, click.Group):  # every command really ran, not only its --help
            assert any(f"{r} ".startswith(f"qrm {' '.join(path)} ") and not r.endswith("--help") for r in ran), path

    leaks = [what for what, text in out.seen if any(piece in text for piece in PIECES)]
    assert leaks == []
    # The committed bytes, not their textconv (which decrypts for whoever holds the key, as `git diff` should)
    logged = subprocess.run(["git", "-C", str(ws.root), "log", "-p", "--all", "--no-textconv"], capture_output=True,
                            text=True)
    assert logged.returncode == 0, logged.stderr
    history = logged.stdout
    assert "Qrm-Report: true" in history  # the report commits are there, and hold no piece of the value
    assert not any(piece in history for piece in PIECES)
    files = [p for p in ws.root.rglob("*") if p.is_file()]
    assert ws.root / ".qrm" / "registry.db" in files
    assert ws.root / "saved-plan.json" in files
    assert enc in files
    # The one file made to hold it: the generated .env of the environment whose secret it is (mode 0600).
    prod_env = ws.root / "generated" / "quantumblog" / "prod" / ".env"
    assert CANARY.encode() in prod_env.read_bytes()
    assert [p for p in files if p != prod_env and any(piece.encode() in p.read_bytes() for piece in PIECES)] == []
