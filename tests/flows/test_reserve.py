"""flows.writes.reserve_port (the dashboard's Reserve Port form): a Reservation written, validated, committed
naming the caller and applied, so the allocator skips the port; every refusal leaves no file changed and no
commit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.core.errors import ConflictError, RequestError
from reconciler.flows.apply import apply_workspace
from reconciler.flows.workspace import open_workspace
from reconciler.flows.writes import allocate_service, reserve_port
from tests.support.git_repos import git, repository, services
from tests.support.workspace import Workspace

BASE = services("existing") + """\
---
kind: Service
name: pinned
type: app
port: 8500
---
kind: Reservation
name: legacy
ports: [8600]
reason: the old admin
"""


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] not in (".git", ".qrm", "reports", "generated")}


@pytest.fixture
def repo(workspace: Workspace) -> Workspace:
    workspace.manifest("base.yaml", BASE)
    workspace.write("qrm.yaml", 'commit_author: "Deploy Bot <deploy@example.com>"\n')
    repository(workspace)
    apply_workspace(open_workspace(workspace.root))  # existing gets 8000
    return workspace


def test_a_reservation_is_committed_naming_the_caller_and_the_allocator_skips_its_port(repo: Workspace) -> None:
    made = reserve_port(open_workspace(repo.root), "localhost", 8001, "a demo on Friday", caller="alice")
    assert (made.name, made.host, made.port, made.file) == ("reserved-localhost-8001", "localhost", 8001,
                                                            "manifests/reservations/reserved-localhost-8001.yaml")
    assert yaml.safe_load((repo.root / made.file).read_text()) == {
        "kind": "Reservation", "name": "reserved-localhost-8001", "host": "localhost", "ports": [8001],
        "reason": "a demo on Friday"}
    subject, author, body = git(repo.root, "log", "-1", "--format=%s%x00%an%x00%b").split("\0")
    assert subject == "qrm: reserve port 8001 on localhost (requested by alice)"
    assert author == "Deploy Bot"
    assert "Qrm-Write: reserve reserved-localhost-8001" in body and "Qrm-Caller: alice" in body
    assert made.commit == git(repo.root, "rev-parse", "HEAD").strip()
    assert git(repo.root, "status", "--porcelain", "manifests").strip() == ""
    assert allocate_service(open_workspace(repo.root), "next", "app", caller="bob").port == 8002


@pytest.mark.parametrize(("host", "port", "reason", "name", "error", "message"), [
    ("localhost", 8000, "x", None, ConflictError, "port: localhost:8000 is allocated to existing; release it first"),
    ("localhost", 8500, "x", None, ConflictError, "port: localhost:8500 is pinned by pinned"),
    ("localhost", 8600, "x", None, ConflictError, "port: localhost:8600 is reserved already (the old admin)"),
    ("localhost", 0, "x", None, RequestError, "port: '0' is not a port (1-65535)"),
    ("localhost", 65536, "x", None, RequestError, "port: '65536' is not a port"),
    ("localhost", True, "x", None, RequestError, "port: 'True' is not a port"),
    ("forge", 8001, "x", None, RequestError, "host: unknown host 'forge'; known hosts: localhost"),
    ("localhost", 8001, " ", None, RequestError, "reason: say why"),
    ("localhost", 8001, "x" * 201, None, RequestError, "reason: at most 200 characters"),
    ("localhost", 8001, "x", "../evil", RequestError, "name: '../evil' is not"),
    ("localhost", 8001, "x", "legacy", ConflictError, "name: a reservation named 'legacy' exists already"),
])
def test_a_refused_reservation_writes_and_commits_nothing(repo: Workspace, host: str, port: Any, reason: str,
                                                          name: str | None, error: type[Exception],
                                                          message: str) -> None:
    before, head = tree(repo.root), git(repo.root, "rev-parse", "HEAD")
    with pytest.raises(error) as refused:
        reserve_port(open_workspace(repo.root), host, port, reason, name, caller="alice")
    assert str(refused.value).startswith(message)
    assert tree(repo.root) == before
    assert git(repo.root, "rev-parse", "HEAD") == head
