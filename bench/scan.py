"""Benchmark: `qrm scan` of 5,000 generated .q files of about 3 KB: cold scan and no-change rescan.

Run:  .venv/bin/python bench/scan.py [--files N]
Each step runs as a fresh `qrm scan` process (as a user runs it) and in-process (flows.scan.scan_workspace,
without Python start-up and imports); prints wall time and files/s. Targets on 2 cores: cold scan
under 3 s, no-change rescan under 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.qcorpus import write_corpus  # noqa: E402

# As on a user's machine, Python may cache bytecode (see bench/ports.py).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
PROJECT = "kind: Project\nname: bench\nsource: app\nenvironments:\n  dev: {host: localhost}\n"


def fresh(root: Path) -> None:
    """Forget every earlier scan: no registry, no reports."""
    shutil.rmtree(root / ".qrm", ignore_errors=True)
    shutil.rmtree(root / "reports", ignore_errors=True)


def run(root: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "reconciler", "-C", str(root), "scan"],
                          capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"qrm scan failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    first = proc.stdout.splitlines()[0] if proc.stdout else ""
    return wall, first


def in_process(root: Path) -> float:
    from reconciler.flows.scan import scan_workspace
    from reconciler.flows.workspace import open_workspace

    start = time.perf_counter()
    scan_workspace(open_workspace(root))
    return time.perf_counter() - start


def line(label: str, wall: float, files: int, said: str = "") -> str:
    return f"{label:<42}{wall * 1000:>8.0f} ms{files / wall:>12,.0f} files/s  {said}".rstrip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="qrm-bench-scan-"))
    try:
        (root / "manifests").mkdir()
        (root / "manifests" / "bench.yaml").write_text(PROJECT)
        write_corpus(root / "app", args.files, seed=args.seed)
        sources = list((root / "app").rglob("*.q"))
        size = sum(p.stat().st_size for p in sources)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"qrm scan benchmark: {len(sources):,} .q files, {size / len(sources) / 1024:.1f} KB on average, "
              f"{cores} core(s)")
        subprocess.run([sys.executable, "-m", "reconciler", "--help"], env=ENV, capture_output=True, check=True)
        print(f"{'step':<42}{'wall':>11}{'rate':>18}  qrm said")
        fresh(root)
        wall, said = run(root)
        print(line("cold scan (process)", wall, len(sources), said))
        rescans = sorted(run(root) for _ in range(3))
        wall, said = rescans[1]
        print(line("no-change rescan (process, median 3)", wall, len(sources), said))
        fresh(root)
        print(line("cold scan (in-process)", in_process(root), len(sources)))
        walls = sorted(in_process(root) for _ in range(3))
        print(line("no-change rescan (in-process, median 3)", walls[1], len(sources)))
        print("targets on 2 cores: cold scan < 3 s, no-change rescan < 0.5 s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
