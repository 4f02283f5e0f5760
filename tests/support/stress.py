"""Many `qrm` processes at once against one registry: checkouts of several workspaces, started together.
Shared by tests/cli/test_stress.py and bench/registry_stress.py (the same run as a benchmark)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

# A range of 10,000 ports: the default app range 8000-8999 has exactly 1,000, and this is no fullness test.
RANGE = 'kind: PortRange\nname: app\nstart: 20000\nend: 29999\nhost: "*"\n'
WAITED = re.compile(r"waited ([0-9.]+) s for the allocation lock")


@dataclass(frozen=True)
class Checkout:
    root: Path
    workspace: str  # qrm.yaml name: the owner of its rows


@dataclass(frozen=True)
class Run:
    checkout: Checkout
    returncode: int
    seconds: float  # from the start of the process to its exit
    lock_wait: float  # the "waited X s for the allocation lock" it logged (0 when it did not wait 10 ms)
    stdout: str
    stderr: str


def service_names(workspace: str, count: int) -> list[str]:
    return [f"{workspace}-svc-{i:03d}" for i in range(count)]


def make_checkouts(base: Path, workspaces: int, processes: int, services: int,
                   port_range: str = RANGE) -> list[Checkout]:
    """`processes` checkouts of each workspace ws1..wsN, each with `services` app services on localhost."""
    checkouts = []
    for w in range(1, workspaces + 1):
        name = f"ws{w}"
        manifest = "".join(f"---\nkind: Service\nname: {svc}\nhost: localhost\ntype: app\n"
                           for svc in service_names(name, services))
        for p in range(1, processes + 1):
            root = base / f"{name}-checkout{p}"
            (root / "manifests").mkdir(parents=True)
            (root / "qrm.yaml").write_text(f"name: {name}\n")
            (root / "manifests" / "ranges.yaml").write_text(port_range)
            (root / "manifests" / "services.yaml").write_text(manifest)
            checkouts.append(Checkout(root, name))
    return checkouts


def run_together(checkouts: list[Checkout], registry: str, *args: str, log_level: str = "info",
                 timeout: float = 300) -> list[Run]:
    """`qrm ARGS` in every checkout at once (all started before any is waited for), against `registry`."""
    env = {**os.environ, "QRM_REGISTRY": registry}
    started: list[tuple[Checkout, subprocess.Popen[str], float]] = []
    for checkout in checkouts:
        command = [sys.executable, "-m", "reconciler", "-C", str(checkout.root), "--log-level", log_level, *args]
        started.append((checkout, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                   text=True, env=env), time.perf_counter()))

    def finish(entry: tuple[Checkout, subprocess.Popen[str], float]) -> Run:
        checkout, process, began = entry
        out, err = process.communicate(timeout=timeout)  # a thread each: the exit time is its own
        ended = time.perf_counter()
        waits = [float(m.group(1)) for m in WAITED.finditer(err)]
        return Run(checkout, process.returncode, ended - began, sum(waits), out, err)

    with ThreadPoolExecutor(max_workers=len(started) or 1) as pool:
        return list(pool.map(finish, started))


def registry_rows(url: str) -> tuple[list[tuple[str, str, int, str]], list[tuple[str, str, int, str]]]:
    """(allocations, services) as (name, host, port, owner) rows."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            allocations = [tuple(r) for r in conn.execute(text("SELECT service, host, port, owner FROM allocations"))]
            services = [tuple(r) for r in conn.execute(text("SELECT name, host, port, owner FROM services"))]
    finally:
        engine.dispose()
    return allocations, services
