"""`qrm ports allocate` and `qrm ports release` as a user runs them, in a real git repository: what they print,
their exit codes, --json (with the field of a refused request), and several processes at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.git_repos import clones, git, repository, services
from tests.support.paths import REPO
from tests.support.workspace import Workspace


@pytest.fixture
def repo(workspace: Workspace) -> Workspace:
    workspace.manifest("base.yaml", services("existing"))
    return repository(workspace)


def test_allocate_then_again_then_release(repo: Workspace) -> None:
    first = repo.qrm("ports", "allocate", "myapp", "--type", "app", "--caller", "alice")
    assert first.exit_code == 0, first.output
    sha = git(repo.root, "rev-parse", "HEAD").strip()
    assert first.output == f"localhost:8001 allocated to myapp (app); committed {sha[:12]} " \
                           "(manifests/services/myapp.yaml)\n"
    assert "(requested by alice)" in git(repo.root, "log", "-1", "--format=%s")
    again = repo.qrm("ports", "allocate", "myapp", "--type", "app", "--json")
    assert again.exit_code == 0
    assert json.loads(again.output) == {"success": True, "port": 8001, "service": "myapp", "host": "localhost",
                                        "type": "app", "commit": None, "created": False, "project": None,
                                        "file": "manifests/services/myapp.yaml"}
    listed = repo.qrm("ports", "list", "--json")
    assert [(r["name"], r["port"]) for r in json.loads(listed.output)["allocations"]] == [("existing", 8000),
                                                                                           ("myapp", 8001)]
    released = repo.qrm("ports", "release", "myapp")
    assert released.exit_code == 0
    assert released.output.startswith("myapp released (localhost:8001 freed); committed ")
    assert repo.qrm("ports", "check", "8001").exit_code == 0


@pytest.mark.parametrize(("args", "field", "message"), [
    (["allocate", "myapp", "--type", "nope"], "port_type", "unknown port type 'nope'"),
    (["allocate", "myapp", "--type", "app", "--host", "mars"], "host", "unknown host 'mars'"),
    (["release", "ghost"], "service_name", "'ghost': no such service"),
])
def test_a_refused_request_exits_1_and_names_the_field(repo: Workspace, args: list[str], field: str,
                                                       message: str) -> None:
    sha = git(repo.root, "rev-parse", "HEAD")
    plain = repo.qrm("ports", *args)
    assert plain.exit_code == 1 and plain.output.startswith(f"error: {field}: ") and message in plain.output
    as_json = repo.qrm("ports", *args, "--json")
    assert as_json.exit_code == 1
    [error] = json.loads(as_json.output)["errors"]
    assert error["field"] == field and message in error["message"]
    assert git(repo.root, "rev-parse", "HEAD") == sha


def test_processes_allocating_at_once_get_different_ports(repo: Workspace) -> None:
    names = [f"app-{i}" for i in range(5)]
    processes = [subprocess.Popen([sys.executable, "-m", "reconciler", "-C", str(repo.root), "ports", "allocate", name,
                                   "--type", "app", "--json"], cwd=REPO, text=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for name in names]
    answers = [json.loads(process.communicate(timeout=120)[0]) for process in processes]
    listed = json.loads(repo.qrm("ports", "list", "--json").output)["allocations"]
    assert {a["service"]: a["port"] for a in answers} == {r["name"]: r["port"] for r in listed if r["name"] in names}
    assert len({r["port"] for r in listed}) == len(listed) == 1 + len(names)
    assert int(git(repo.root, "rev-list", "--count", "HEAD")) == 1 + len(names)


def test_push_sends_the_commit_to_the_origin(tmp_path: Path) -> None:
    origin, _, writer = clones(tmp_path)
    (writer / ".gitignore").write_text(".qrm/\n")
    git(writer, "add", "-A")
    git(writer, "commit", "-qm", "ignore .qrm")
    done = Workspace(writer).qrm("ports", "allocate", "myapp", "--type", "app", "--push", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["commit"] == git(origin, "rev-parse", "main").strip()
    assert git(origin, "log", "-2", "--format=%s", "main").splitlines()[1] == "ignore .qrm"  # pushed along
