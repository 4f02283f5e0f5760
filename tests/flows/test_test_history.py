"""Test runs in the registry, `qrm tests compare`, `qrm tests history` with its flaky rule, and the
gate `qrm apply` runs after applying, against real Quantum-like servers (tests/support/quantum_server.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.core.state import RecordedService
from reconciler.edges.registry import SCHEMA_VERSION, Registry
from reconciler.flows.tests_history import FLAKY_WINDOW, flaky_cases
from tests.support.gated_suite import gated_manifests
from tests.support.quantum_server import Running, quantum_server
from tests.support.shop_suite import CASES, manifests
from tests.support.workspace import Workspace


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    with quantum_server("v1") as running:
        yield running


@pytest.fixture(scope="module")
def other() -> Iterator[Running]:
    with quantum_server("v2") as running:  # a second environment whose pages say v2: one case fails there
        yield running


def registry_of(workspace: Workspace) -> Registry:
    return Registry(f"sqlite:///{workspace.root / '.qrm' / 'registry.db'}")


def test_every_run_and_result_is_recorded_in_the_registry(workspace: Workspace, server: Running,
                                                          other: Running) -> None:
    workspace.manifest("shop.yaml", manifests(server.url, other.url))
    assert workspace.qrm("tests", "run", "shop-smoke").exit_code == 0
    registry = registry_of(workspace)
    try:
        runs = registry.test_run_rows("shop-smoke")
        assert [(r["environment"], r["passed"], r["failed"], r["skipped"]) for r in runs] == [
            ("staging", 2, 1, 0), ("dev", 3, 0, 0)]
        assert all(r["started_at"] and r["finished_at"] and r["duration_ms"] > 0 for r in runs)
        results = registry.test_result_rows([r["id"] for r in runs])
        by_run = {(r["run_id"], r["case_id"]): r for r in results}
        staging_variant = by_run[(runs[0]["id"], "variant")]
        assert staging_variant["outcome"] == "failed" and staging_variant["attempts"] == 1
        assert "v1" in staging_variant["reason"]
        assert len(results) == 6
    finally:
        registry.close()


def test_compare_shows_the_pass_rate_per_environment_and_the_case_that_fails_in_one(
        workspace: Workspace, server: Running, other: Running) -> None:
    workspace.manifest("shop.yaml", manifests(server.url, other.url))
    assert workspace.qrm("tests", "run", "shop-smoke").exit_code == 0
    result = workspace.qrm("tests", "compare", "shop-smoke", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["source"] == "registry"
    assert {env: run["pass_rate"] for env, run in doc["environments"].items()} == {"dev": 1.0, "staging": 0.6667}
    assert doc["differing"] == [{"case": "variant", "outcomes": {"dev": "passed", "staging": "failed"}}]

    text = workspace.qrm("tests", "compare", "shop-smoke")
    assert "dev: 100.0% pass rate" in text.output and "staging: 66.7% pass rate" in text.output
    assert [line.split() for line in text.output.splitlines()[-2:]] == [
        ["case", "dev", "staging"], ["variant", "passed", "failed"]]

    # a fresh clone: no registry, the latest reports of each environment
    (workspace.root / ".qrm" / "registry.db").unlink()
    fallback = json.loads(workspace.qrm("tests", "compare", "shop-smoke", "--json").stdout)
    assert fallback["source"] == "reports/tests/shop-smoke"
    assert fallback["differing"] == doc["differing"]


def test_history_lists_the_runs_and_names_a_case_that_passed_and_failed_as_flaky(
        workspace: Workspace, server: Running, other: Running) -> None:
    flaky = {"id": "flaky", "name": "flaky", "type": "smoke", "request": {"path": "/flaky"}, "retries": 0,
             "expect": [{"status": 200}]}
    workspace.manifest("shop.yaml", manifests(server.url, other.url, [CASES[0], flaky]))
    server.state.hits.pop("/flaky", None)
    for _ in range(2):  # /flaky fails on odd hits and passes on even ones
        assert workspace.qrm("tests", "run", "shop-smoke", "--env", "dev").exit_code == 0
    result = workspace.qrm("tests", "history", "shop-smoke", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["source"] == "registry"
    assert [(r["environment"], r["passed"], r["failed"]) for r in doc["runs"]] == [("dev", 2, 0), ("dev", 1, 1)]
    assert [(f["case"], f["environment"], f["passed"], f["failed"]) for f in doc["flaky"]] == [("flaky", "dev", 1, 1)]

    text = workspace.qrm("tests", "history", "shop-smoke", "--limit", "1")
    assert "1 runs" in text.output and "flaky on dev: passed 1 and failed 1 times in its last 2 runs" in text.output

    # a fresh clone: history.jsonl (it names only the passes after a retry)
    (workspace.root / ".qrm" / "registry.db").unlink()
    fallback = json.loads(workspace.qrm("tests", "history", "shop-smoke", "--json").stdout)
    assert fallback["source"] == "reports/tests/shop-smoke/history.jsonl"
    assert len(fallback["runs"]) == 2 and fallback["flaky"] == []


def test_a_pass_after_a_retry_is_flaky_on_its_own(workspace: Workspace, server: Running, other: Running) -> None:
    flaky = {"id": "flaky", "name": "flaky", "type": "smoke", "request": {"path": "/flaky"}, "retries": 1,
             "expect": [{"status": 200}]}
    workspace.manifest("shop.yaml", manifests(server.url, other.url, [flaky]))
    server.state.hits.pop("/flaky", None)
    assert workspace.qrm("tests", "run", "shop-smoke", "--env", "dev").exit_code == 0
    doc = json.loads(workspace.qrm("tests", "history", "shop-smoke", "--json").stdout)
    assert [(f["case"], f["passed"], f["failed"], f["retried_passes"]) for f in doc["flaky"]] == [("flaky", 1, 0, 1)]
    (workspace.root / ".qrm" / "registry.db").unlink()
    fallback = json.loads(workspace.qrm("tests", "history", "shop-smoke", "--json").stdout)
    assert [f["case"] for f in fallback["flaky"]] == ["flaky"]


def test_the_flaky_rule_looks_at_the_last_ten_runs_of_each_environment() -> None:
    # newest first: ten passes on dev after one old failure; on qa a pass and a failure
    runs: list[dict[str, Any]] = [{"id": i, "environment": "dev"} for i in range(20, 20 - FLAKY_WINDOW - 1, -1)]
    runs += [{"id": 1, "environment": "qa"}, {"id": 2, "environment": "qa"}]
    results: dict[int, list[dict[str, Any]]] = {
        r["id"]: [{"case_id": "c", "outcome": "passed", "attempts": 1}] for r in runs}
    results[20 - FLAKY_WINDOW] = [{"case_id": "c", "outcome": "failed", "attempts": 2}]
    results[2] = [{"case_id": "c", "outcome": "error", "attempts": 1}]
    results[1].append({"case_id": "s", "outcome": "skipped", "attempts": 0})
    [found] = flaky_cases(runs, results)
    assert (found.case_id, found.environment, found.passed, found.failed, found.runs) == ("c", "qa", 1, 1, 2)


def test_history_of_a_suite_never_run_is_an_error(workspace: Workspace, server: Running, other: Running) -> None:
    workspace.manifest("shop.yaml", manifests(server.url, other.url))
    for command in ("history", "compare"):
        result = workspace.qrm("tests", command, "shop-smoke")
        assert result.exit_code == 1 and "no runs of suite 'shop-smoke' yet" in result.output


def test_apply_runs_the_auto_run_suites_and_exits_3_when_a_blocking_one_fails(
        workspace: Workspace, server: Running) -> None:
    workspace.manifest("shop.yaml", gated_manifests(server.url, blocking=True))
    result = workspace.qrm("apply", "--yes")
    assert result.exit_code == 3, result.output
    assert "Apply complete: " in result.output and "service.shop-dev-web" in result.output
    assert "tests: gate on dev: 1 passed, 1 failed, 0 errors, 0 skipped" in result.output
    assert "the apply itself stays applied" in result.output
    lock = yaml.safe_load(workspace.lockfile.read_text())
    assert "shop-dev-web" in json.dumps(lock)  # the port stays allocated
    registry = registry_of(workspace)
    try:
        assert "shop-dev-web" in registry.recorded_services()
        assert [r["suite"] for r in registry.test_run_rows("gate")] == ["gate"]
    finally:
        registry.close()

    # every apply runs the gate, also one with no changes; --no-tests skips it
    again = workspace.qrm("apply", "--yes")
    assert again.exit_code == 3 and "No changes" in again.output
    skipped = workspace.qrm("apply", "--yes", "--no-tests")
    assert skipped.exit_code == 0, skipped.output
    assert "tests:" not in skipped.output


def test_apply_with_a_failing_suite_that_does_not_block_exits_0(workspace: Workspace, server: Running) -> None:
    workspace.manifest("shop.yaml", gated_manifests(server.url, blocking=False))
    result = workspace.qrm("apply", "--yes")
    assert result.exit_code == 0, result.output
    assert "tests: gate on dev: 1 passed, 1 failed" in result.output


def test_a_version_6_registry_gains_the_test_tables_and_keeps_its_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    old = Registry(url, upgrade_to=6)
    old.write([], [RecordedService(name="api", host="localhost", port=8000, type="app")], revision=None,
              summary={}, started_at="2026-01-01T00:00:00.000000Z")
    old.write_components([], [("shop", "index.q", "ab" * 32, "{}", "{}")])
    old.close()

    registry = Registry(url)
    try:
        assert registry.schema_version() == SCHEMA_VERSION >= 7
        assert {n: s.port for n, s in registry.recorded_services().items()} == {"api": 8000}
        assert registry.count_applies() == 1 and list(registry.component_shas("shop")) == ["index.q"]
        [run_id] = registry.record_test_runs([(
            {"suite": "s", "environment": "dev", "started_at": "t0", "finished_at": "t1", "passed": 1, "failed": 0,
             "skipped": 0, "flaky": 0, "duration_ms": 1.5, "revision": None},
            [{"case_id": "c", "outcome": "passed", "attempts": 1, "duration_ms": 1.0, "reason": ""}])])
        assert [r["case_id"] for r in registry.test_result_rows([run_id])] == ["c"]
    finally:
        registry.close()
