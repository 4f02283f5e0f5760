"""POST /projects/{project}/test-suites/generate under `qrm serve --push`: the generated suite's commit goes to
the origin like the other writes' (a real bare origin another clone pushes to): rebased onto what moved there,
never forced; a conflicting change there is a 409 and the generation's commit is taken back out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import suites_api, writes_api
from tests.support.api_server import Server
from tests.support.git_repos import git

NAMED = {"name": "Smoke Only", "types": ["smoke", "api"]}


@pytest.fixture
def pushing(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    origin = tmp_path / "origin.git"
    with suites_api.served(tmp_path, "--push", origin=origin) as server:
        yield server, origin


def generate(server: Server, body: dict[str, object]) -> httpx.Response:
    return server.request("POST", "/projects/shop/test-suites/generate", content=json.dumps(body).encode(),
                          headers={"Authorization": f"Bearer {server.tokens['writer']}"}, timeout=120)


def head(root: Path) -> str:
    return git(root, "rev-parse", "HEAD").strip()


def their_push(tmp_path: Path, origin: Path, rel: str, text: str, subject: str) -> str:
    theirs = writes_api.clone_of(origin, tmp_path / "theirs")
    (theirs / rel).parent.mkdir(parents=True, exist_ok=True)
    (theirs / rel).write_text(text)
    git(theirs, "add", "-A")
    git(theirs, "commit", "-qm", subject)
    git(theirs, "push", "-q", "origin", "main")
    return head(theirs)


def test_a_generated_suite_is_committed_and_pushed_on_top_of_what_moved_on_the_origin(
        tmp_path: Path, pushing: tuple[Server, Path]) -> None:
    server, origin = pushing
    theirs = their_push(tmp_path, origin, "notes.md", "their notes\n", "their change")
    answer = generate(server, NAMED)
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["commit"] == git(origin, "rev-parse", "main").strip() == head(server.root)
    assert git(origin, "log", "-2", "--format=%s", "main").splitlines() == [
        "qrm serve: generate test suite smoke-only (smoke, endpoint) of project shop", "their change"]
    assert git(origin, "merge-base", "--is-ancestor", theirs, "main") == ""  # theirs kept: not forced
    message = git(origin, "log", "-1", "--format=%B", "main")
    assert "Requested by token 'writer'." in message and "Qrm-Caller: writer" in message
    on_origin = yaml.safe_load(git(origin, "show", "main:manifests/tests/smoke-only.yaml"))
    assert (on_origin["name"], on_origin["project"], len(on_origin["cases"])) == ("smoke-only", "shop", 5)
    assert git(origin, "show", "main:manifests/tests/shop.yaml")  # the project's own suite went along
    assert git(server.root, "status", "--porcelain", "manifests", "reports/generated-cases") == ""
    again = generate(server, NAMED)  # nothing changed: no commit, nothing pushed
    assert (again.status_code, again.json()["commit"]) == (200, None)
    assert git(origin, "rev-parse", "main").strip() == document["commit"]


def test_a_generated_suite_the_origin_conflicts_with_is_a_409_and_its_commit_is_taken_back(
        tmp_path: Path, pushing: tuple[Server, Path]) -> None:
    server, origin = pushing
    their_suite = "kind: TestSuite\nname: smoke-only\nproject: shop\ncases: []\n"
    their_push(tmp_path, origin, "manifests/tests/smoke-only.yaml", their_suite, "their smoke-only suite")
    on_origin, before = git(origin, "rev-parse", "main").strip(), head(server.root)
    answer = generate(server, NAMED)
    assert answer.status_code == 409, answer.text
    reason = answer.json()["error"]
    assert reason.startswith("the push failed, the generated suite's commit was taken back (nothing was written): "
                             "the upstream changed the same file(s) since: manifests/tests/smoke-only.yaml"), reason
    assert git(origin, "rev-parse", "main").strip() == on_origin
    assert head(server.root) == before
    assert not (server.root / "manifests/tests/smoke-only.yaml").exists()
    assert not (server.root / "manifests/tests/shop.yaml").exists()
    assert git(server.root, "status", "--porcelain", "manifests") == ""
    assert git(origin, "show", "main:manifests/tests/smoke-only.yaml") == their_suite
