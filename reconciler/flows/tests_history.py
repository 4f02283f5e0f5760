"""Test runs in the registry: record every `qrm tests run`, compare environments, and read the
history of a suite with its flaky cases.

The flaky rule: a case is flaky on an environment when, within its last FLAKY_WINDOW (10) runs on
that environment in which it was not skipped, it both passed and failed (or errored), or it passed
only after a retry at least once. Without runs in the registry (a fresh clone), history falls back
to reports/tests/<suite>/history.jsonl, which names only the retried passes, and compare falls back
to reports/tests/<suite>/<env>.yaml (the latest run of each environment).

A suite argument is a name (the manifests' rule), never a path, so nothing outside reports/tests is read.
Those files are committed, so anyone can damage them: a history line or report that is not what qrm writes
(not JSON or YAML, wrong types, binary garbage) is skipped with one problem line naming the file and line,
and the rest shows.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from reconciler.core.errors import QrmError
from reconciler.core.models import NAME_PATTERN, PATTERN_HINTS
from reconciler.core.test_results import ERROR, FAILED, PASSED, SKIPPED, SuiteRun, unreachable
from reconciler.edges import git_repo
from reconciler.flows.desired import load_desired
from reconciler.flows.recorded import open_registry
from reconciler.flows.workspace import Workspace

FLAKY_WINDOW = 10
BAD = (FAILED, ERROR)


# --- recording -------------------------------------------------------------------------------------

def _finished_at(started_at: str, duration_s: float) -> str:
    try:
        return (datetime.fromisoformat(started_at) + timedelta(seconds=duration_s)).isoformat(timespec="seconds")
    except ValueError:
        return started_at


def record_runs(ws: Workspace, runs: Sequence[SuiteRun], started: Mapping[tuple[str, str], int] | None = None
                ) -> list[int]:
    """Record each suite run on each environment (a test_runs row and its test_results rows) in the
    registry: all in one transaction. Returns the run ids. `started`: (suite, environment) -> the id of the
    row made when that run started (flows/test_runs), which is finished instead of a new one."""
    revision = git_repo.head_revision(ws.root)
    rows: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for run in runs:
        for target in run.targets:
            results = [r for r in run.results if r.environment == target.environment]
            counts = run.counts(target.environment)
            known = (started or {}).get((run.suite.name, target.environment))
            rows.append(({
                **({"id": known} if known is not None else {}),
                "status": FAILED if counts[FAILED] + counts[ERROR] else PASSED, "error": None,
                "suite": run.suite.name, "environment": target.environment, "started_at": run.started_at,
                "finished_at": _finished_at(run.started_at, run.duration_s), "passed": counts[PASSED],
                "failed": counts[FAILED] + counts[ERROR], "skipped": counts[SKIPPED],
                "flaky": sum(1 for r in results if r.flaky), "duration_ms": round(run.duration_s * 1000, 1),
                "revision": revision,
            }, [{"case_id": r.case_id, "outcome": r.outcome, "attempts": len(r.attempts),
                 "duration_ms": round(r.duration_ms, 1), "reason": r.reason, "name": r.name, "type": r.type}
                for r in results]))
    if not rows:
        return []
    registry = open_registry(ws, create=True)
    assert registry is not None
    try:
        return registry.record_test_runs(rows)
    finally:
        registry.close()


def auto_run_suites(ws: Workspace) -> list[str]:
    """The suites marked `auto_run: true`, which `qrm apply` runs after applying."""
    desired = load_desired(ws)
    return sorted(name for name, suite in desired.suites.items() if suite.auto_run)


# --- reading ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunSummary:
    id: int | None
    environment: str
    started_at: str
    passed: int
    failed: int
    skipped: int
    flaky: int
    duration_ms: float
    revision: str | None = None

    @property
    def pass_rate(self) -> float | None:
        """Passed over the cases that ran (skipped cases do not count); None when none ran."""
        ran = self.passed + self.failed
        return self.passed / ran if ran else None

    def to_dict(self) -> dict[str, Any]:
        rate = self.pass_rate
        return {"id": self.id, "environment": self.environment, "time": self.started_at, "passed": self.passed,
                "failed": self.failed, "skipped": self.skipped, "flaky": self.flaky,
                "duration_ms": self.duration_ms, "revision": self.revision,
                "pass_rate": None if rate is None else round(rate, 4)}


@dataclass(frozen=True)
class FlakyCase:
    case_id: str
    environment: str
    passed: int
    failed: int
    retried_passes: int
    runs: int

    @property
    def reason(self) -> str:
        parts = []
        if self.passed and self.failed:
            parts.append(f"passed {self.passed} and failed {self.failed} times")
        if self.retried_passes:
            parts.append(f"passed after a retry {self.retried_passes} times")
        return f"{' and '.join(parts)} in its last {self.runs} runs"

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case_id, "environment": self.environment, "passed": self.passed,
                "failed": self.failed, "retried_passes": self.retried_passes, "runs": self.runs,
                "reason": self.reason}


@dataclass
class History:
    suite: str
    source: str  # "registry" or the history.jsonl path
    runs: list[RunSummary] = field(default_factory=list)  # newest first, at most limit
    flaky: list[FlakyCase] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # damaged lines skipped: "FILE:LINE: why"


@dataclass
class Comparison:
    suite: str
    source: str
    latest: dict[str, RunSummary] = field(default_factory=dict)  # environment -> its latest run
    # case -> environment -> outcome, for the cases that fail in one environment and pass in another
    differing: dict[str, dict[str, str]] = field(default_factory=dict)
    outcomes: dict[str, dict[str, str]] = field(default_factory=dict)  # every case's, of those latest runs
    problems: list[str] = field(default_factory=list)  # damaged reports skipped: "FILE[:LINE]: why"


def _summary(row: dict[str, Any]) -> RunSummary:
    return RunSummary(row["id"], row["environment"], row["started_at"], row["passed"], row["failed"],
                      row["skipped"], row["flaky"], row["duration_ms"], row["revision"])


def _registry_runs(ws: Workspace, suite: str) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]] | None:
    """All runs of the suite (newest first) and the results of the last FLAKY_WINDOW runs per environment;
    None when the registry has no runs of it."""
    registry = open_registry(ws, create=False)
    if registry is None:
        return None
    try:
        runs = registry.test_run_rows(suite)
        if not runs:
            return None
        wanted: list[int] = []
        per_env: dict[str, int] = {}
        for row in runs:
            per_env[row["environment"]] = per_env.get(row["environment"], 0) + 1
            if per_env[row["environment"]] <= FLAKY_WINDOW:
                wanted.append(row["id"])
        results: dict[int, list[dict[str, Any]]] = {}
        for r in registry.test_result_rows(wanted):
            results.setdefault(r["run_id"], []).append(r)
        return runs, results
    finally:
        registry.close()


def flaky_cases(runs: Sequence[dict[str, Any]], results: dict[int, list[dict[str, Any]]]) -> list[FlakyCase]:
    """Apply the flaky rule to runs (newest first) and their results."""
    seen: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        ran = [r for r in results.get(run["id"], []) if r["outcome"] != SKIPPED]
        if ran and all(unreachable(r["outcome"], r.get("reason") or "") for r in ran):
            continue  # an outage (nothing reached the server) says nothing about any one case
        for r in results.get(run["id"], []):
            if r["outcome"] == SKIPPED:
                continue
            window = seen.setdefault((run["environment"], r["case_id"]), [])
            if len(window) < FLAKY_WINDOW:
                window.append(r)
    flaky = []
    for (environment, case_id), window in sorted(seen.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        passed = sum(1 for r in window if r["outcome"] == PASSED)
        failed = sum(1 for r in window if r["outcome"] in BAD)
        retried = sum(1 for r in window if r["outcome"] == PASSED and r["attempts"] > 1)
        if (passed and failed) or retried:
            flaky.append(FlakyCase(case_id, environment, passed, failed, retried, len(window)))
    return flaky


def check_suite_name(suite: str) -> None:
    """A suite argument is a name as manifests have them: `../../x` or `a/b` never becomes a path."""
    if len(suite) > 63 or re.fullmatch(NAME_PATTERN, suite) is None:
        raise QrmError(f"suite {suite!r} is not a suite name: expected {PATTERN_HINTS[NAME_PATTERN]}, "
                       "at most 63 characters")


def _suite_dir(ws: Workspace, suite: str) -> Path:
    return ws.reports / "tests" / suite


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a count, got {value!r:.40}")
    return value


def _history_line(text: str) -> dict[str, Any]:
    """One line of history.jsonl as qrm writes it (tests_run.history_line); ValueError saying what is wrong."""
    try:
        line = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON ({str(exc).partition(':')[0]})") from None
    if not isinstance(line, dict):
        raise ValueError(f"expected an object, got {type(line).__name__}")
    if not isinstance(line.get("environment"), str) or not isinstance(line.get("suite", ""), str) \
            or not isinstance(line.get("time", ""), str):
        raise ValueError("environment, suite and time must be strings")
    for key in ("passed", "failed", "skipped"):
        _count(line.get(key, 0))
    duration = line.get("duration", 0)
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration):
        raise ValueError(f"duration: expected seconds, got {duration!r:.40}")
    flaky = line.get("flaky", [])
    if not isinstance(flaky, list) or not all(isinstance(case, str) for case in flaky):
        raise ValueError("flaky: expected a list of case ids")
    return line


def _read(path: Path, ws: Workspace) -> str | None:
    """A committed file's text; bytes that are not UTF-8 become U+FFFD (that line is then damaged, not the file)."""
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise QrmError(f"{_shown(path, ws)}: cannot be read ({exc.strerror})") from None


def _shown(path: Path, ws: Workspace) -> str:
    return path.relative_to(ws.root).as_posix() if path.is_relative_to(ws.root) else str(path)


def _jsonl_history(ws: Workspace, suite: str) -> History:
    path = _suite_dir(ws, suite) / "history.jsonl"
    text = _read(path, ws)
    if text is None:
        raise QrmError(f"no runs of suite {suite!r} yet (neither in the registry nor in {path}); "
                       "run qrm tests run first")
    lines: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, raw in enumerate(text.split("\n"), start=1):  # lines as qrm writes them (other breaks are data)
        if not raw.strip():
            continue
        try:
            lines.append(_history_line(raw))
        except ValueError as exc:
            problems.append(f"{_shown(path, ws)}:{number}: damaged line skipped ({exc})")
    lines = [line for line in lines if line.get("suite", suite) == suite]
    runs = [RunSummary(None, line["environment"], line.get("time", ""), int(line.get("passed", 0)),
                       int(line.get("failed", 0)), int(line.get("skipped", 0)), len(line.get("flaky", [])),
                       round(float(line.get("duration", 0)) * 1000, 1)) for line in reversed(lines)]
    retried: dict[tuple[str, str], int] = {}
    per_env: dict[str, int] = {}
    for line in reversed(lines):  # newest first: the last FLAKY_WINDOW runs of each environment
        env = line["environment"]
        per_env[env] = per_env.get(env, 0) + 1
        if per_env[env] <= FLAKY_WINDOW:
            for case_id in line.get("flaky", []):
                retried[(env, case_id)] = retried.get((env, case_id), 0) + 1
    flaky = [FlakyCase(case_id, env, hits, 0, hits, min(per_env[env], FLAKY_WINDOW))
             for (env, case_id), hits in sorted(retried.items(), key=lambda kv: (kv[0][1], kv[0][0]))]
    return History(suite, _shown(path, ws), runs, flaky, problems)


def suite_history(ws: Workspace, suite: str, limit: int = 20) -> History:
    check_suite_name(suite)
    found = _registry_runs(ws, suite)
    if found is None:
        history = _jsonl_history(ws, suite)
        history.runs = history.runs[:limit]
        return history
    runs, results = found
    return History(suite, "registry", [_summary(r) for r in runs[:limit]], flaky_cases(runs, results))


def _differing(outcomes: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {case_id: by_env for case_id, by_env in sorted(outcomes.items())
            if PASSED in by_env.values() and any(o in BAD for o in by_env.values())}


def compare(ws: Workspace, suite: str) -> Comparison:
    """The latest run of each environment: its pass rate, and the cases that fail in one environment and
    pass in another."""
    check_suite_name(suite)
    found = _registry_runs(ws, suite)
    outcomes: dict[str, dict[str, str]] = {}
    if found is not None:
        runs, results = found
        comparison = Comparison(suite, "registry")
        for row in runs:  # newest first: the first row of each environment is its latest run
            if row["environment"] not in comparison.latest:
                comparison.latest[row["environment"]] = _summary(row)
                for r in results.get(row["id"], []):
                    outcomes.setdefault(r["case_id"], {})[row["environment"]] = r["outcome"]
    else:
        directory = _suite_dir(ws, suite)
        reports = sorted(directory.glob("*.yaml")) if directory.is_dir() else []
        if not reports:
            raise QrmError(f"no runs of suite {suite!r} yet (neither in the registry nor in {directory}); "
                           "run qrm tests run first")
        comparison = Comparison(suite, _shown(directory, ws))
        for path in reports:
            try:
                env, summary, by_case = _report(path, _read(path, ws) or "")
            except ValueError as exc:
                comparison.problems.append(f"{_shown(path, ws)}{exc}")
                continue
            comparison.latest[env] = summary
            for case_id, outcome in by_case.items():
                outcomes.setdefault(case_id, {})[env] = outcome
    comparison.latest = dict(sorted(comparison.latest.items()))
    comparison.outcomes = dict(sorted(outcomes.items()))
    comparison.differing = _differing(outcomes)
    return comparison


class _ReportLoader(yaml.SafeLoader):
    """YAML of a committed report: aliases refused (qrm writes none; a few hundred bytes of them expand to
    gigabytes)."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(None, None, "an alias, which qrm's reports never hold", event.start_mark)
        return super().compose_node(parent, index)


def _report(path: Path, text: str) -> tuple[str, RunSummary, dict[str, str]]:
    """An environment's latest report (tests_run.environment_report): its environment, summary and outcome per
    case; ValueError ":LINE: why" or ": why" (the file's problem after its name) when it is damaged."""
    try:
        doc = yaml.load(text, Loader=_ReportLoader)  # a SafeLoader that also refuses aliases
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{line}: damaged report skipped (not YAML: {exc.problem})") from None
    except yaml.reader.ReaderError as exc:
        raise ValueError(f":{text.count(chr(10), 0, exc.position) + 1}: damaged report skipped (not YAML: character "
                         f"#x{exc.character:04x} at position {exc.position}: {exc.reason})") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ValueError(f": damaged report skipped (not YAML: {type(exc).__name__})") from None
    try:
        if not isinstance(doc, dict):
            raise ValueError(f"expected a mapping, got {type(doc).__name__}")
        env = doc.get("environment", path.stem)
        counts = doc.get("counts", {})
        results = doc.get("results", [])
        if not isinstance(env, str) or not isinstance(counts, dict) or not isinstance(results, list):
            raise ValueError("environment, counts or results of the wrong type")
        outcomes: dict[str, str] = {}
        for item in results:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str) \
                    or not isinstance(item.get("outcome"), str):
                raise ValueError("a result without a string id and outcome")
            outcomes[item["id"]] = item["outcome"]
        summary = RunSummary(None, env, str(doc.get("started_at", "")), _count(counts.get(PASSED, 0)),
                             _count(counts.get(FAILED, 0)) + _count(counts.get(ERROR, 0)),
                             _count(counts.get(SKIPPED, 0)), sum(1 for r in results if r.get("flaky")), 0.0)
    except ValueError as exc:
        raise ValueError(f": damaged report skipped ({exc})") from None
    return env, summary, outcomes
