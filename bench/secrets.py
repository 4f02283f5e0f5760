"""Benchmark: secrets.enc with 1,000 secrets: set them all, update one at a time, read all, rotate.

Run:  .venv/bin/python bench/secrets.py [--secrets N] [--updates N]
In-process, through reconciler.edges.sops (the SOPS format edge) and reconciler.edges.files.write_atomic
(qrm's write path, fsync included), as `qrm secrets set/get/rotate` use them, without process
start-up or the lock. Each single-shot step is the median of 3 runs; nothing is asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on the import path, where this file would stand in
# for the standard library's `secrets`: put the checkout there instead (qrm imports from it, too).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from reconciler.edges import files, sops  # noqa: E402

LABEL = "secrets.enc"


def make_values(count: int) -> dict[str, str]:
    """Scoped names across 10 projects and 3 environments; values 24-64 characters, some awkward."""
    values = {}
    for i in range(count):
        project, env = f"project-{i % 10}", ("dev", "staging", "prod")[i % 3]
        name = f"SECRET_{i:05d}"
        key = name if i % 5 == 0 else f"{project}/{name}" if i % 5 == 1 else f"{project}/{env}/{name}"
        values[key] = f"value-{i:05d}-" + ("x" * (i % 40)) + " #$=\"'ü"
    return values


class Bench:
    def __init__(self, root: Path, count: int) -> None:
        self.path = root / LABEL
        self.identity, recipient = sops.generate_identity()
        self.recipients = [recipient]
        self.identities = sops.load_identities({"SOPS_AGE_KEY": self.identity, "HOME": str(root)})
        self.values = make_values(count)

    def read(self) -> tuple[sops.EncryptedSecrets, bytes, dict[str, str]]:
        """What every command does first: read, unwrap the data key, decrypt everything, check the MAC."""
        current = sops.read_file(self.path, LABEL)
        assert current is not None
        data_key = sops.unwrap_data_key(current, self.identities)
        plain = sops.decrypt_tree(current, data_key)
        plain.pop(sops.QRM_META_KEY, None)
        return current, data_key, {k: str(v) for k, v in plain.items()}

    def set_all(self) -> None:
        data_key = sops.new_data_key()
        text = sops.render(self.values, data_key=data_key,
                              wrapped=sops.wrap_data_key(data_key, self.recipients))
        files.write_atomic(self.path, text, mode=0o600, root=None)

    def update_one(self, i: int) -> None:
        current, data_key, plain = self.read()
        name = sorted(plain)[(i * 37) % len(plain)]
        text = sops.render({**plain, name: f"updated {i}"}, data_key=data_key,
                              wrapped=list(current.metadata["age"]), previous=current, previous_plain=plain,
                              changed_at=current.changed_at(), rotated_at=current.rotated_at())
        files.write_atomic(self.path, text, mode=0o600, root=None)

    def read_all(self) -> None:
        _, _, plain = self.read()
        assert len(plain) == len(self.values)

    def rotate(self) -> None:
        current, _, plain = self.read()
        data_key = sops.new_data_key()
        text = sops.render(plain, data_key=data_key, wrapped=sops.wrap_data_key(data_key, self.recipients),
                              previous_plain=plain, changed_at=current.changed_at(), rotated_at=sops.utc_now())
        files.write_atomic(self.path, text, mode=0o600, root=None)


def median_ms(step: Callable[[], Any], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=1_000)
    parser.add_argument("--updates", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="qrm-bench-secrets-"))
    try:
        bench = Bench(root, args.secrets)
        n = args.secrets
        rows: list[tuple[str, float, str]] = []

        ms = median_ms(bench.set_all)
        rows.append((f"set {n:,} (one render + write)", ms, f"{n / ms * 1000:,.0f} values/s"))

        start = time.perf_counter()
        per_update = []
        for i in range(args.updates):
            t0 = time.perf_counter()
            bench.update_one(i)
            per_update.append((time.perf_counter() - t0) * 1000)
        total = (time.perf_counter() - start) * 1000
        rows.append((f"{args.updates} single-secret updates", total,
                     f"{args.updates / total * 1000:,.1f} values/s (one per update)"))
        rows.append(("  one update (median)", statistics.median(per_update),
                     f"min {min(per_update):.1f}, max {max(per_update):.1f} ms"))

        ms = median_ms(bench.read_all)
        rows.append((f"read {n:,} (decrypt, MAC)", ms, f"{n / ms * 1000:,.0f} values/s"))

        ms = median_ms(bench.rotate)
        rows.append((f"rotate {n:,} (read + re-encrypt)", ms, f"{n / ms * 1000:,.0f} values/s"))

        size = bench.path.stat().st_size
        print(f"qrm secrets benchmark: {n:,} secrets, secrets.enc of {size / 1024:,.0f} KiB, Python "
              f"{sys.version.split()[0]}")
        print(f"{'step':<36}{'time':>12}  rate")
        for label, ms, rate in rows:
            print(f"{label:<36}{ms:>9.1f} ms  {rate}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
