"""An environment that is down is one fact: `qrm tests run` says it in one line, the summary in one
entry, and the flaky rule leaves the run out; a refused datasource is an error, as a refused server is."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from reconciler.core.models import TestSuite
from reconciler.core.test_results import ERROR, FAILED, PASSED, SKIPPED, CaseResult, SuiteRun, Target
from reconciler.flows.tests_history import flaky_cases
from tests.support.quantum_server import Running, quantum_server
from tests.support.workspace import Workspace

SUITE = TestSuite.model_validate({"kind": "TestSuite", "name": "s", "project": "p"})
DEV = Target("dev", "http://127.0.0.1:9160")
REFUSED = "cannot connect to 127.0.0.1:9160: Connection refused"


def result(case: str, outcome: str, reason: str = "", environment: str = "dev") -> CaseResult:
    return CaseResult(case, case, "smoke", environment, outcome, (), reason)


@pytest.mark.parametrize(("results", "expected"), [
    ([result("a", ERROR, REFUSED), result("b", ERROR, REFUSED)],
     {"dev": "dev: http://127.0.0.1:9160 refused every connection"}),
    ([result("a", ERROR, REFUSED), result("w", SKIPPED, "writes data")],  # skipped cases did not try
     {"dev": "dev: http://127.0.0.1:9160 refused every connection"}),
    ([result("a", ERROR, "cannot connect to shop.invalid:443: Name or service not known")],
     {"dev": "dev: http://127.0.0.1:9160 could not be reached (cannot connect to shop.invalid:443: Name or service "
             "not known)"}),
    ([result("a", ERROR, REFUSED), result("b", PASSED)], {}),  # one case got through: not an outage
    ([result("a", ERROR, REFUSED), result("b", FAILED, "status 500, expected 200")], {}),
    ([result("a", ERROR, "timed out after 10 s")], {}),  # it answered nothing, but it did accept
    ([result("w", SKIPPED, "writes data")], {}),  # nothing ran
    ([], {}),
], ids=["all-refused", "refused-and-skipped", "dns", "one-passed", "one-failed", "timeout", "all-skipped", "none"])
def test_an_outage_is_an_environment_where_no_case_could_connect(results: list[CaseResult],
                                                                   expected: dict[str, str]) -> None:
    assert SuiteRun(SUITE, [DEV], results).outages() == expected


def rows(run_id: int, outcomes: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"run_id": run_id, "case_id": case, "outcome": outcome, "reason": reason, "attempts": 1}
            for case, (outcome, reason) in outcomes.items()]


def test_the_flaky_rule_leaves_an_outage_run_out() -> None:
    runs = [{"id": i, "environment": "dev"} for i in (3, 2, 1)]  # newest first
    passing = {"a": (PASSED, ""), "b": (PASSED, "")}
    down = {"a": (ERROR, REFUSED), "b": (ERROR, REFUSED)}
    assert flaky_cases(runs, {3: rows(3, passing), 2: rows(2, down), 1: rows(1, passing)}) == []
    half_down = {"a": (ERROR, REFUSED), "b": (PASSED, "")}  # the server was up: a's error counts
    flaky = flaky_cases(runs, {3: rows(3, passing), 2: rows(2, half_down), 1: rows(1, passing)})
    assert [(f.case_id, f.environment) for f in flaky] == [("a", "dev")]


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    with quantum_server("v1") as running:
        yield running


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CASES = [{"id": f"page-{i}", "name": f"page {i}", "type": "smoke", "request": {"path": "/"},
          "expect": [{"status": 200}]} for i in range(21)]


def shop(url: str, db_port: int | None = None) -> str:
    project: dict[str, Any] = {"kind": "Project", "name": "shop", "services": {"web": {"type": "app"}},
                               "environments": {"dev": {"host": "localhost", "url": url}}}
    cases: list[dict[str, Any]] = list(CASES)
    if db_port is not None:
        project["services"]["db"] = {"type": "database", "protocol": "tcp"}
        project["environments"]["dev"]["ports"] = {"db": db_port}
        project["datasources"] = {"main": {"driver": "postgresql", "service": "db", "database": "shop",
                                           "username": "shop"}}
        cases = [{"id": "rows", "name": "rows", "type": "query",
                  "request": {"datasource": "main", "sql": "SELECT 1"}, "expect": []}]
    suite = {"kind": "TestSuite", "name": "shop-smoke", "project": "shop", "environments": ["dev"], "cases": cases}
    return yaml.safe_dump(project) + "---\n" + yaml.safe_dump(suite)


def test_a_run_against_a_refusing_environment_says_so_once(workspace: Workspace) -> None:
    down = f"http://127.0.0.1:{closed_port()}"
    workspace.manifest("shop.yaml", shop(down))
    result = workspace.qrm_process("tests", "run", "shop-smoke")
    assert result.returncode == 0, result.stderr  # the suite does not block; the errors are in the counts
    assert f"UNREACHABLE dev: {down} refused every connection" in result.stderr
    assert "ERROR" not in result.stderr  # not 21 lines of the same fact
    assert "shop-smoke on dev: 0 passed, 0 failed, 21 errors, 0 skipped" in result.stdout
    summary = (workspace.root / "reports" / "tests" / "shop-smoke" / "summary.md").read_text()
    assert f"- dev: {down} refused every connection" in summary and "## Failures" not in summary
    history = (workspace.root / "reports" / "tests" / "shop-smoke" / "history.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["outage"] == f"dev: {down} refused every connection"


def test_an_outage_between_good_runs_makes_no_case_flaky(workspace: Workspace, server: Running) -> None:
    down = f"http://127.0.0.1:{closed_port()}"
    for url in (server.url, down, server.url):
        workspace.manifest("shop.yaml", shop(url))
        assert workspace.qrm("tests", "run", "shop-smoke").exit_code == 0
    history = workspace.qrm("tests", "history", "shop-smoke", "--json")
    document = json.loads(history.output)
    assert [r["failed"] for r in document["runs"]] == [0, 21, 0]
    assert document["flaky"] == []


def test_a_refused_datasource_is_an_error_not_a_failure(workspace: Workspace) -> None:
    workspace.manifest("shop.yaml", shop("http://127.0.0.1:9", db_port=closed_port()))
    result = workspace.qrm("tests", "run", "shop-smoke", "--json")
    [run] = json.loads(result.stdout)
    [case] = run["results"]
    assert case["outcome"] == "error"
    assert case["reason"].startswith("cannot connect to datasource 'main': ")
    assert "refused" in case["reason"].lower()
