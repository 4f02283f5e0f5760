"""Benchmark: render the four generated configs of 100 projects x 3 environments.

Run:  .venv/bin/python bench/render.py [--projects N] [--rounds R]
The desired state is built the way `qrm plan` builds it (manifest models -> crosscheck.build_desired,
ports from the pure allocator); then every environment is rendered with secret placeholders (as
plan renders without a key) and with secret values (as apply does). Prints the wall time of each
step, the best of R rounds for rendering, and files per second.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from reconciler.core.allocate import allocate
from reconciler.core.crosscheck import build_desired
from reconciler.core.models import manifest_list
from reconciler.core.render import GENERATED_FILES, SecretValue, render_environment, secret_references
from reconciler.core.state import DesiredState, LiveState, SourceRef

ENVIRONMENTS = ("dev", "staging", "prod")


def documents(projects: int) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {"kind": "Host", "name": "forge", "address": "10.10.1.40"},
        {"kind": "PortRange", "name": "app", "start": 10000, "end": 19999},
        {"kind": "PortRange", "name": "database", "start": 20000, "end": 24999},
        {"kind": "PortRange", "name": "cache", "start": 25000, "end": 29999},
    ]
    for i in range(projects):
        docs.append({
            "kind": "Project", "name": f"app-{i:03d}", "base_path": f"/app{i}" if i % 2 else "",
            "environments": {
                "dev": {"host": "localhost"},
                "staging": {"host": "localhost", "tls": True},
                "prod": {"host": "forge", "domain": f"app{i}.example.com", "tls": True, "protected": True},
            },
            "services": {
                "web": {"type": "app", "health": {"path": "/health", "interval": "10s", "timeout": "2s"}},
                "db": {"type": "database", "protocol": "tcp", "health": {"interval": "5s"}},
                "cache": {"type": "cache"},
            },
            "datasources": {
                "main": {"driver": "postgresql", "service": "db", "database": f"app_{i}", "username": "app",
                         "password": "secret:DB_PASSWORD"},
            },
        })
    return docs


def build(projects: int) -> tuple[DesiredState, dict[str, int]]:
    models = manifest_list().validate_python(documents(projects))
    secrets = {f"app-{i:03d}/DB_PASSWORD": f"{i:016x}" for i in range(projects)}
    desired, problems = build_desired(((SourceRef("manifests/bench.yaml", n), m) for n, m in enumerate(models)),
                                      secrets)
    assert not problems, problems[:3]
    allocation = allocate(desired, {}, LiveState())
    assert not allocation.conflicts and not allocation.errors
    return desired, allocation.ports


def render_all(desired: DesiredState, ports: dict[str, int], with_values: bool) -> int:
    size = 0
    for project in sorted(desired.projects):
        for environment in sorted(desired.projects[project].environments):
            secrets = {var: SecretValue(key, desired.secrets[key], f"pw '$x' for {key}" if with_values else None)
                       for var, key in secret_references(desired, project, environment).items()}
            files = render_environment(desired, project, environment, ports, secrets)
            size += sum(len(text) for text in files.values())
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    start = time.perf_counter()
    desired, ports = build(args.projects)
    built = time.perf_counter() - start
    environments = sum(len(p.environments) for p in desired.projects.values())
    files = environments * len(GENERATED_FILES)
    print(f"desired state: {args.projects} projects x {len(ENVIRONMENTS)} environments, {len(ports)} service "
          f"instances (models + build_desired + allocate): {built * 1000:.0f} ms")

    for label, with_values in (("plan (secret placeholders)", False), ("apply (secret values)", True)):
        times = []
        size = 0
        for _ in range(args.rounds):
            start = time.perf_counter()
            size = render_all(desired, ports, with_values)
            times.append(time.perf_counter() - start)
        best, worst = min(times), max(times)
        first = times[0]
        print(f"render {label}: {files} files ({size / 1024:.0f} KiB) in {best * 1000:.1f} ms best of {args.rounds} "
              f"(first {first * 1000:.1f} ms, worst {worst * 1000:.1f} ms): {files / best:,.0f} files/s")


if __name__ == "__main__":
    main()
