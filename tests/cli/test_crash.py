"""Crash safety on SQLite and PostgreSQL: `qrm apply` of ~1,000 services SIGKILLed 20 times at random
moments (a seeded random, within the measured duration of one apply) never leaves the registry torn
(every service has exactly one allocation and no host:port is held twice) nor a half-written lock
file; one more apply then converges to exactly what uninterrupted applies give, also while the
manifests change between the kills."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, inspect, text

from tests.support.pgserver import PgDatabase

FILES, PER_FILE = 5, 200  # 1,000 services
KILLS = 12  # at least 6 of them during an apply; each costs an apply of 1,000 services
RANGES = """kind: PortRange
name: app
start: 20000
end: 29999
host: "*"
---
kind: PortRange
name: worker
start: 30000
end: 30999
host: "*"
"""


@dataclass
class Copy:
    """One copy of the workspace with its own registry."""

    root: Path
    url: str
    private: bool = False  # the default .qrm/registry.db (url names it), not given by --registry

    @property
    def lockfile(self) -> Path:
        return self.root / "reports" / "allocations.yaml"

    def command(self, *args: str) -> list[str]:
        chosen = [] if self.private else ["--registry", self.url]
        return [sys.executable, "-m", "reconciler", "-C", str(self.root), *chosen, *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=120)

    def apply(self) -> float:
        started = time.perf_counter()
        done = self.run("apply", "--yes", "--no-refresh")
        assert done.returncode == 0, done.stderr
        return time.perf_counter() - started


class Manifests:
    """The desired services, written the same way into every copy. Changes keep the outcome the same
    however the applies group them (a killed apply leaves its change to the next one): the removed
    services are the `app` ones with the last names (so no other service ever moves up into their
    ports), the added ones are `worker` ones with ever later names (so they take ever higher ports)."""

    def __init__(self) -> None:
        # svc-0000 in svc-0.yaml, svc-0001 in svc-1.yaml, ...: the last names are spread over the files.
        self.apps = [f"svc-{i:04d}" for i in range(FILES * PER_FILE)]
        self.workers: list[str] = []

    def write(self, root: Path) -> None:
        folder = root / "manifests"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "ranges.yaml").write_text(RANGES)
        files: dict[str, list[tuple[str, str]]] = {f"svc-{f}.yaml": [] for f in range(FILES)}
        for name in self.apps:
            files[f"svc-{int(name[4:]) % FILES}.yaml"].append((name, "app"))
        files["added.yaml"] = [(name, "worker") for name in self.workers]
        for name, entries in files.items():
            (folder / name).write_text("".join(
                f"---\nkind: Service\nname: {svc}\nhost: localhost\ntype: {kind}\n" for svc, kind in entries))

    def change(self, rng: random.Random) -> None:
        del self.apps[-rng.randint(1, 3):]
        for _ in range(rng.randint(1, 3)):
            self.workers.append(f"worker-{len(self.workers):03d}")

    @property
    def count(self) -> int:
        return len(self.apps) + len(self.workers)


def check_registry(url: str) -> dict[str, tuple[str, int]]:
    """The registry is whole: each services row has exactly one allocations row with the same address and
    vice versa, and no host:port is recorded twice. Returns name -> (host, port); empty before the schema."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return {}  # killed before it made the registry (connecting would create the file)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("allocations"):
                return {}
            services = conn.execute(text("SELECT name, host, port FROM services")).all()
            allocations = conn.execute(text("SELECT service, host, port FROM allocations")).all()
    finally:
        engine.dispose()
    by_service = {name: (host, port) for name, host, port in services}
    by_allocation = {name: (host, port) for name, host, port in allocations}
    assert len(by_service) == len(services) and len(by_allocation) == len(allocations)
    assert by_service == by_allocation, "a service without its allocation, or the reverse"
    addresses = list(by_allocation.values())
    assert len(set(addresses)) == len(addresses), "a host:port is allocated twice"
    return by_service


def check_lockfile(path: Path, before: bytes | None, registry: dict[str, tuple[str, int]]) -> bytes | None:
    """The lock file is absent, as it was, or whole and then exactly what the registry holds."""
    if not path.exists():
        assert before is None, "the lock file disappeared"
        return None
    content = path.read_bytes()
    if content == before:
        return content
    document = yaml.safe_load(content)
    written = {a["name"]: (a["host"], a["port"]) for a in document["allocations"]}
    assert len(written) == len(document["allocations"])
    assert written == registry, "a new lock file that is not what the registry holds"
    return content


@pytest.fixture(params=["sqlite", "postgresql"])
def copies(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Copy, Copy]]:
    """(the copy that is killed, the reference copy), each with a registry of its own."""
    if request.param == "sqlite":
        yield (Copy(tmp_path / "crashed", f"sqlite:///{tmp_path / 'crashed' / '.qrm' / 'registry.db'}", True),
               Copy(tmp_path / "reference", f"sqlite:///{tmp_path / 'reference' / '.qrm' / 'registry.db'}", True))
        return
    database: PgDatabase = request.getfixturevalue("pg_database")
    other = database.server.create_database()
    try:
        yield Copy(tmp_path / "crashed", database.url), Copy(tmp_path / "reference", database.server.url(other))
    finally:
        database.server.drop_database(other)


def test_killed_applies_never_tear_the_registry_and_the_next_apply_converges(
        copies: tuple[Copy, Copy], tmp_path: Path) -> None:
    crashed, reference = copies
    manifests = Manifests()
    for copy in copies:
        manifests.write(copy.root)
        (copy.root / "qrm.yaml").write_text("name: crash\n")
    duration = reference.apply()  # one uninterrupted run: the reference, and how long an apply takes
    rng = random.Random(20261127)
    log = tmp_path / "killed.log"
    killed_during_run = behind = rounds = 0
    # At least KILLS rounds, and more (up to three times as many) until half of them hit a running apply:
    # on a loaded machine an apply's length varies, and a kill after it ended tests nothing.
    for round_number in range(3 * KILLS):
        if round_number >= KILLS and killed_during_run >= KILLS // 2:
            break
        if round_number % 4 == 1:  # a moving target: the same change in both copies
            manifests.change(rng)
            for copy in copies:
                manifests.write(copy.root)
            duration = reference.apply()  # how long an apply takes now
        rounds += 1
        before = crashed.lockfile.read_bytes() if crashed.lockfile.exists() else None
        with log.open("a") as sink:
            process = subprocess.Popen(crashed.command("apply", "--yes", "--no-refresh"), stdout=sink,
                                       stderr=subprocess.STDOUT, env={**os.environ})
        deadline = time.perf_counter() + rng.uniform(0, duration)
        while process.poll() is None and time.perf_counter() < deadline:
            time.sleep(0.005)
        if process.poll() is None:
            killed_during_run += 1
        process.send_signal(signal.SIGKILL)
        code = process.wait(timeout=60)
        assert code in (0, -signal.SIGKILL), log.read_text()[-2000:]
        registry = check_registry(crashed.url)
        written = check_lockfile(crashed.lockfile, before, registry)
        if written is not None and {a["name"] for a in yaml.safe_load(written)["allocations"]} != set(registry):
            behind += 1  # killed between the registry's commit and the lock file: the next apply repairs it
    print(f"{killed_during_run} of {rounds} kills hit a running apply; {behind} left the lock file behind the "
          f"registry (one apply takes {duration:.2f} s)")
    assert killed_during_run >= KILLS // 2, "most kills must hit a running apply"

    crashed.apply()
    done = crashed.run("plan", "--no-refresh", "--detailed-exitcode")
    assert done.returncode == 0, done.stdout + done.stderr
    ours, theirs = (yaml.safe_load(c.lockfile.read_text())["allocations"] for c in copies)
    assert {a["name"]: a for a in ours} == {a["name"]: a for a in theirs}
    assert crashed.lockfile.read_bytes() == reference.lockfile.read_bytes()
    final = check_registry(crashed.url)
    assert len(final) == manifests.count
    assert final == check_registry(reference.url)
