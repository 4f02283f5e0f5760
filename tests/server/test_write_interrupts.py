"""Writes of `qrm serve` when something happens in the middle: SIGTERM while a write is in flight (held in a
git hook: its commit, or under --push the origin's pre-receive), and a write under --push while the origin
moved on (rebased onto it) or changed the same manifest (a 409, nothing half-written).

Each test runs its own real server over its own git repository (tests/support/writes_api), since each stops
or pushes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import api_server, writes_api
from tests.support.api_server import Server
from tests.support.git_gate import Gate
from tests.support.git_repos import git, services
from tests.support.writes_api import FORGE_RANGE

SECRET = "interrupted-" + "x" * 24


def post(server: Server, path: str, token: str, body: dict[str, Any]) -> httpx.Response:
    return server.request("POST", path, content=json.dumps(body).encode(),
                          headers={"Authorization": f"Bearer {server.tokens[token]}"}, timeout=180)


def allocate(server: Server, name: str) -> httpx.Response:
    return post(server, "/resources/ports/allocate", "writer", {"service_name": name, "port_type": "app",
                                                                "host": "forge"})


def set_secret(server: Server) -> httpx.Response:
    return post(server, "/resources/secrets", "keeper", {"key": "API_KEY", "value": SECRET})


def head(root: Path) -> str:
    return git(root, "rev-parse", "HEAD").strip()


def allocations(server: Server) -> dict[str, int]:
    listed = server.get("/resources/ports?host=forge&limit=1000", server.tokens["reader"])
    assert listed.status_code == 200, listed.text
    return {a["name"]: a["port"] for a in listed.json()["allocations"]}


@contextmanager
def serving(root: Path, env: dict[str, str], tokens: dict[str, str], *args: str) -> Iterator[Server]:
    server = api_server.start(root, env, *args, log_level="debug")
    server.tokens = tokens
    try:
        yield server
    finally:
        server.stop()


def clean(root: Path) -> bool:
    """Whether what writes change (manifests/, secrets.enc, qrm.yaml) is as committed, with no file left over
    there (generated/ and reports/ are the apply's, not committed by a write)."""
    return git(root, "status", "--porcelain", "--untracked-files=all", "--", "manifests", "secrets.enc",
               "qrm.yaml") == "" and git(root, "diff", "--cached", "--name-only") == ""


def refused(server: Server) -> bool:
    try:
        httpx.get(server.url + "/health", timeout=2)
    except httpx.TransportError:
        return True
    return False


# --- SIGTERM during a write --------------------------------------------------------------------------------

@pytest.mark.parametrize(("write", "held_in"), [
    ("allocate", "commit"), ("secret", "commit"), ("allocate", "push"), ("secret", "push"),
], ids=["allocate-in-its-commit", "secret-in-its-commit", "allocate-in-its-push", "secret-in-its-push"])
def test_sigterm_during_a_write_finishes_it_whole_exits_0_and_a_retry_answers_the_same(
        tmp_path: Path, write: str, held_in: str) -> None:
    env = api_server.environment(tmp_path / "home")
    root = tmp_path / "ws"
    tokens = writes_api.writes_workspace(root, env)
    push = held_in == "push"
    origin = writes_api.with_origin(root, tmp_path / "origin.git") if push else None
    gate = (Gate.install(origin, "pre-receive", tmp_path / "gate") if origin is not None
            else Gate.install(root, "reference-transaction", tmp_path / "gate"))
    call = (lambda s: allocate(s, "interrupted")) if write == "allocate" else set_secret
    before = head(root)
    with serving(root, env, tokens, *(["--push"] if push else [])) as server, ThreadPoolExecutor(1) as pool:
        gate.arm()
        pending = pool.submit(call, server)
        gate.wait_until_reached()  # the write is inside git now: its commit is being made, or pushed
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        while not refused(server):  # the server has taken the signal: it stopped listening ...
            assert time.monotonic() < deadline, "the server still listens after SIGTERM"
            time.sleep(0.05)
        assert not pending.done()  # ... and the write waits in git still
        gate.open()
        answer = pending.result(timeout=180)
        assert server.process.wait(timeout=60) == 0
        log = server.log()
    assert answer.status_code == 200, answer.text
    assert "Traceback" not in log and " ERROR " not in log, log
    first = answer.json()
    # the write is whole: committed (and on the origin under --push), nothing left over in the checkout
    assert first["commit"] == head(root) != before
    if origin is not None:
        assert git(origin, "rev-parse", "main").strip() == first["commit"]
    assert clean(root)
    assert not (root / ".qrm" / "write.journal").exists()
    with serving(root, env, tokens, *(["--push"] if push else [])) as again:
        if write == "allocate":
            assert first["port"] in FORGE_RANGE
            assert allocations(again)["interrupted"] == first["port"]  # the registry has it: it was applied
            retry = allocate(again, "interrupted")
            assert retry.status_code == 200, retry.text
            assert {k: retry.json()[k] for k in ("port", "created", "commit")} == {
                "port": first["port"], "created": False, "commit": None}
            assert head(root) == first["commit"]
        else:
            assert first == {"success": True, "key": "API_KEY", "scope": "global", "commit": first["commit"]}
            assert api_server.qrm(root, env, "secrets", "get", "API_KEY") == SECRET
            retry = set_secret(again)
            assert retry.status_code == 200, retry.text
            assert {k: v for k, v in retry.json().items() if k != "commit"} == {
                "success": True, "key": "API_KEY", "scope": "global"}
            assert api_server.qrm(root, env, "secrets", "get", "API_KEY") == SECRET
    assert SECRET not in log + git(root, "log", "-p", "--format=%B")


# --- a write under --push while the origin moved ----------------------------------------------------------

def pushed_by_someone_else(tmp_path: Path, origin: Path, rel: str, text: str, subject: str) -> str:
    """Another clone of `origin` commits `text` as `rel` and pushes; its commit's sha."""
    theirs = writes_api.clone_of(origin, tmp_path / "theirs")
    (theirs / rel).parent.mkdir(parents=True, exist_ok=True)
    (theirs / rel).write_text(text)
    git(theirs, "add", "-A")
    git(theirs, "commit", "-qm", subject)
    git(theirs, "push", "-q", "origin", "main")
    return head(theirs)


@pytest.fixture
def pushing(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    """A workspace with a bare origin, served with --push (the server started before the origin moves)."""
    env = api_server.environment(tmp_path / "home")
    root = tmp_path / "ws"
    tokens = writes_api.writes_workspace(root, env)
    origin = writes_api.with_origin(root, tmp_path / "origin.git")
    with serving(root, env, tokens, "--push") as server:
        yield server, origin


def test_a_write_while_the_origin_moved_is_rebased_onto_it_and_pushed(tmp_path: Path,
                                                                      pushing: tuple[Server, Path]) -> None:
    server, origin = pushing
    theirs = pushed_by_someone_else(tmp_path, origin, "manifests/theirs.yaml", services("theirs"), "their change")
    answer = allocate(server, "myapp")
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["port"] in FORGE_RANGE and document["created"] is True
    assert document["commit"] == git(origin, "rev-parse", "main").strip() == head(server.root)
    assert git(origin, "log", "-2", "--format=%s", "main").splitlines() == [
        "qrm: allocate a port (app) for myapp on forge (requested by writer)", "their change"]
    assert git(origin, "merge-base", "--is-ancestor", theirs, "main") == ""  # theirs kept below: never forced
    listed = server.get("/resources/ports?limit=1000", server.tokens["reader"]).json()["allocations"]
    assert {"theirs", "myapp"} <= {a["name"] for a in listed}  # the apply after the push saw their change too
    assert clean(server.root)


def test_a_write_the_origin_conflicts_with_is_a_409_and_nothing_is_half_written(
        tmp_path: Path, pushing: tuple[Server, Path]) -> None:
    server, origin = pushing
    clash = services("clash").replace("host: localhost\ntype: app", "host: forge\ntype: web")
    pushed_by_someone_else(tmp_path, origin, "manifests/services/clash.yaml", clash, "their clash")
    on_origin = git(origin, "rev-parse", "main").strip()
    before = head(server.root)
    answer = allocate(server, "clash")
    assert answer.status_code == 409, answer.text
    reason = answer.json()["error"]
    assert reason.startswith("the push failed, its commit was taken back and nothing was applied: the upstream "
                             "changed the same file(s) since: manifests/services/clash.yaml"), reason
    assert head(server.root) == before  # the refused write's commit is out of the branch
    assert "\n" not in reason and "Traceback" not in answer.text
    assert git(origin, "rev-parse", "main").strip() == on_origin  # the origin is as they left it
    assert clean(server.root)
    assert not (server.root / ".qrm" / "write.journal").exists()
    assert "clash" not in allocations(server)  # not applied
    # and the next write goes through, on top of their change: the refused one left nothing in the way
    after = allocate(server, "after-clash")
    assert after.status_code == 200, after.text
    assert after.json()["commit"] == git(origin, "rev-parse", "main").strip()
    assert git(origin, "merge-base", "--is-ancestor", on_origin, "main") == ""
    assert git(origin, "show", "main:manifests/services/clash.yaml") == clash  # theirs, untouched


def test_a_secret_the_origin_conflicts_with_is_a_409_and_is_not_set(tmp_path: Path,
                                                                    pushing: tuple[Server, Path]) -> None:
    server, origin = pushing
    assert set_secret(server).status_code == 200  # secrets.enc exists, committed and pushed
    sealed = (server.root / "secrets.enc").read_text()
    # their set of a secret rewrote the lines every set rewrites (the file's MAC and date), as ours does
    theirs = re.sub(r"(?m)^(\s*lastmodified:).*$", r'\1 "2000-01-01T00:00:00Z"', sealed)
    assert theirs != sealed
    pushed_by_someone_else(tmp_path, origin, "secrets.enc", theirs, "their secrets")
    before = head(server.root)
    answer = post(server, "/resources/secrets", "keeper", {"key": "OTHER_KEY", "value": SECRET + "-2"})
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"].startswith("OTHER_KEY was not set: the push failed and its commit was taken back: "
                                             "the upstream changed the same file(s) since: secrets.enc")
    assert head(server.root) == before and clean(server.root)
    assert (server.root / "secrets.enc").read_text() == sealed
    assert git(origin, "show", "main:secrets.enc") == theirs
    assert "OTHER_KEY" not in server.get("/resources/secrets", server.tokens["reader"]).text
    assert SECRET not in answer.text + server.log()


# --- killed outright: SIGKILL to the server and its git, in the middle of a push ------------------------

def process_tree(pid: int) -> list[int]:
    """`pid` and every process under it (the server, its git push, the origin's receive-pack and hook)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo.extend(children.get(found[-1], []))
    return found


def test_a_write_killed_with_its_git_mid_push_is_finished_by_its_retry(tmp_path: Path) -> None:
    """An OOM kill of the container, say: the commit is made, its push dies half-way, no answer. The retry on a
    restarted server finds the service committed, pushes that commit and applies it: then all of it is there."""
    env = api_server.environment(tmp_path / "home")
    root = tmp_path / "ws"
    tokens = writes_api.writes_workspace(root, env)
    origin = writes_api.with_origin(root, tmp_path / "origin.git")
    gate = Gate.install(origin, "pre-receive", tmp_path / "gate")
    on_origin = git(origin, "rev-parse", "main").strip()
    with serving(root, env, tokens, "--push") as server, ThreadPoolExecutor(1) as pool:
        gate.arm()
        pending = pool.submit(allocate, server, "killed")
        gate.wait_until_reached()
        for pid in process_tree(server.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert server.process.wait(timeout=60) == -signal.SIGKILL
        with pytest.raises(httpx.TransportError):
            pending.result(timeout=60)
    assert git(origin, "rev-parse", "main").strip() == on_origin  # the push never landed
    committed = head(root)
    assert git(root, "log", "-1", "--format=%s").startswith("qrm: allocate a port (app) for killed on forge")
    assert clean(root)
    with serving(root, env, tokens, "--push") as again:
        assert "killed" not in allocations(again)  # not applied yet
        retry = allocate(again, "killed")
        assert retry.status_code == 200, retry.text
        assert (retry.json()["created"], retry.json()["port"] in FORGE_RANGE) == (False, True)
        assert allocations(again)["killed"] == retry.json()["port"]
    assert git(origin, "rev-parse", "main").strip() == committed == head(root)  # the retry pushed it
    assert clean(root)
