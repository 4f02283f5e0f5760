"""End to end, as a team would use qrm on an upstream-shaped Quantum app: scan it, generate its suite,
run the suite against the app served as a Quantum server serves it (Flask, its signed session cookie,
flashes rendered by each page's own markup). What works must pass, what does not parse must fail, and
what the server does not serve gets no case."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.support.paths import FIXTURES
from tests.support.quantum_app import Serving, quantum_app
from tests.support.workspace import Workspace


@pytest.fixture(scope="module")
def app() -> Iterator[Serving]:
    with quantum_app() as serving:
        yield serving


@pytest.fixture
def shop(workspace: Workspace, app: Serving) -> Workspace:
    shutil.copytree(FIXTURES / "quantum-app", workspace.root / "app")
    workspace.manifest("shop.yaml", yaml.safe_dump({
        "kind": "Project", "name": "shop", "source": "app",
        "environments": {"dev": {"host": "localhost", "url": app.url}},
        "services": {"web": {"type": "app", "health": {"path": "/health"}}},
    }))
    return workspace


def generated_cases(ws: Workspace) -> list[dict[str, Any]]:
    [suite] = [d for d in yaml.safe_load_all((ws.root / "manifests" / "tests" / "shop.yaml").read_text())
               if d and d.get("kind") == "TestSuite"]
    cases: list[dict[str, Any]] = suite["cases"]
    return cases


def test_the_generated_suite_passes_where_the_app_works_and_fails_where_it_does_not(shop: Workspace) -> None:
    assert shop.qrm("scan", "shop").exit_code == 0
    generated = shop.qrm("tests", "generate", "shop")
    assert generated.exit_code == 0, generated.output
    cases = generated_cases(shop)
    by_component: dict[str, list[str]] = {}
    for case in cases:
        by_component.setdefault(case.get("component") or "", []).append(case["type"])
    assert not any("examples/" in c for c in by_component), "examples/ is not served: no case aims at it"
    assert {"action", "auth"} <= {t for types in by_component.values() for t in types}

    run = shop.qrm("tests", "run", "--json")
    [report] = json.loads(run.stdout)
    outcomes = {r["id"]: (r["outcome"], r["reason"]) for r in report["results"]}
    broken = {i: o for i, o in outcomes.items() if "broken.q" in i}
    working = {i: o for i, o in outcomes.items() if "broken.q" not in i}
    assert broken and all(outcome == "failed" for outcome, _ in broken.values()), broken
    assert working and all(outcome == "passed" for outcome, _ in working.values()), \
        {i: o for i, o in working.items() if o[0] != "passed"}
    actions = [c for c in cases if c["type"] == "action" and "profile.q" not in c["id"]]
    assert len(actions) >= 4  # valid and invalid cases of contact's send and login's login
