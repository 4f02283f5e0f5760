"""Hostile manifests and qrm.yaml: YAML alias bombs, deep nesting, and host addresses that are not addresses.

Each case writes the hostile file a pull request could carry into a real workspace and runs qrm as a user
does; what is asserted is what a user sees: one error line naming file and line (and field), the exit code of
an invalid workspace, no traceback, and nothing large written to .qrm/cache.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.support.git_repos import example, git, repository, services
from tests.support.watcher import Watcher, is_report, shown, wait_for
from tests.support.workspace import Workspace


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error: ")]


# --- Host.address: a host name or an IP address, nothing else ---------------------------------------

BAD_ADDRESSES = [
    ("newline", '"10.0.0.1\\nQRM_INJECTED=1"'),
    ("semicolon", '"db.example; rm -rf /"'),
    ("braces", '"${HOME}"'),
    ("space", '"db example"'),
    ("label starting with a dash", "-db.example"),
    ("label of 64 characters", "a" * 64 + ".example"),
    ("underscore", "db_1.example"),
    ("empty label", "db..example"),
    ("url", '"http://db.example"'),
    ("ipv6 in brackets", '"[::1]"'),
]


@pytest.mark.parametrize("address", [case[1] for case in BAD_ADDRESSES], ids=[case[0] for case in BAD_ADDRESSES])
def test_a_host_address_that_is_no_host_name_or_ip_is_a_located_problem(workspace: Workspace, address: str) -> None:
    workspace.manifest("hosts.yaml", f"kind: Host\nname: edge\ndescription: the edge box\naddress: {address}\n")
    result = workspace.qrm("validate")
    assert result.exit_code == 1, result.output
    [error] = error_lines(result.stderr)
    assert error.startswith("error: manifests/hosts.yaml:4:1: address: expected a host name"), error
    assert "IPv4 or IPv6 address" in error
    assert "Traceback" not in result.output


GOOD_ADDRESSES = ["10.10.1.40", "::1", "fe80::1%eth0", "2001:db8::17", "localhost", "db-1.internal.example",
                  "db.example.", "a" * 63 + ".example", "xn--bcher-kva.example"]


@pytest.mark.parametrize("address", GOOD_ADDRESSES)
def test_host_names_and_ip_addresses_are_accepted(workspace: Workspace, address: str) -> None:
    workspace.manifest("hosts.yaml", f"kind: Host\nname: edge\naddress: {json.dumps(address)}\n")
    result = workspace.qrm("validate")
    assert result.exit_code == 0, result.output


# --- YAML alias bombs, recursive aliases and deep nesting --------------------------------------------

def alias_bomb(levels: int = 9, fan_out: int = 9, indent: str = "  ") -> str:
    """The "billion laughs": each level a list of `fan_out` aliases of the level below (~500 bytes for 9x9)."""
    lines = [f'{indent}l0: &l0 "lol"']
    for level in range(1, levels + 1):
        lines.append(f"{indent}l{level}: &l{level} [" + ",".join([f"*l{level - 1}"] * fan_out) + "]")
    return "\n".join(lines) + "\n"


BOMB = "kind: Service\nname: api\ntype: app\nx-bomb:\n" + alias_bomb()
# 20 documents of 6 levels: each alone within the bound, together far past it (the bound is per file).
SPREAD_BOMB = "---\n".join(f"kind: Service\nname: api-{n}\ntype: app\nx-bomb:\n" + alias_bomb(6) for n in range(20))
RECURSIVE = "kind: Service\nname: api\ntype: app\ntags: &loop [a, *loop]\n"
DEEP_FLOW = "kind: Service\nname: api\ntype: app\ntags: " + "[" * 700 + "]" * 700 + "\n"
DEEP_BLOCK = "kind: Service\nname: api\ntype: app\nhealth:\n" + "".join(
    "  " * (level + 1) + f"k{level}:\n" for level in range(650)) + "  " * 651 + "end\n"

HOSTILE = [
    # (id, text, line of the error, what it says)
    ("alias bomb", BOMB, 11, "aliases expand this past"),  # l6: the first level past the bound
    ("alias bomb spread over documents", SPREAD_BOMB, None, "aliases expand this past"),
    ("recursive alias", RECURSIVE, 4, "a recursive alias"),
    ("600+ levels of flow lists", DEEP_FLOW, 4, "nested more than 100 levels deep"),
    ("600+ levels of block mappings", DEEP_BLOCK, 104, "nested more than 100 levels deep"),
]
CASES = [pytest.param(text, line, said, id=name) for name, text, line, said in HOSTILE]


def assert_refused(result_code: int, stderr: str, stdout: str, file: str, line: int | None, said: str) -> None:
    assert result_code == 1, stdout + stderr
    [error] = error_lines(stderr)
    assert error.startswith(f"error: {file}:{line}:" if line else f"error: {file}:"), error
    assert said in error, error
    assert "Traceback" not in stdout + stderr and "RecursionError" not in stdout + stderr


def cache_bytes(workspace: Workspace) -> int:
    cache = workspace.root / ".qrm"
    return sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) if cache.exists() else 0


@pytest.mark.parametrize(("text", "line", "said"), CASES)
@pytest.mark.parametrize("command", [("validate",), ("plan", "--no-refresh"), ("apply", "--yes", "--no-refresh")])
def test_a_hostile_manifest_is_one_located_error_for_every_command(
        workspace: Workspace, text: str, line: int | None, said: str, command: tuple[str, ...]) -> None:
    workspace.manifest("ok.yaml", "kind: Service\nname: fine\ntype: app\n")
    workspace.manifest("bomb.yaml", text)
    done = workspace.qrm_process(*command, timeout=30)  # before: 70 s and 3 GB, then a MemoryError traceback
    assert_refused(done.returncode, done.stderr, done.stdout, "manifests/bomb.yaml", line, said)
    assert cache_bytes(workspace) < 100_000  # before: a 324-byte bomb wrote a 39 MB manifests.json
    assert not (workspace.root / "reports" / "allocations.yaml").exists()  # nothing applied


@pytest.mark.parametrize(("text", "line", "said"), [
    pytest.param("name: ws\nx-bomb:\n" + alias_bomb(), 9, "aliases expand this past", id="alias bomb"),
    pytest.param("name: &n [*n]\n", 1, "a recursive alias", id="recursive alias"),
    pytest.param("name: " + "[" * 700 + "]" * 700 + "\n", 1, "nested more than 100 levels deep", id="deep"),
])
def test_a_hostile_qrm_yaml_is_one_located_error(workspace: Workspace, text: str, line: int, said: str) -> None:
    workspace.write("qrm.yaml", text)
    workspace.manifest("ok.yaml", "kind: Service\nname: fine\ntype: app\n")
    done = workspace.qrm_process("validate", timeout=30)
    assert_refused(done.returncode, done.stderr, done.stdout, "qrm.yaml", line, said)


ANCHORED_PROJECT = """\
kind: Project
name: blog
source: blog
environments:
  dev: &local {host: localhost}
  staging: *local
  preview: {<<: *local, ports: {web: 8500}}
services:
  web: &app {type: app, health: &health {path: /health, interval: 30s}}
  admin: *app
  api: {<<: *app, health: {<<: *health, timeout: 2s}}
"""


def test_anchors_and_merge_keys_of_a_real_manifest_still_work(workspace: Workspace) -> None:
    (workspace.root / "blog").mkdir()
    workspace.manifest("blog.yaml", ANCHORED_PROJECT)
    result = workspace.qrm("plan", "--no-refresh")
    assert result.exit_code == 0, result.output
    assert "Plan: 21 to create" in result.output  # 3 services x 3 environments, and their files
    assert re.search(r"service\.blog-preview-web +localhost:8500 .*\(pinned\)", result.output)  # the merge's own key
    assert "service.blog-staging-admin" in result.output  # an alias of a whole mapping


def test_watch_reports_a_committed_alias_bomb_and_keeps_reconciling(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("a"))
    ws = repository(workspace)
    watcher = Watcher(ws.root, "--apply", "--interval", "0.5")
    try:
        wait_for("the first report commit", lambda: is_report(ws.root, "HEAD"), watcher)
        ws.manifest("svc.yaml", services("a") + "x-bomb:\n" + alias_bomb())
        git(ws.root, "commit", "-qam", "a bomb")
        wait_for("the invalid line", lambda: "invalid; 1 problem(s): manifests/svc.yaml:" in watcher.output, watcher)
        ws.manifest("svc.yaml", services("a", "b"))
        git(ws.root, "commit", "-qam", "add b")
        wait_for("b applied", lambda: '"name": "b"' in shown(ws.root, "reports/allocations.yaml", "HEAD"), watcher)
        assert watcher.stop() == 0
    finally:
        if watcher.process.poll() is None:
            watcher.process.kill()
            watcher.process.wait()
    assert "aliases expand this past" in watcher.output
    assert "Traceback" not in watcher.output and "MemoryError" not in watcher.output


# --- the same bound in secrets.enc (item 17) ---------------------------------------------------------

def run(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    """qrm as a process, a value on stdin for `secrets set`, within a bound a former hang cannot meet."""
    return subprocess.run([sys.executable, "-m", "reconciler", "-C", str(ws.root), *args], input="s3cret\n",
                          capture_output=True, text=True, timeout=30, env={**os.environ})


SECRETS_COMMANDS = [
    pytest.param(("secrets", "get", "BLOG_DB_PASSWORD", "--project", "quantumblog"), id="get"),
    pytest.param(("secrets", "set", "NEW_TOKEN"), id="set"),
    pytest.param(("secrets", "rm", "BLOG_DB_PASSWORD", "--project", "quantumblog"), id="rm"),
    pytest.param(("secrets", "rotate"), id="rotate"),
    pytest.param(("secrets", "updatekeys"), id="updatekeys"),
    pytest.param(("secrets", "list"), id="list"),
    pytest.param(("plan", "--no-refresh"), id="plan"),
]


@pytest.mark.parametrize("hostile", [pytest.param(("x-bomb:\n" + alias_bomb(), 30, "aliases expand this past"),
                                                  id="alias bomb"),
                                     pytest.param(("x-deep: " + "[" * 700 + "]" * 700 + "\n", 23,
                                                   "nested more than 100 levels deep"), id="deep")])
@pytest.mark.parametrize("command", SECRETS_COMMANDS)
def test_a_yaml_bomb_in_secrets_enc_is_named_as_such_by_every_command(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...],
        hostile: tuple[str, int, str]) -> None:
    text, line, said = hostile
    ws = example(workspace, monkeypatch)
    secrets = ws.root / "secrets.enc"
    before = secrets.read_text()
    assert before.count("\n") == 22  # the bomb's line below counts on it
    secrets.write_text(before + text)
    done = run(ws, *command)  # before: 1.5 GB at 120 s, or a traceback
    assert done.returncode == 1, done.stdout + done.stderr
    [error] = error_lines(done.stderr)
    assert error.startswith(f"error: secrets.enc:{line}: not valid YAML: "), error  # once, at the bomb's line
    assert said in error, error
    assert "does not exist" not in done.stdout + done.stderr  # plan said so of the damaged file
    assert "Traceback" not in done.stdout + done.stderr
    assert secrets.read_text() == before + text  # nothing rewritten


def test_a_yaml_bomb_in_sops_yaml_is_refused_with_its_line(workspace: Workspace,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ws = example(workspace, monkeypatch)
    (ws.root / ".sops.yaml").write_text("creation_rules:\n  - path_regex: secrets\\.enc$\n    age: &r [*r]\n")
    done = run(ws, "secrets", "updatekeys")  # reads the recipients of .sops.yaml
    assert done.returncode == 1, done.stdout + done.stderr
    [error] = error_lines(done.stderr)
    assert ".sops.yaml:3" in error and "recursive alias" in error, error
