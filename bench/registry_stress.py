"""Benchmark: several workspaces applying at once against one shared registry.

Run:  .venv/bin/python bench/registry_stress.py [--workspaces 4] [--processes 2] [--services 250]
                                                [--backend postgresql|sqlite] [--rounds 1]
Each workspace (qrm.yaml name ws1..wsN, `--services` app services on localhost) has `--processes`
checkouts; every checkout runs `qrm apply --yes --no-refresh --log-level info` as its own process, all
started together, against one registry: a throwaway PostgreSQL server (tests/support/pgserver.py, started and
removed here) or a shared SQLite file. Prints the wall time of the whole run, allocations per second,
each process's wall time (median, max) and its wait for the allocation lock (median, max; parsed from
the "waited X s for the allocation lock" line, which apply logs at INFO when it waited > 10 ms), and
checks the outcome: every process exited 0 and each service holds exactly one port.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import pgserver
from tests.support.stress import make_checkouts, registry_rows, run_together


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspaces", type=int, default=4)
    parser.add_argument("--processes", type=int, default=2, help="checkouts (processes) per workspace")
    parser.add_argument("--services", type=int, default=250, help="services per workspace")
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the run on a fresh registry")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below: stop the server
    total = args.workspaces * args.services
    port_range = f'kind: PortRange\nname: app\nstart: 20000\nend: {20000 + max(9999, 2 * total)}\nhost: "*"\n'

    server = pgserver.start(max_connections=max(200, 4 * args.workspaces * args.processes)) \
        if args.backend == "postgresql" else None
    try:
        if server is not None:
            os.environ["PGPASSWORD"] = server.password
        print(f"{args.workspaces} workspaces x {args.processes} processes x {args.services} services "
              f"on {args.backend} ({os.cpu_count()} cores)")
        header = ("round", "wall s", "alloc/s", "apply med s", "apply max s", "lock wait med s", "lock wait max s")
        print("  ".join(f"{h:>15}" for h in header))
        for number in range(1, args.rounds + 1):
            with tempfile.TemporaryDirectory(prefix="qrm-stress-") as folder:
                base = Path(folder)
                url = server.url(server.create_database()) if server is not None \
                    else f"sqlite:///{base / 'shared' / 'registry.db'}"
                checkouts = make_checkouts(base, args.workspaces, args.processes, args.services, port_range)
                started = time.perf_counter()
                runs = run_together(checkouts, url, "apply", "--yes", "--no-refresh", timeout=1800)
                wall = time.perf_counter() - started
                failed = [r for r in runs if r.returncode != 0]
                for run in failed:
                    print(f"FAILED {run.checkout.root.name} (exit {run.returncode}): {run.stderr.strip()}",
                          file=sys.stderr)
                allocations, _ = registry_rows(url)
                addresses = {(host, port) for _, host, port, _ in allocations}
                names = {name for name, _, _, _ in allocations}
                if len(allocations) != total or len(addresses) != total or len(names) != total:
                    print(f"WRONG: {len(allocations)} allocations, {len(addresses)} addresses, {len(names)} "
                          f"services; expected {total} of each", file=sys.stderr)
                    return 1
                if failed:
                    return 1
                seconds = [r.seconds for r in runs]
                waits = [r.lock_wait for r in runs]
                row = (number, f"{wall:.2f}", f"{total / wall:.0f}", f"{statistics.median(seconds):.2f}",
                       f"{max(seconds):.2f}", f"{statistics.median(waits):.2f}", f"{max(waits):.2f}")
                print("  ".join(f"{v!s:>15}" for v in row))
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
