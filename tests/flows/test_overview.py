"""flows.overview.kept_overview: the Overview `qrm serve` keeps between loads. It is planned once while nothing
it is marked by changes (the manifests, the registry and its health, the committed reports, the test runs) and at
most FRESH_FOR seconds (the listeners the plan reads have no mark); every change shows in the next read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.flows import test_runs
from reconciler.flows.cached_reads import Reads
from reconciler.flows.overview import FRESH_FOR, Overview, kept_overview
from reconciler.flows.workspace import open_workspace
from tests.support.workspace import Workspace

SERVICE = "kind: Service\nname: {name}\nhost: localhost\ntype: app\n"


class Clock:
    """A monotonic clock the test moves: no test waits for wall-clock time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def applied(tmp_path: Path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ws.write("qrm.yaml", "name: kept\n")
    ws.manifest("svc.yaml", SERVICE.format(name="web"))
    result = ws.qrm("apply", "--yes", "--no-refresh", "--no-tests")
    assert result.exit_code == 0, result.output
    return ws


def read(ws: Workspace, reads: Reads, clock: Clock) -> Overview:
    return kept_overview(open_workspace(ws.root), reads, clock)


def _nothing(ws: Workspace, clock: Clock) -> None:
    clock.now += FRESH_FOR / 10


def _new_manifest(ws: Workspace, clock: Clock) -> None:
    ws.manifest("more.yaml", SERVICE.format(name="api"))


def _applied_again(ws: Workspace, clock: Clock) -> None:
    ws.manifest("more.yaml", SERVICE.format(name="api"))
    ws.qrm("apply", "--yes", "--no-refresh", "--no-tests")


def _lockfile_edited(ws: Workspace, clock: Clock) -> None:
    ws.lockfile.write_text(ws.lockfile.read_text() + "# edited by hand\n")


def _suite_history_written(ws: Workspace, clock: Clock) -> None:
    ws.write("reports/tests/smoke/history.jsonl", '{"environment": "dev", "passed": 1}\n')


def _run_started(ws: Workspace, clock: Clock) -> None:
    test_runs.start_run(open_workspace(ws.root), "smoke", "dev", lease=60)


def _run_ended(ws: Workspace, clock: Clock) -> None:
    """A run that started before the first read ends (as a server's run that could not run does)."""
    opened = open_workspace(ws.root)
    test_runs.end_run(opened, test_runs.last_run_id(opened), "error", "the environment is gone")


def _time_passed(ws: Workspace, clock: Clock) -> None:
    clock.now += FRESH_FOR


@pytest.mark.parametrize(("change", "planned_again", "state"), [
    (_nothing, False, "in sync"),
    (_new_manifest, True, "pending"),
    (_applied_again, True, "in sync"),
    (_lockfile_edited, True, "drift"),
    (_suite_history_written, True, "in sync"),
    (_run_started, True, "in sync"),
    (_run_ended, True, "in sync"),
    (_time_passed, True, "in sync"),  # a listener may have come or gone: planned again
])
def test_the_overview_is_planned_again_only_after_a_change_or_its_lifetime(
        applied: Workspace, change: Callable[[Workspace, Clock], None], planned_again: bool, state: str) -> None:
    reads, clock = Reads(), Clock()
    if change is _run_ended:
        _run_started(applied, clock)
    clock.now = FRESH_FOR * 100  # the start of a lifetime, so a tenth of it stays inside
    first = read(applied, reads, clock)
    assert read(applied, reads, clock) is first and reads.loads == 1  # a burst of loads plans once
    change(applied, clock)
    second = read(applied, reads, clock)
    assert (second is not first, reads.loads) == (planned_again, 1 + planned_again)
    assert second.sync.state == state
