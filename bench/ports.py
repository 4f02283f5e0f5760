"""Benchmark: 10,000 services on one host: first apply, no-op plan, apply after editing 100.

Run:  .venv/bin/python bench/ports.py [--services N]
Each step runs `qrm` as a fresh process, as a user would, and reports its wall time and
peak memory (max RSS of that process, from wait4). Targets on 2 cores: first apply < 2 s,
no-op plan < 1 s.
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

FILES = 10


def write_manifests(root: Path, services: int, edited: int = 0) -> None:
    manifests = root / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    (manifests / "ranges.yaml").write_text(
        "kind: PortRange\nname: app\nstart: 10000\nend: 29999\nhost: \"*\"\n"
    )
    per_file = services // FILES
    for f in range(FILES):
        docs = []
        for i in range(f * per_file, (f + 1) * per_file):
            tag = "edited" if i < edited else "bench"
            docs.append(
                f"kind: Service\nname: svc-{i:05d}\nhost: localhost\ntype: app\nprotocol: http\n"
                f"health: {{path: /health, interval: 30s, timeout: 5s}}\ntags: [{tag}]\n"
            )
        (manifests / f"services-{f:02d}.yaml").write_text("---\n".join(docs))


# As on a user's machine, Python may cache bytecode (this workplace sets PYTHONDONTWRITEBYTECODE,
# which makes every run compile qrm's own modules again, ~0.2 s).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run(root: Path, *args: str) -> tuple[float, float, str]:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "-C", str(root), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV)
    assert proc.stdout is not None
    output = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 2):
        raise SystemExit(f"qrm {' '.join(args)} failed ({proc.returncode}):\n{output[-2000:]}")
    return wall, usage.ru_maxrss / 1024, output.strip().splitlines()[-1]


def reference_ms() -> float:
    """A fixed workload to compare this run's machine with the one PERF-NOTES.md was measured on."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import sqlalchemy.orm"], env=ENV, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="qrm-bench-ports-"))
    try:
        write_manifests(root, args.services)
        subprocess.run([sys.executable, "-m", "reconciler", "--help"], env=ENV, capture_output=True, check=True)
        steps = [
            ("first apply", ("apply", "--yes"), None, 1),
            ("no-op plan (median of 3)", ("plan", "--detailed-exitcode"), None, 3),
            (f"apply after editing {min(100, args.services)}", ("apply", "--yes"), 100, 1),
        ]
        print(f"qrm ports benchmark: {args.services:,} services on one host, {FILES} manifest files")
        print(f"{'step':<28}{'wall':>10}{'peak RSS':>12}  qrm said")
        for label, qrm_args, edit, repeat in steps:
            if edit:
                write_manifests(root, args.services, edited=edit)
            runs = sorted(run(root, *qrm_args) for _ in range(repeat))
            wall, rss, last = runs[len(runs) // 2]
            print(f"{label:<28}{wall * 1000:>8.0f} ms{rss:>9.0f} MB  {last}")
        lock = (root / "reports" / "allocations.yaml").read_text().count("\n- ")
        print(f"allocations in reports/allocations.yaml: {lock:,}")
        print(f"machine speed reference: `import sqlalchemy.orm` took {reference_ms():.0f} ms "
              "(../shared/PERF-NOTES.md measured 346 ms on this kind of machine)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
