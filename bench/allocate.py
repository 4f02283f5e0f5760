"""Benchmark: 100 concurrent allocations (flows/writes) in a git workspace of 10,000 services.

Run:  .venv/bin/python bench/allocate.py [--services N] [--calls N] [--yardstick N]
Builds a git repository with N standalone Services in 10 files, applies it once, then starts
`--calls` threads at once, each calling allocate_service for a new service (as `qrm serve` will for
concurrent POST /resources/ports/allocate): each call writes its document, validates the workspace,
commits and applies, one at a time under the write lock. Prints calls/s and the per-call time.

Yardstick: what one call does by hand, `--yardstick` times in a row: write one new service's
document, `git add` + `git commit`, then apply in-process (apply_workspace: plan with refresh, write
the registry and the lock file). The ratio says what the write path costs beyond a commit and an
apply (the checks, the second validation, reading the port back): about 1 means nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reconciler.flows.apply import apply_workspace
from reconciler.flows.workspace import open_workspace
from reconciler.flows.writes import allocate_service

FILES = 10
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost", "GIT_CONFIG_NOSYSTEM": "1"}


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, env=GIT_ENV, check=False)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def build(root: Path, services: int) -> None:
    (root / "manifests").mkdir(parents=True)
    (root / "manifests" / "ranges.yaml").write_text('kind: PortRange\nname: app\nstart: 10000\nend: 29999\nhost: "*"\n')
    for f in range(FILES):
        docs = [f"kind: Service\nname: svc-{i:05d}\nhost: localhost\ntype: app\n" for i in range(f, services, FILES)]
        (root / "manifests" / f"services-{f:02d}.yaml").write_text("---\n".join(docs))
    (root / "qrm.yaml").write_text('name: bench\ncommit_author: "bench <bench@localhost>"\n')
    (root / ".gitignore").write_text(".qrm/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "bench: workspace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--yardstick", type=int, default=10, help="commit + apply rounds by hand")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="qrm-bench-allocate-"))
    try:
        build(root, args.services)
        ws = open_workspace(root)
        start = time.perf_counter()
        apply_workspace(ws)
        print(f"qrm allocate benchmark: {args.services:,} services in {FILES} files; first apply "
              f"{time.perf_counter() - start:.2f} s")

        rounds = []
        for i in range(args.yardstick):
            start = time.perf_counter()
            (root / "manifests" / f"by-hand-{i}.yaml").write_text(
                f"kind: Service\nname: by-hand-{i}\nhost: localhost\ntype: app\n")
            git(root, "add", "--", f"manifests/by-hand-{i}.yaml")
            git(root, "commit", "-qm", f"by hand {i}")
            apply_workspace(ws)
            rounds.append(time.perf_counter() - start)
        yardstick = statistics.median(rounds)

        before = int(git(root, "rev-list", "--count", "HEAD"))
        per_call: list[float] = []

        def call(name: str) -> int:
            began = time.perf_counter()
            port = allocate_service(ws, name, "app", "localhost", caller=f"bench {name}").port
            per_call.append(time.perf_counter() - began)
            return port

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.calls) as pool:
            ports = list(pool.map(call, [f"new-{i:03d}" for i in range(args.calls)]))
        wall = time.perf_counter() - start
        commits = int(git(root, "rev-list", "--count", "HEAD")) - before
        if len(set(ports)) != args.calls or commits != args.calls:
            raise SystemExit(f"wrong: {len(set(ports))} distinct ports, {commits} commits for {args.calls} calls")
        each = wall / args.calls
        print(f"{args.calls} concurrent allocations: {wall:.1f} s, {args.calls / wall:.2f} calls/s, "
              f"{each * 1000:.0f} ms per call (serialised); {commits} commits, {len(set(ports))} distinct ports")
        print(f"  latency seen by a caller: median {statistics.median(per_call):.1f} s, max {max(per_call):.1f} s")
        print(f"yardstick, write + git commit + apply by hand (median of {args.yardstick}): {yardstick * 1000:.0f} ms")
        print(f"ratio: {each / yardstick:.2f}x the yardstick per call")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
