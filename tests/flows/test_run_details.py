"""What the dashboard's Tests pages read beyond GET /test-runs/{id}: every case's outcome in each environment's
latest run (compare), a run's times, and its attempts with their messages from the environment's report, which
belong to a run only while that report is of it. Against two Quantum stand-ins whose pages differ."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from reconciler.core.errors import QrmError
from reconciler.flows import test_runs
from reconciler.flows.tests_history import compare, suite_history
from reconciler.flows.workspace import open_workspace
from tests.support.quantum_server import Running, quantum_server
from tests.support.shop_suite import CASES, manifests
from tests.support.workspace import Workspace

RETRIED = {"id": "flaky", "name": "flaky", "type": "custom", "retries": 1, "request": {"path": "/flaky"},
           "expect": [{"status": 200}]}


@pytest.fixture(scope="module")
def dev() -> Iterator[Running]:
    with quantum_server("v1") as running:
        yield running


@pytest.fixture(scope="module")
def staging() -> Iterator[Running]:
    with quantum_server("v2") as running:
        yield running


@pytest.fixture
def ran(workspace: Workspace, dev: Running, staging: Running) -> Workspace:
    workspace.manifest("shop.yaml", manifests(dev.url, staging.url, [*CASES, RETRIED]))
    assert workspace.qrm("tests", "run", "shop-smoke").exit_code == 0
    return workspace


def test_compare_gives_every_cases_outcome_in_each_environments_latest_run(ran: Workspace) -> None:
    ws = open_workspace(ran.root)
    expected = {"flaky": {"dev": "passed", "staging": "passed"}, "home": {"dev": "passed", "staging": "passed"},
                "missing": {"dev": "passed", "staging": "passed"}, "variant": {"dev": "passed", "staging": "failed"}}
    assert compare(ws, "shop-smoke").outcomes == expected
    (ran.root / ".qrm" / "registry.db").unlink()  # a fresh clone: the committed reports say the same
    assert compare(ws, "shop-smoke").outcomes == expected


def test_a_runs_times_and_its_attempts_with_their_messages(ran: Workspace) -> None:
    ws = open_workspace(ran.root)
    latest = {run.environment: run for run in suite_history(ws, "shop-smoke").runs}
    run = latest["staging"]
    assert run.id is not None
    times = test_runs.run_times(ws, run.id)
    assert times is not None and times.started_at == run.started_at and times.finished_at >= times.started_at
    assert times.duration_ms == run.duration_ms
    assert test_runs.run_times(ws, 9999) is None

    attempts = test_runs.reported_attempts(ws, "shop-smoke", "staging", times.started_at)
    assert sorted(attempts) == ["flaky", "home", "missing", "variant"]
    assert [(a["status"], a["passed"], a.get("failures")) for a in attempts["flaky"]] == [
        (500, False, ["status 500, expected 200"]), (200, True, None)]
    [variant] = attempts["variant"]
    assert variant["passed"] is False and "v1" in variant["failures"][0]


@pytest.mark.parametrize("started_at", ["2000-01-01T00:00:00+00:00", ""])
def test_attempts_of_a_run_whose_report_a_later_run_replaced_are_not_shown(ran: Workspace, started_at: str) -> None:
    assert test_runs.reported_attempts(open_workspace(ran.root), "shop-smoke", "dev", started_at) == {}


def test_a_damaged_report_line_leaves_out_that_cases_attempts_only(ran: Workspace) -> None:
    ws = open_workspace(ran.root)
    report = ran.root / "reports" / "tests" / "shop-smoke" / "dev.yaml"
    lines = report.read_text().splitlines(keepends=True)
    started = next(line for line in lines if line.startswith("started_at: ")).removeprefix("started_at: ")
    damaged = ["- {not json\n" if '"id": "home"' in line else line for line in lines]
    report.write_text("".join(damaged))
    assert sorted(test_runs.reported_attempts(ws, "shop-smoke", "dev", started.strip().strip('"'))) == [
        "flaky", "missing", "variant"]


@pytest.mark.parametrize(("suite", "environment", "problem"), [
    ("../../etc", "dev", "suite '../../etc' is not a suite name"),
    ("shop-smoke", "../x", "environment '../x' is not an environment name")])
def test_a_suite_or_environment_that_is_no_name_reads_nothing(ran: Workspace, suite: str, environment: str,
                                                              problem: str) -> None:
    with pytest.raises(QrmError, match=re.escape(problem)):
        test_runs.reported_attempts(open_workspace(ran.root), suite, environment, "")
