"""Real qrm processes racing each other, and killed mid-apply: the registry is never torn."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from reconciler.core.state import RecordedService
from reconciler.edges.registry import Registry
from tests.support.workspace import Workspace


def services(count: int) -> str:
    return "---\n".join(f"kind: Service\nname: svc-{i:04d}\ntype: app\n" for i in range(count))


def start_apply(ws: Workspace, *extra: str, output: Path | None = None) -> subprocess.Popen[str]:
    """`qrm apply --yes` as a process; with `output`, stdout and stderr go to that file, not to pipes.

    A pipe nobody reads fills up: a process printing a 3,000-line plan into one would block
    before it writes anything, and a test killing it would only ever kill a blocked process.
    """
    command = [sys.executable, "-m", "reconciler", "-C", str(ws.root), "apply", "--yes", *extra]
    if output is None:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with output.open("w") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, text=True)


def registry_file(ws: Workspace) -> Path:
    return ws.root / ".qrm" / "registry.db"


def read_registry(ws: Workspace) -> tuple[dict[str, RecordedService], int]:
    """The recorded services and the number of recorded applies; empty when there is no registry file."""
    if not registry_file(ws).exists():
        return {}, 0
    registry = Registry(f"sqlite:///{registry_file(ws)}")
    try:
        return registry.recorded_services(), registry.count_applies()
    finally:
        registry.close()


def assert_consistent(ws: Workspace, expected: int) -> dict[str, RecordedService]:
    """Every service allocated once, no port handed out twice, and the lock file says the same."""
    recorded, _ = read_registry(ws)
    assert set(recorded) == {f"svc-{i:04d}" for i in range(expected)}
    addresses = [(s.host, s.port) for s in recorded.values()]
    assert len(set(addresses)) == len(addresses), "a host:port is recorded twice"
    allocations = yaml.safe_load(ws.lockfile.read_text())["allocations"]
    assert {a["name"]: (a["host"], a["port"]) for a in allocations} == {
        name: (s.host, s.port) for name, s in recorded.items()}
    return recorded


# --- two applies at once -------------------------------------------------------------------------


def test_of_two_simultaneous_applies_one_wins_and_the_other_is_told_who_holds_the_lock(
        workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services(200))
    processes = [start_apply(workspace), start_apply(workspace)]
    runs = {p.pid: (p.returncode, out, err) for p in processes for out, err in [p.communicate(timeout=60)]}

    applied = [pid for pid, (code, out, _) in runs.items() if code == 0 and "Apply complete: 200 created" in out]
    assert len(applied) == 1, runs
    [winner] = applied
    [(code, out, err)] = [run for pid, run in runs.items() if pid != winner]
    if code == 1:  # they overlapped: the other one names the winner
        assert f"workspace is locked by pid {winner}" in err, runs
    else:  # the second one started after the first had finished: nothing left to do
        assert code == 0, runs
        assert "No changes" in out, runs
    assert_consistent(workspace, 200)


def test_with_a_lock_timeout_the_second_apply_waits_and_then_has_nothing_to_do(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services(200))
    processes = [start_apply(workspace, "--lock-timeout", "60") for _ in range(2)]
    outputs = [p.communicate(timeout=90) for p in processes]
    summary = [(p.pid, p.returncode, out, err) for p, (out, err) in zip(processes, outputs, strict=True)]
    assert [p.returncode for p in processes] == [0, 0], summary
    assert sorted("Apply complete: 200 created" in out for out, _ in outputs) == [False, True], summary
    assert any("No changes" in out for out, _ in outputs), summary
    assert_consistent(workspace, 200)
    _, applies = read_registry(workspace)
    assert applies == 1


# --- killed mid-apply ----------------------------------------------------------------------------

BIG = 3000


def make_big_workspace(root: Path) -> Workspace:
    ws = Workspace(root)
    ws.manifest("ranges.yaml", "kind: PortRange\nname: app\nstart: 20000\nend: 29999\n")
    ws.manifest("svc.yaml", services(BIG))
    return ws


def wait_for_lock(ws: Workspace, process: subprocess.Popen[str]) -> None:
    """Return once the apply holds the workspace lock (start-up is over), or has ended."""
    lock = ws.root / ".qrm" / "apply.lock"
    while process.poll() is None and not lock.exists():
        time.sleep(0.002)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, float]:
    """The reference: the same 3,000 services applied in one go, and how long it ran once it held the lock.

    That duration only spreads the kills below over the part of a run that writes; nothing asserts on it.
    """
    ws = make_big_workspace(tmp_path_factory.mktemp("reference") / "ws")
    log = ws.root.parent / "apply.log"
    process = start_apply(ws, "--no-refresh", output=log)
    wait_for_lock(ws, process)
    locked_at = time.monotonic()
    assert process.wait(timeout=60) == 0, log.read_text()[-2000:]
    return ws, time.monotonic() - locked_at


def test_an_apply_killed_at_any_moment_leaves_nothing_torn_and_the_next_apply_converges(
        tmp_path: Path, uninterrupted: tuple[Workspace, float]) -> None:
    reference_ws, window = uninterrupted
    reference_lockfile = reference_ws.lockfile.read_bytes()
    reference, _ = read_registry(reference_ws)
    rng = random.Random()
    for attempt, fraction in enumerate((0.2, 0.5, 0.75, 1.0)):
        ws = make_big_workspace(tmp_path / f"try{attempt}")
        delay = window * fraction * rng.uniform(0.8, 1.1)
        process = start_apply(ws, "--no-refresh", output=tmp_path / f"try{attempt}.log")
        wait_for_lock(ws, process)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        where = (f"attempt {attempt}: killed {delay:.2f}s after it took the lock, of a {window:.2f}s run "
                 f"(exit {process.returncode})")

        recorded, applies = read_registry(ws)
        assert (len(recorded), applies) in {(0, 0), (BIG, 1)}, f"{where}: a partial registry"
        if recorded:
            assert recorded == reference, where
        if ws.lockfile.exists():
            assert ws.lockfile.read_bytes() == reference_lockfile, f"{where}: a torn lock file"
            assert recorded, f"{where}: a lock file without a registry"

        result = ws.qrm("apply", "--yes", "--no-refresh")
        assert result.exit_code == 0, f"{where}: {result.output[-2000:]}"
        assert ws.lockfile.read_bytes() == reference_lockfile, where
        assert read_registry(ws)[0] == reference, where
        assert ws.qrm("plan", "--no-refresh", "--detailed-exitcode").exit_code == 0, where
