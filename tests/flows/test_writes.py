"""Writes that go through git (flows/writes): allocate and release a service's port in real git
repositories: the manifest written (the rest of an existing file byte for byte), the commit (message,
author, one per call), the port in reports/allocations.yaml, idempotency, refusals that change nothing,
concurrent callers (threads and processes)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.core.errors import ConflictError, NotFoundError, QrmError, RequestError
from reconciler.flows.workspace import open_workspace
from reconciler.flows.writes import allocate_service, release_service
from tests.support.git_repos import clones, git, repository, services
from tests.support.paths import REPO
from tests.support.workspace import Workspace

PROJECT = """\
kind: Project
name: shop
environments:
  dev: {host: localhost}
"""


def head(root: Path) -> str:
    return git(root, "rev-parse", "HEAD").strip()


def commits(root: Path) -> int:
    return int(git(root, "rev-list", "--count", "HEAD"))


def tree(root: Path) -> dict[str, bytes]:
    """Every file of the working tree but .git and .qrm: what a refused request must leave as it was."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] not in (".git", ".qrm")}


def lockfile_ports(root: Path) -> dict[str, int]:
    data = yaml.safe_load((root / "reports" / "allocations.yaml").read_text())
    return {entry["name"]: entry["port"] for entry in data["allocations"] or []}


def committed_services(root: Path) -> set[str]:
    names = set()
    for path in git(root, "ls-tree", "-r", "--name-only", "HEAD", "manifests").split():
        for doc in yaml.safe_load_all(git(root, "show", f"HEAD:{path}")):
            if isinstance(doc, dict) and doc.get("kind") == "Service":
                names.add(doc["name"])
    return names


@pytest.fixture
def repo(workspace: Workspace) -> Workspace:
    workspace.manifest("base.yaml", services("existing") + "---\n" + PROJECT)
    workspace.write("qrm.yaml", 'commit_author: "Deploy Bot <deploy@example.com>"\n')
    return repository(workspace)


def test_allocate_writes_a_service_document_commits_it_and_answers_the_applied_port(repo: Workspace) -> None:
    before = commits(repo.root)
    answer = allocate_service(open_workspace(repo.root), "myapp", "app", "localhost", caller="alice (token ci)")
    assert (answer.success, answer.service, answer.host, answer.created) == (True, "myapp", "localhost", True)
    assert (repo.root / "manifests/services/myapp.yaml").read_text() == textwrap.dedent("""\
        kind: Service
        name: myapp
        host: localhost
        type: app
        """)
    assert commits(repo.root) == before + 1 and answer.commit == head(repo.root)
    subject, author, body = git(repo.root, "log", "-1", "--format=%s%x00%an <%ae>%x00%b").split("\0")
    assert subject == "qrm: allocate a port (app) for myapp on localhost (requested by alice (token ci))"
    assert author == "Deploy Bot <deploy@example.com>"
    assert "Qrm-Write: allocate myapp" in body and "Qrm-Report" not in body  # a watcher applies it like any change
    assert git(repo.root, "show", "--name-only", "--format=", "HEAD").split() == ["manifests/services/myapp.yaml"]
    assert lockfile_ports(repo.root) == {"existing": 8000, "myapp": 8001} and answer.port == 8001
    assert git(repo.root, "status", "--porcelain", "manifests").strip() == ""


def test_an_existing_file_keeps_every_byte_and_gets_the_new_document_appended(repo: Workspace) -> None:
    original = "# hand-written: keep this comment\nkind: Service   # aligned comment\nname: 'other'\n" \
               "host: localhost\ntype: app\n\n# trailing notes\n"
    repo.write("manifests/services/myapp.yaml", original)
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "other")
    allocate_service(open_workspace(repo.root), "myapp", "app", "localhost", project="shop", preferred_port=8500)
    text = (repo.root / "manifests/services/myapp.yaml").read_text()
    assert text.startswith(original)
    assert text[len(original):] == ("---\nkind: Service\nname: myapp\nhost: localhost\ntype: app\n"
                                    "preferred_port: 8500\ntags:\n- project:shop\n")
    assert lockfile_ports(repo.root)["myapp"] == 8500
    again = allocate_service(open_workspace(repo.root), "myapp", "app", "localhost")
    assert (again.port, again.project, again.created) == (8500, "shop", False)


@pytest.mark.parametrize("name", ["yes", "on", "1_000", "123"])
def test_a_name_yaml_would_read_as_a_boolean_or_number_stays_a_name(repo: Workspace, name: str) -> None:
    answer = allocate_service(open_workspace(repo.root), name, "app", "localhost")
    assert (answer.created, lockfile_ports(repo.root)[name]) == (True, answer.port)
    assert name in committed_services(repo.root)


def test_a_second_call_answers_the_same_port_without_a_commit(repo: Workspace) -> None:
    ws = open_workspace(repo.root)
    first = allocate_service(ws, "myapp", "app", "localhost")
    sha = head(repo.root)
    again = allocate_service(ws, "myapp", "app", "localhost", caller="someone else")
    assert (again.port, again.created, again.commit, head(repo.root)) == (first.port, False, None, sha)
    existing = allocate_service(ws, "existing", "app", "localhost")  # a service written by hand answers too
    assert (existing.port, existing.created, existing.file) == (8000, False, "manifests/base.yaml")


@pytest.mark.parametrize(("name", "port_type", "host", "error", "field"), [
    ("myapp", "app", "forge", ConflictError, "service_name"),   # it is on localhost
    ("myapp", "database", "localhost", ConflictError, "port_type"),
    ("shop-dev-web", "app", "localhost", ConflictError, "service_name"),  # a project's instance
])
def test_a_call_that_clashes_with_what_exists_is_a_conflict(repo: Workspace, name: str, port_type: str, host: str,
                                                            error: type[QrmError], field: str) -> None:
    repo.write("manifests/base.yaml", services("existing") + "---\n" + PROJECT + "services:\n  web: {type: app}\n"
               "---\nkind: Host\nname: forge\naddress: 127.0.0.9\n")
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "project with a web service")
    ws = open_workspace(repo.root)
    allocate_service(ws, "myapp", "app", "localhost")
    sha, files = head(repo.root), tree(repo.root)
    with pytest.raises(error) as raised:
        allocate_service(ws, name, port_type, host)
    assert raised.value.field == field
    assert (head(repo.root), tree(repo.root)) == (sha, files)


def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_request(repo: Workspace) -> None:
    ws = open_workspace(repo.root)
    first = allocate_service(ws, "myapp", "app", "localhost", idempotency_key="req-1")
    release_service(ws, "myapp", "localhost")  # the service is gone: only the stored answer can replay it
    sha = head(repo.root)
    assert allocate_service(ws, "myapp", "app", "localhost", idempotency_key="req-1") == first
    assert head(repo.root) == sha
    with pytest.raises(ConflictError, match="Idempotency-Key: this key was used for another request"):
        allocate_service(ws, "other", "app", "localhost", idempotency_key="req-1")
    with pytest.raises(RequestError, match="Idempotency-Key"):
        allocate_service(ws, "other", "app", "localhost", idempotency_key="bad\nkey")


def test_a_refused_request_gives_its_idempotency_key_back_and_the_key_is_in_the_registry(repo: Workspace) -> None:
    from reconciler.edges.registry import Registry

    ws = open_workspace(repo.root)
    with pytest.raises(RequestError, match="port_type"):
        allocate_service(ws, "myapp", "gpu", "localhost", idempotency_key="req-2")
    fixed = allocate_service(ws, "myapp", "app", "localhost", idempotency_key="req-2")  # the key was given back
    assert fixed.created is True
    assert not (repo.root / ".qrm" / "idempotency.json").exists()
    registry = Registry(ws.registry_url(), owner=ws.name)
    try:  # what a replica of this workspace finds: the answer, under the key
        taken, answer = registry.claim_idempotency_key("req-2", "another request", now="9", expired_before="0",
                                                       stale_before="0")
    finally:
        registry.close()
    assert (taken, answer) == ("conflict", None)


@pytest.mark.parametrize(("kwargs", "field", "message"), [
    ({"service_name": "My App"}, "service_name", "'My App' is not a name of lower-case letters"),
    ({"service_name": "../../etc/x"}, "service_name", "is not a name"),
    ({"port_type": "gpu"}, "port_type", "unknown port type 'gpu'; expected one of: app, cache, database"),
    ({"host": "mars"}, "host", "unknown host 'mars'; known hosts: localhost (add a Host)"),
    ({"project": "nope"}, "project", "unknown project 'nope'; known projects: shop"),
    ({"preferred_port": 70000}, "preferred_port", "70000 is not a port"),
])
def test_a_bad_request_names_its_field_and_leaves_no_file_changed_and_no_commit(
        repo: Workspace, kwargs: dict[str, Any], field: str, message: str) -> None:
    sha, files = head(repo.root), tree(repo.root)
    request: dict[str, Any] = {"service_name": "myapp", "port_type": "app", "host": "localhost", **kwargs}
    with pytest.raises(RequestError) as raised:
        allocate_service(open_workspace(repo.root), **request)
    assert raised.value.field == field and message in str(raised.value)
    assert str(raised.value).startswith(f"{field}: ")
    assert (head(repo.root), tree(repo.root)) == (sha, files)
    assert not (repo.root / "manifests/services").exists()


def test_a_range_for_other_hosts_only_is_refused_before_any_commit(repo: Workspace) -> None:
    repo.manifest("gpu.yaml", "kind: Host\nname: forge\naddress: 127.0.0.9\n---\n"
                              "kind: PortRange\nname: gpu\nstart: 9100\nend: 9101\nhost: forge\n")
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "gpu on forge")
    sha, files = head(repo.root), tree(repo.root)
    with pytest.raises(RequestError, match="port_type: no gpu range serves host 'localhost'"):
        allocate_service(open_workspace(repo.root), "trainer", "gpu", "localhost")
    assert (head(repo.root), tree(repo.root)) == (sha, files)


def test_an_apply_that_fails_after_the_commit_is_undone_by_a_second_commit(repo: Workspace) -> None:
    """The app range has room for one more service only: the second request is committed, its apply finds
    the range exhausted, and a commit puts the manifests back (history is never rewritten)."""
    repo.manifest("range.yaml", "kind: PortRange\nname: app\nstart: 8000\nend: 8001\n")
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "a small app range")
    ws = open_workspace(repo.root)
    allocate_service(ws, "one", "app", "localhost")
    committed = git(repo.root, "ls-tree", "-r", "HEAD", "manifests")
    before = commits(repo.root)
    with pytest.raises(QrmError, match="range exhausted"):
        allocate_service(ws, "two", "app", "localhost")
    assert commits(repo.root) == before + 2
    assert git(repo.root, "log", "-1", "--format=%s").startswith("qrm: undo the allocation for two on localhost")
    assert git(repo.root, "ls-tree", "-r", "HEAD", "manifests") == committed
    assert git(repo.root, "status", "--porcelain", "manifests").strip() == ""
    assert set(lockfile_ports(repo.root)) == {"existing", "one"}


def test_uncommitted_manifests_are_refused(repo: Workspace) -> None:
    repo.manifest("draft.yaml", services("draft"))
    sha = head(repo.root)
    with pytest.raises(QrmError, match=r"manifests/draft.yaml differ\(s\) from HEAD .*commit or stash yours first"):
        allocate_service(open_workspace(repo.root), "myapp", "app", "localhost")
    assert head(repo.root) == sha and not (repo.root / "manifests/services").exists()


def test_outside_git_it_is_refused(workspace: Workspace) -> None:
    workspace.manifest("base.yaml", services("a"))
    with pytest.raises(QrmError, match=r"allocate writes through git: .* is not a git repository"):
        allocate_service(open_workspace(workspace.root), "myapp", "app", "localhost")


def test_release_removes_only_its_document_commits_and_frees_the_port(repo: Workspace) -> None:
    repo.write("manifests/team.yaml", "# the team's services\nkind: Service\nname: api\nhost: localhost\ntype: app\n"
                                      "---\n# the worker, see ADR 12\nkind: Service\nname: worker   # keep\n"
                                      "host: localhost\ntype: app\n---\nkind: Service\nname: cron\nhost: localhost\n"
                                      "type: app\n")
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "team")
    ws = open_workspace(repo.root)
    allocate_service(ws, "api", "app", "localhost")  # applies the workspace: existing, api, worker, cron
    ports = lockfile_ports(repo.root)
    released = release_service(ws, "worker", "localhost", caller="bob")
    assert (released.port, released.file, released.commit) == (ports["worker"], "manifests/team.yaml", head(repo.root))
    assert (repo.root / "manifests/team.yaml").read_text() == (
        "# the team's services\nkind: Service\nname: api\nhost: localhost\ntype: app\n"
        "---\nkind: Service\nname: cron\nhost: localhost\ntype: app\n")
    assert git(repo.root, "log", "-1", "--format=%s") == "qrm: release worker on localhost (requested by bob)\n"
    assert "worker" not in lockfile_ports(repo.root)
    assert allocate_service(ws, "newcomer", "app", "localhost").port == ports["worker"]  # the lowest free again


def test_releasing_the_last_document_of_a_file_deletes_the_file(repo: Workspace) -> None:
    ws = open_workspace(repo.root)
    allocate_service(ws, "myapp", "app", "localhost")
    release_service(ws, "myapp", "localhost")
    assert not (repo.root / "manifests/services/myapp.yaml").exists()
    assert "myapp" not in committed_services(repo.root)


@pytest.mark.parametrize(("name", "host", "error", "field"), [
    ("ghost", "localhost", NotFoundError, "service_name"),
    ("existing", "forge", NotFoundError, "host"),
    ("shop-dev-web", "localhost", NotFoundError, "service_name"),
])
def test_releasing_what_is_not_there_is_not_found(repo: Workspace, name: str, host: str, error: type[QrmError],
                                                  field: str) -> None:
    sha, files = head(repo.root), tree(repo.root)
    with pytest.raises(error) as raised:
        release_service(open_workspace(repo.root), name, host)
    assert raised.value.field == field
    assert (head(repo.root), tree(repo.root)) == (sha, files)


def test_100_concurrent_calls_give_100_ports_and_100_commits(repo: Workspace) -> None:
    ws = open_workspace(repo.root)
    before = commits(repo.root)
    names = [f"svc-{i:03d}" for i in range(100)]
    with ThreadPoolExecutor(max_workers=100) as pool:
        answers = list(pool.map(lambda name: allocate_service(ws, name, "app", "localhost", caller=name), names))
    assert len({a.port for a in answers}) == 100 and {a.service for a in answers} == set(names)
    assert commits(repo.root) == before + 100
    assert committed_services(repo.root) == {"existing", *names}
    assert {name: port for name, port in lockfile_ports(repo.root).items() if name in names} == {
        a.service: a.port for a in answers}
    subjects = git(repo.root, "log", f"-{100}", "--format=%s").splitlines()
    assert sorted(s.rsplit("(requested by ", 1)[1].rstrip(")") for s in subjects) == names


WORKER = """\
import sys
from pathlib import Path
from reconciler.flows.workspace import open_workspace
from reconciler.flows.writes import allocate_service
ws = open_workspace(Path(sys.argv[1]))
for name in sys.argv[2:]:
    print(allocate_service(ws, name, "app", "localhost", caller=name).port, flush=True)
"""


def test_several_processes_at_once_lose_no_commit(repo: Workspace) -> None:
    before = commits(repo.root)
    groups = [[f"p{p}-s{i}" for i in range(5)] for p in range(4)]
    processes = [subprocess.Popen([sys.executable, "-c", WORKER, str(repo.root), *group], cwd=REPO, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for group in groups]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, [err for _, err in outputs]
    ports = [int(line) for out, _ in outputs for line in out.split()]
    assert len(ports) == 20 and len(set(ports)) == 20
    assert commits(repo.root) == before + 20
    assert committed_services(repo.root) >= {name for group in groups for name in group}


# --- --push: a real bare origin ---------------------------------------------------------------------------

def _origin_and_clones(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A bare origin holding one service, the writer's clone (qrm's checkout) and a developer's clone."""
    origin, dev, writer = clones(tmp_path)
    (writer / ".gitignore").write_text(".qrm/\n")
    git(writer, "add", "-A")
    git(writer, "commit", "-qm", "ignore .qrm")
    git(writer, "push", "-q", "origin", "main")
    git(dev, "pull", "-q", "origin", "main")
    return origin, dev, writer


def test_push_puts_the_write_on_the_origin_on_top_of_what_moved_there(tmp_path: Path) -> None:
    origin, dev, writer = _origin_and_clones(tmp_path)
    (dev / "manifests" / "theirs.yaml").write_text(services("theirs"))
    git(dev, "add", "-A")
    git(dev, "commit", "-qm", "their change")
    git(dev, "push", "-q", "origin", "main")
    theirs = head(dev)
    answer = allocate_service(open_workspace(writer), "myapp", "app", "localhost", caller="ci", push=True)
    assert answer.commit == git(origin, "rev-parse", "main").strip() == head(writer)
    assert git(origin, "log", "--format=%s", "main").splitlines()[:2] == [
        "qrm: allocate a port (app) for myapp on localhost (requested by ci)", "their change"]
    assert git(origin, "merge-base", "--is-ancestor", theirs, "main") == ""  # their commit kept: not forced
    assert set(lockfile_ports(writer)) == {"a", "theirs", "myapp"}  # the apply saw their change too
    released = release_service(open_workspace(writer), "myapp", "localhost", push=True)
    assert released.commit == git(origin, "rev-parse", "main").strip()


def test_a_push_that_conflicts_takes_the_write_back_out_and_leaves_the_origin_alone(tmp_path: Path) -> None:
    origin, dev, writer = _origin_and_clones(tmp_path)
    (dev / "manifests" / "services").mkdir()
    (dev / "manifests" / "services" / "myapp.yaml").write_text(services("myapp").replace("type: app", "type: web"))
    git(dev, "add", "-A")
    git(dev, "commit", "-qm", "their myapp")
    git(dev, "push", "-q", "origin", "main")
    on_origin = git(origin, "rev-parse", "main")
    before = head(writer)
    with pytest.raises(QrmError, match=re.escape(
            "the push failed, its commit was taken back and nothing was applied: the upstream changed the same "
            "file(s) since: manifests/services/myapp.yaml")):
        allocate_service(open_workspace(writer), "myapp", "app", "localhost", push=True)
    assert git(origin, "rev-parse", "main") == on_origin
    assert head(writer) == before  # the unpushed write is out of the branch: nothing for a later push to rebase
    assert not (writer / "manifests" / "services" / "myapp.yaml").exists()
    assert git(writer, "status", "--porcelain").strip() == ""
    assert not (writer / "reports").exists()  # nothing was applied


def test_a_write_killed_between_its_file_and_its_commit_is_put_back_by_the_next_one(repo: Workspace) -> None:
    """What a write killed right after writing its file leaves (its journal in .qrm, the file changed and not
    committed): the next write puts the file back, goes on, and commits only its own change."""
    rendered = "kind: Service\nname: half\nhost: localhost\ntype: app\n"
    repo.write("manifests/services/half.yaml", rendered)
    repo.write("manifests/services/.half.yaml.x1y2z3.tmp", rendered[:20])  # killed inside a write of it
    repo.write(".qrm/write.journal", json.dumps({"file": "manifests/services/half.yaml", "before": None,
                                                 "after": rendered}))
    answer = allocate_service(open_workspace(repo.root), "whole", "app", "localhost")
    assert sorted(p.name for p in (repo.root / "manifests/services").iterdir()) == ["whole.yaml"]
    assert git(repo.root, "show", "--name-only", "--format=", "HEAD").split() == ["manifests/services/whole.yaml"]
    assert answer.created and not (repo.root / ".qrm/write.journal").exists()


def test_a_person_s_edit_after_an_interrupted_write_is_not_undone(repo: Workspace) -> None:
    repo.write("manifests/services/half.yaml", "kind: Service\nname: edited\nhost: localhost\ntype: app\n")
    repo.write(".qrm/write.journal", json.dumps({"file": "manifests/services/half.yaml", "before": None,
                                                 "after": "kind: Service\nname: half\n"}))
    with pytest.raises(QrmError, match=r"manifests/services/half.yaml differ\(s\) from HEAD"):
        allocate_service(open_workspace(repo.root), "whole", "app", "localhost")
    assert "name: edited" in (repo.root / "manifests/services/half.yaml").read_text()


def test_writes_killed_at_random_moments_leave_a_workspace_the_next_write_works_in(repo: Workspace) -> None:
    ws = open_workspace(repo.root)
    rng = random.Random(16)
    for round_ in range(6):
        names = [f"k{round_}-{i}" for i in range(40)]
        process = subprocess.Popen([sys.executable, "-c", WORKER, str(repo.root), *names], cwd=REPO, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert process.stdout is not None
        process.stdout.readline()  # the first allocation is done: the next ones are under way
        time.sleep(rng.uniform(0.0, 0.4))  # only picks the moment of the kill; nothing is timed
        process.kill()
        process.communicate()
        assert allocate_service(ws, f"after-{round_}", "app", "localhost").created
        assert git(repo.root, "status", "--porcelain", "manifests").strip() == ""
    ports = lockfile_ports(repo.root)
    assert set(ports) == committed_services(repo.root) and len(set(ports.values())) == len(ports)
