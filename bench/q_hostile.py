"""Benchmark: 5 MB of hostile .q text against 5 MB of normal .q text, through the reader `qrm scan` uses.

Run:  .venv/bin/python bench/q_hostile.py [--mb 5] [--rounds 3] [--only normal|hostile] [--per-family]
The normal text is the scan benchmark's corpus (tests/support/qcorpus.py: realistic components of about 3 KB,
one in 13 with quirks to repair, one in 500 unreadable); the hostile text is every family of tests/support/hostile_q.py
(runs of `<`, quotes, unclosed tags, comments and CDATA, `${`, `&`, deep nesting, long names, DOCTYPE files
read line by line...), an equal share of --mb each, one file per family. Each file is read by
edges.q_components.scan_file (hash, strict parse, repair, lxml's recovery, the line-based reader: whatever the
file needs), in-process. Prints the median of --rounds for each set, MB/s, the ratio hostile/normal (the
yardstick: target about 1) and the slowest families. --per-family reads one file of each family at the size
limit (5,000,000 bytes) instead. --only runs one set, for farm-bench:
  farm-bench -n 5 -- .venv/bin/python bench/q_hostile.py --only hostile --rounds 1 \
      --vs '.venv/bin/python bench/q_hostile.py --only normal --rounds 1'
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reconciler.edges.q_components import scan_file  # noqa: E402
from tests.support.hostile_q import FAMILIES  # noqa: E402
from tests.support.qcorpus import write_corpus  # noqa: E402

LIMIT = 5_000_000  # scan_file's max_bytes: a larger file is skipped unread


def normal_files(root: Path, total: int) -> list[Path]:
    """The scan benchmark's corpus (files of about 3 KB, as real components are), about `total` bytes."""
    write_corpus(root / "normal", total // 2900 + 1)
    out: list[Path] = []
    size = 0
    for path in sorted((root / "normal" / "components").rglob("*.q")):
        if size >= total:
            break
        out.append(path)
        size += path.stat().st_size
    return out


def hostile_files(root: Path, size: int) -> dict[str, Path]:
    return {family: write(root / "hostile" / f"h{index:03d}.q", make(size))
            for index, (family, make) in enumerate(sorted(FAMILIES.items()))}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def scan(paths: list[Path]) -> tuple[float, dict[Path, float], dict[str, int]]:
    """Wall time of reading every file, each file's time, and how many were read each way (parse)."""
    each: dict[Path, float] = {}
    ways: dict[str, int] = {}
    start = time.perf_counter()
    for path in paths:
        began = time.perf_counter()
        component = scan_file(path, f"components/{path.name}")
        each[path] = time.perf_counter() - began
        ways[component.parse] = ways.get(component.parse, 0) + 1
    return time.perf_counter() - start, each, ways


def measure(label: str, paths: list[Path], rounds: int) -> tuple[float, dict[Path, float]]:
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    runs = [scan(paths) for _ in range(rounds)]
    wall = statistics.median(run[0] for run in runs)
    each = {p: statistics.median(run[1][p] for run in runs) for p in paths}
    ways = ", ".join(f"{n} {way}" for way, n in sorted(runs[0][2].items()))
    print(f"{label:<8}{megabytes:>7.2f} MB in {len(paths):>3} files{wall * 1000:>10.0f} ms{megabytes / wall:>9.2f} MB/s"
          f"   ({ways})")
    return wall, each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=5.0, help="megabytes of each kind of text")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("normal", "hostile"))
    parser.add_argument("--per-family", action="store_true", help="one file of each family at the size limit")
    args = parser.parse_args()
    total = int(args.mb * 1e6)
    root = Path(tempfile.mkdtemp(prefix="qrm-bench-hostile-"))
    try:
        share = LIMIT - 1000 if args.per_family else total // len(FAMILIES)
        print(f"qrm .q reader on hostile text: {len(FAMILIES)} families, {share / 1e3:,.0f} KB each; "
              f"median of {args.rounds}")
        normal = hostile = 0.0
        if args.only != "hostile":
            normal, _ = measure("normal", normal_files(root, total), args.rounds)
        if args.only != "normal":
            files = hostile_files(root, share)
            hostile, each = measure("hostile", list(files.values()), args.rounds)
            slowest = sorted(files, key=lambda family: -each[files[family]])[:8]
            print("slowest families:")
            for family in slowest:
                size = files[family].stat().st_size / 1e6
                print(f"  {family:<40}{each[files[family]] * 1000:>8.0f} ms{size / each[files[family]]:>8.2f} MB/s")
        if normal and hostile:
            hostile_mb = share * len(FAMILIES) / 1e6
            print(f"ratio hostile/normal (time per MB): {(hostile / hostile_mb) / (normal / args.mb):.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
