"""Many workspaces applying at once against one PostgreSQL registry: 4 workspaces (qrm.yaml name ws1..ws4)
of 250 services each, every workspace in two checkouts (same name, so the same owner), 8 `qrm apply`
processes started together. Every process succeeds, the registry holds each service exactly once with
its workspace as owner, no host:port twice, and every checkout's plan is empty afterwards.

The helpers, in tests/support/stress.py, are shared with bench/registry_stress.py (the same run as a
benchmark)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.pgserver import PgDatabase
from tests.support.stress import make_checkouts, registry_rows, run_together, service_names


def test_eight_applies_of_four_workspaces_at_once(tmp_path: Path, pg_database: PgDatabase) -> None:
    checkouts = make_checkouts(tmp_path, workspaces=4, processes=2, services=250)
    runs = run_together(checkouts, pg_database.url, "apply", "--yes", "--no-refresh")
    for run in runs:
        assert run.returncode == 0, (run.checkout.root.name, run.stderr)

    allocations, services = registry_rows(pg_database.url)
    assert len(allocations) == 1000
    addresses = [(host, port) for _, host, port, _ in allocations]
    assert len(set(addresses)) == 1000, "a host:port is allocated twice"
    expected = {svc: f"ws{w}" for w in range(1, 5) for svc in service_names(f"ws{w}", 250)}
    assert {name: owner for name, _, _, owner in allocations} == expected
    assert sorted(services) == sorted(allocations)
    assert all(20000 <= port <= 29999 for _, port in addresses)

    plans = run_together(checkouts, pg_database.url, "plan", "--no-refresh", "--detailed-exitcode",
                         log_level="warning")
    for run in plans:
        assert run.returncode == 0, (run.checkout.root.name, run.stdout, run.stderr)
    for w in range(1, 5):
        first, second = (c.root / "reports" / "allocations.yaml" for c in checkouts if c.workspace == f"ws{w}")
        assert first.read_bytes() == second.read_bytes()
        locked = {a["name"]: a["port"] for a in yaml.safe_load(first.read_text())["allocations"]}
        assert locked == {name: port for name, _, port, owner in allocations if owner == f"ws{w}"}
