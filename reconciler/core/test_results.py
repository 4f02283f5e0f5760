"""Test results as values: the outcome of one case on one environment with every attempt, and a
suite's run over its environments. The HTTP and query runners make them; reports, the registry's
history and the faces read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core.assertions import Outcome
from reconciler.core.escaping import encodable
from reconciler.core.models import TestCase, TestSuite

PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"
# The reason of a case that never reached its server (HTTP) or its datasource (query) starts so.
UNREACHABLE = "cannot connect"


@dataclass(frozen=True)
class Target:
    """One environment to run against."""

    environment: str
    base_url: str
    protected: bool = False


@dataclass(frozen=True)
class Attempt:
    status: int | None
    elapsed_ms: float
    outcomes: tuple[Outcome, ...] = ()
    error: str | None = None

    def __post_init__(self) -> None:  # an error quotes what a server sent: bytes that were not UTF-8 included
        if self.error is not None:
            object.__setattr__(self, "error", encodable(self.error))

    @property
    def passed(self) -> bool:
        return self.error is None and all(o.passed for o in self.outcomes)

    def failures(self) -> list[str]:
        if self.error is not None:
            return [self.error]
        return [o.message or o.kind for o in self.outcomes if not o.passed]


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    name: str
    type: str
    environment: str
    outcome: str  # passed, failed, error or skipped
    attempts: tuple[Attempt, ...] = ()
    reason: str = ""
    duration_ms: float = 0.0

    def __post_init__(self) -> None:  # stored in YAML, JSON and the registry, which take only encodable text
        object.__setattr__(self, "reason", encodable(self.reason))

    @property
    def flaky(self) -> bool:
        """Passed, but only after a failed attempt."""
        return self.outcome == PASSED and len(self.attempts) > 1


@dataclass
class SuiteRun:
    suite: TestSuite
    targets: list[Target]
    results: list[CaseResult] = field(default_factory=list)
    started_at: str = ""
    duration_s: float = 0.0

    def counts(self, environment: str | None = None) -> dict[str, int]:
        counts = {PASSED: 0, FAILED: 0, ERROR: 0, SKIPPED: 0}
        for r in self.results:
            if environment is None or r.environment == environment:
                counts[r.outcome] += 1
        return counts

    @property
    def failed(self) -> bool:
        return any(r.outcome in (FAILED, ERROR) for r in self.results)

    def outage(self, environment: str) -> str | None:
        """One line when no case that ran on the environment could connect: an outage is one fact, not
        a failure of every case (and stays out of the flaky rule); None otherwise."""
        ran = [r for r in self.results if r.environment == environment and r.outcome != SKIPPED]
        if not ran or not all(unreachable(r.outcome, r.reason) for r in ran):
            return None
        target = next(t for t in self.targets if t.environment == environment)
        refused = all("refused" in r.reason.lower() for r in ran)
        return f"{environment}: {target.base_url} " + (
            "refused every connection" if refused else f"could not be reached ({ran[0].reason})")

    def outages(self) -> dict[str, str]:
        """Environment -> its outage line, for each environment that was down."""
        return {t.environment: line for t in self.targets if (line := self.outage(t.environment)) is not None}

    @property
    def blocks(self) -> bool:
        """A failure in a suite with block_on_failure: the run exits 3."""
        return self.suite.block_on_failure and self.failed


@dataclass
class TestsOutcome:
    __test__ = False
    runs: list[SuiteRun]
    reports: list[Path] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return any(run.blocks for run in self.runs)


def skip_reason(case: TestCase, target: Target) -> str | None:
    """Why a case is not run on a target, or None: its own `skip:` reason, or it writes data and the
    environment is protected. Every runner (HTTP and query) asks this first."""
    if case.skip:
        return case.skip
    if case.writes and target.protected:
        return f"writes data; environment {target.environment} is protected"
    return None


def unreachable(outcome: str, reason: str) -> bool:
    """A case that errored without reaching its server or datasource (a recorded row or a result)."""
    return outcome == ERROR and reason.startswith(UNREACHABLE)
