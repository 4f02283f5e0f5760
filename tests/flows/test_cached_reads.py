"""flows.cached_reads: what `qrm serve` keeps between reads, on real workspaces and registries. An answer is
computed once per burst, and never outlives a change: another workspace's apply in a shared registry, a
registry deleted and rebuilt, a manifest edited. Answers beyond the bounds go, oldest first.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from reconciler.core.errors import ManifestError
from reconciler.flows.cached_reads import Reads
from reconciler.flows.ports import port_page
from reconciler.flows.workspace import Workspace as Ws
from reconciler.flows.workspace import open_workspace
from tests.support.pgserver import PgDatabase
from tests.support.workspace import Workspace


def team(tmp_path: Path, name: str, *services: str) -> Workspace:
    ws = Workspace(tmp_path / name)
    ws.write("qrm.yaml", f"name: {name}\n")
    ws.manifest("svc.yaml", "".join(f"---\nkind: Service\nname: {s}\nhost: localhost\ntype: app\n" for s in services))
    return ws


def applied(ws: Workspace, *args: str) -> None:
    result = ws.qrm(*args, "apply", "--yes", "--no-refresh", "--no-tests")
    assert result.exit_code == 0, result.output


def listed(reads: Reads, ws: Ws) -> list[tuple[str, str]]:
    """The first page of ports as the server answers it: kept under the registry's mark."""
    registry = reads.registry(ws)
    page = reads.answer(("ports", reads.mark(ws, registry)), lambda: port_page(ws, registry, limit=100))
    return [(a["name"], a["owner"]) for a in page.allocations]


def test_a_burst_of_reads_of_one_answer_computes_it_once() -> None:
    reads, release, calls = Reads(), threading.Event(), []

    def compute() -> str:
        calls.append(1)
        release.wait(30)  # every other reader asks while this one is computing
        return "the answer"

    answers: list[str] = []
    threads = [threading.Thread(target=lambda: answers.append(reads.answer("key", compute))) for _ in range(20)]
    for thread in threads:
        thread.start()
    release.set()
    for thread in threads:
        thread.join()
    assert (answers, len(calls), reads.loads) == (["the answer"] * 20, 1, 1)


def test_a_failed_computation_fails_its_waiters_and_is_not_kept() -> None:
    reads = Reads()

    def broken() -> str:
        raise ManifestError([])

    with pytest.raises(ManifestError):
        reads.answer("key", broken)
    assert reads.answer("key", lambda: "now it works") == "now it works"


@pytest.mark.parametrize(("answers", "answer_bytes", "kept"), [
    (2, 1000, {"b", "c"}),  # the third answer pushes out the least recently used
    (10, 25, {"b", "c"}),  # 10 bytes each: a third passes 25 bytes
    (10, 15, {"c"}),
    (10, 1000, {"a", "b", "c"}),
])
def test_answers_beyond_the_bounds_go_least_recently_used_first(answers: int, answer_bytes: int,
                                                                kept: set[str]) -> None:
    reads = Reads(answers=answers, answer_bytes=answer_bytes)
    for key in ("a", "b", "c"):
        reads.answer(key, lambda: "x" * 10, len)

    def gone() -> str:
        raise LookupError  # not kept: the probe changes nothing

    found = set()
    for key in ("a", "b", "c"):
        try:
            reads.answer(key, gone)
            found.add(key)
        except LookupError:
            pass
    assert found == kept


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_another_workspaces_apply_in_a_shared_registry_shows_in_the_next_read(
        tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        shared = f"sqlite:///{tmp_path / 'shared' / 'registry.db'}"
    else:
        database: PgDatabase = request.getfixturevalue("pg_database")
        shared = database.url
    a, b = team(tmp_path, "team-a", "a-web"), team(tmp_path, "team-b", "b-web")
    applied(a, "--registry", shared)
    ws, reads = open_workspace(a.root, shared), Reads()
    assert listed(reads, ws) == listed(reads, ws) == [("a-web", "team-a")]
    assert reads.loads == 1
    applied(b, "--registry", shared)  # team-a's lock file and manifests do not change
    assert listed(reads, ws) == [("a-web", "team-a"), ("b-web", "team-b")]
    assert reads.loads == 2


@pytest.mark.parametrize("read_between", [True, False], ids=["read-while-it-is-gone", "rebuilt-between-reads"])
def test_a_registry_deleted_and_rebuilt_is_read_again_not_the_old_file(tmp_path: Path, read_between: bool) -> None:
    a = team(tmp_path, "team-a", "web", "api")
    applied(a)
    ws, reads = open_workspace(a.root), Reads()
    assert {name for name, _ in listed(reads, ws)} == {"web", "api"}
    registry = a.root / ".qrm" / "registry.db"
    for leftover in registry.parent.glob("registry.db*"):
        leftover.unlink()
    if read_between:
        assert reads.registry(ws) is None and not registry.exists()  # reads never make one
    a.manifest("svc.yaml", "kind: Service\nname: jobs\nhost: localhost\ntype: app\n")
    (a.root / "reports" / "allocations.yaml").unlink()  # or the new registry would be seeded from it
    applied(a)
    assert listed(reads, ws) == [("jobs", "team-a")]


def test_the_desired_state_is_read_again_when_a_manifest_changes(tmp_path: Path) -> None:
    a = team(tmp_path, "team-a", "web")
    ws, reads = open_workspace(a.root), Reads()
    first = reads.desired(ws)
    assert reads.desired(ws) is not None and set(first.instances) == {"web"}
    a.manifest("svc.yaml", "kind: Service\nname: api\nhost: localhost\ntype: app\n")
    assert set(reads.desired(ws).instances) == {"api"}
    a.manifest("svc.yaml", "kind: Service\nname: api\nhost: localhost\ntype: app\nport: nope\n")
    with pytest.raises(ManifestError):
        reads.desired(ws)
