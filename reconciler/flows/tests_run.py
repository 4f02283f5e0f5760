"""`qrm tests run`: pick the suites and environments, find each environment's base URL, run every case
at once through reconciler.flows.tests_http (aiohttp), and write the results:
reports/tests/<suite>/<env>.yaml (latest run), history.jsonl (one line per run and environment), summary.md,
and JUnit XML on request.
Also the auto_run suites that `qrm apply` and a watcher run after applying.
"""

from __future__ import annotations

import functools
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.core.errors import QrmError
from reconciler.core.escaping import code_span, markdown_inline, xml_text
from reconciler.core.models import LOCALHOST, Project, TestSuite
from reconciler.core.state import DesiredState, RecordedState, instance_name
from reconciler.core.test_results import ERROR, FAILED, PASSED, SKIPPED, CaseResult, SuiteRun, Target, TestsOutcome
from reconciler.edges import files
from reconciler.flows import notify_events, tests_http, tests_query
from reconciler.flows.desired import load_desired
from reconciler.flows.recorded import recorded_state
from reconciler.flows.tests_history import (
    auto_run_suites,
    record_runs,  # the registry tables of runs and results
)
from reconciler.flows.workspace import Workspace

HTTP_PROTOCOLS = ("http", "https")


def web_service(project: Project) -> str | None:
    """The service tests talk to: `web` when there is one, else the first http(s) service."""
    if "web" in project.services:
        return "web"
    for name, service in project.services.items():
        if service.effective_protocol in HTTP_PROTOCOLS:
            return name
    return None


def service_address(desired: DesiredState, recorded: RecordedState, project: Project, environment: str,
                    service: str) -> tuple[str, int]:
    """Host and port of one service instance: the environment's host address and the allocated port
    (or the environment's pinned port)."""
    from reconciler.core import generated  # here: only an environment without a url: needs it

    env = project.environments[environment]
    ports = generated.environment_ports(recorded.services, project.name, environment)
    port = ports.get(instance_name(project.name, environment, service), env.ports.get(service))
    if port is None:
        raise QrmError(f"service {service!r} of {project.name}/{environment} has no allocated port yet "
                       "(run qrm apply, or pin it in the environment's ports:)")
    host = desired.hosts[env.host].address if env.host in desired.hosts else env.host
    if host == LOCALHOST:
        host = "127.0.0.1"
    return host, port


def base_url(desired: DesiredState, recorded: RecordedState, project: Project, environment: str) -> str:
    """Where a suite talks to an environment: its `url:` when given; else through its domain when it
    declares one (https with tls: true: nginx terminates TLS there); else the web service's own port
    with the service's own protocol, where `qrm services health` checks it (tls: true is nginx's TLS,
    not the app's: the app behind it speaks plain HTTP)."""
    env = project.environments[environment]
    if env.url:
        return env.url.rstrip("/")
    if env.domain is not None and not env.domain.startswith("*."):
        return f"{'https' if env.tls else 'http'}://{env.domain}{project.base_path}".rstrip("/")
    service = web_service(project)
    if service is None:
        raise QrmError(f"project {project.name!r} has no http service and environment {environment!r} no url:")
    try:
        host, port = service_address(desired, recorded, project, environment, service)
    except QrmError:
        raise QrmError(f"service {service!r} of {project.name}/{environment} has no allocated port yet "
                       "(run qrm apply, or give the environment a url:)") from None
    scheme = "https" if project.services[service].effective_protocol == "https" else "http"
    return f"{scheme}://{host}:{port}{project.base_path}".rstrip("/")


def _select(desired: DesiredState, suite_name: str | None) -> list[TestSuite]:
    if suite_name is None:
        if not desired.suites:
            raise QrmError("no TestSuite manifests; write one, or run qrm tests generate PROJECT")
        return [desired.suites[name] for name in sorted(desired.suites)]
    if suite_name not in desired.suites:
        known = ", ".join(sorted(desired.suites)) or "(none)"
        raise QrmError(f"unknown suite {suite_name!r}; known suites: {known}")
    return [desired.suites[suite_name]]


def _targets(desired: DesiredState, recorded: Callable[[], RecordedState], suite: TestSuite,
             environments: Sequence[str]) -> list[Target]:
    """The environments to run on; `recorded` is read only for an environment without a `url:`."""
    project = desired.projects.get(suite.project)
    if project is None:
        raise QrmError(f"suite {suite.name!r} tests unknown project {suite.project!r}")
    wanted = list(environments) or list(suite.environments) or sorted(project.environments)
    targets = []
    for env in dict.fromkeys(wanted):
        if env not in project.environments:
            raise QrmError(f"project {project.name!r} has no environment {env!r}; expected one of: "
                           f"{', '.join(sorted(project.environments))}")
        url = project.environments[env].url
        targets.append(Target(env, url.rstrip("/") if url else base_url(desired, recorded(), project, env),
                              project.environments[env].protected))
    return targets


def run_tests(
    ws: Workspace, suite_name: str | None, environments: Sequence[str], *, junit: Path | None = None,
    concurrency: int = tests_http.DEFAULT_CONCURRENCY, on_result: Callable[[CaseResult], None] | None = None,
    started: Mapping[tuple[str, str], int] | None = None,
) -> TestsOutcome:
    """Run the suites on the environments, write the reports and record the runs in the registry; `started`:
    (suite, environment) -> the registry row of a run already started (flows/test_runs), which is finished."""
    desired = load_desired(ws)

    @functools.cache
    def recorded() -> RecordedState:  # the registry (and SQLAlchemy) only for an environment without a url:
        return recorded_state(ws)

    runs = [SuiteRun(s, _targets(desired, recorded, s, environments)) for s in _select(desired, suite_name)]
    # Where the reports go, checked before any case runs (no symlink leads them out of the workspace).
    reports = [p for run in runs for p in report_paths(ws.reports / "tests" / run.suite.name, run)]
    files.check_all_inside(ws.root, reports + ([junit] if junit is not None and files.within(ws.root, junit) else []))
    for run in runs:
        run.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        start = time.perf_counter()
        project = desired.projects[run.suite.project]

        def address(environment: str, service: str, project: Project = project) -> tuple[str, int]:
            return service_address(desired, recorded(), project, environment, service)

        run.results = tests_query.run_suite_cases(ws.root, desired, run.suite, run.targets, concurrency,
                                                      on_result, address)
        run.duration_s = time.perf_counter() - start
    outcome = TestsOutcome(runs)
    for run in runs:
        outcome.reports += write_reports(ws.root, ws.reports / "tests" / run.suite.name, run)
    if junit is not None:
        files.write_atomic(junit, junit_xml(runs), root=files.within(ws.root, junit))
        outcome.reports.append(junit)

    run_ids = record_runs(ws, runs, started)
    notify_events.tests_ran(ws, runs, run_ids, desired)  # tests.failed (blocking suites), tests.flaky
    return outcome


def run_auto_suites(ws: Workspace, on_run: Callable[[SuiteRun], None] | None = None) -> list[SuiteRun]:
    """Run each suite marked auto_run on its environments, as apply does after applying (like post-sync
    hooks); [] when there is none. `on_run` sees each run as it ends, so a caller keeps the runs that
    ended before a later suite raised."""
    runs: list[SuiteRun] = []
    for name in auto_run_suites(ws):
        for run in run_tests(ws, name, ()).runs:
            runs.append(run)
            if on_run is not None:
                on_run(run)
    return runs


# --- reports ---------------------------------------------------------------------------------------

def _result_document(r: CaseResult) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": r.case_id, "name": r.name, "type": r.type, "outcome": r.outcome}
    if r.reason:
        doc["reason"] = r.reason
    if r.flaky:
        doc["flaky"] = True
    if r.attempts:
        doc["duration_ms"] = round(r.duration_ms, 1)
        doc["attempts"] = [
            {"status": a.status, "ms": round(a.elapsed_ms, 1), "passed": a.passed}
            | ({"failures": a.failures()} if not a.passed else {})
            for a in r.attempts
        ]
    return doc


def environment_report(run: SuiteRun, target: Target) -> str:
    """reports/tests/<suite>/<env>.yaml: the run's header, then one JSON flow mapping (valid YAML) per case, so a
    changed case is a one-line diff (and 1,000 cases take ~5 ms to write, where a YAML emitter took 0.1-0.3 s)."""
    results = sorted((r for r in run.results if r.environment == target.environment), key=lambda r: r.case_id)
    encode = json.JSONEncoder(separators=(", ", ": ")).encode
    header = {"suite": run.suite.name, "project": run.suite.project, "environment": target.environment,
              "base_url": target.base_url, "started_at": run.started_at, "counts": run.counts(target.environment)}
    lines = [f"{key}: {encode(value)}\n" for key, value in header.items()]
    lines.append("results:" + ("\n" if results else " []\n"))
    lines.extend(f"- {encode(_result_document(r))}\n" for r in results)
    return "".join(lines)


def history_line(run: SuiteRun, environment: str) -> str:
    counts = run.counts(environment)
    durations = [r.duration_ms for r in run.results if r.environment == environment]
    return json.dumps({
        "time": run.started_at, "suite": run.suite.name, "environment": environment,
        "passed": counts[PASSED], "failed": counts[FAILED] + counts[ERROR], "skipped": counts[SKIPPED],
        "flaky": sorted(r.case_id for r in run.results if r.environment == environment and r.flaky),
        "duration": round(run.duration_s, 3), "case_ms": round(sum(durations), 1),
    } | ({"outage": outage} if (outage := run.outage(environment)) is not None else {}), sort_keys=False)


def summary_markdown(run: SuiteRun) -> str:
    """summary.md of a run; case ids (file names in them) in code spans and reasons (server texts) escaped
    as Markdown, each on its line."""
    md = markdown_inline
    lines = [f"# Test suite {run.suite.name} ({run.suite.project})", "", f"Run at {run.started_at} in "
             f"{run.duration_s:.2f} s.", "", "| environment | passed | failed | errors | skipped |",
             "|---|---:|---:|---:|---:|"]
    for t in run.targets:
        c = run.counts(t.environment)
        lines.append(f"| {t.environment} | {c[PASSED]} | {c[FAILED]} | {c[ERROR]} | {c[SKIPPED]} |")
    outages = run.outages()
    if outages:
        lines += ["", "## Unreachable", ""]
        lines += [f"- {md(line)}" for _, line in sorted(outages.items())]
    bad = sorted((r for r in run.results if r.outcome in (FAILED, ERROR) and r.environment not in outages),
                 key=lambda r: (r.environment, r.case_id))
    if bad:
        lines += ["", "## Failures", ""]
        lines += [f"- {code_span(r.case_id)} on {r.environment}: {md(r.reason)}" for r in bad]
    flaky = sorted((r for r in run.results if r.flaky), key=lambda r: (r.environment, r.case_id))
    if flaky:
        lines += ["", "## Passed after a retry", ""]
        lines += [f"- {code_span(r.case_id)} on {r.environment} ({len(r.attempts)} attempts)" for r in flaky]
    return "\n".join(lines) + "\n"


def report_paths(directory: Path, run: SuiteRun) -> list[Path]:
    """The files write_reports writes for a run."""
    return [directory / f"{t.environment}.yaml" for t in run.targets] + [directory / "history.jsonl",
                                                                         directory / "summary.md"]


def write_reports(root: Path, directory: Path, run: SuiteRun) -> list[Path]:
    """A suite's reports under `directory` of the workspace `root` (every path checked before the first write)."""
    written = []
    history = directory / "history.jsonl"
    files.check_all_inside(root, report_paths(directory, run))
    try:  # a committed file anyone can damage: bytes that are not UTF-8 become U+FFFD, the line stays damaged
        previous = history.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        previous = ""
    lines = [history_line(run, t.environment) for t in run.targets]
    for t in run.targets:
        path = directory / f"{t.environment}.yaml"
        files.write_atomic(path, environment_report(run, t), root=root)
        written.append(path)
    files.write_atomic(history, previous + "".join(line + "\n" for line in lines), root=root)
    files.write_atomic(directory / "summary.md", summary_markdown(run), root=root)
    return [*written, history, directory / "summary.md"]


def junit_xml(runs: Sequence[SuiteRun]) -> str:
    """JUnit XML: one <testsuite> per suite and environment, the environment as a property,
    a pass after a failed attempt marked with a `flaky` property. Every text is escaping.xml_text'd: a
    reason quotes what a server sent, and ElementTree would write its control characters raw."""
    x = xml_text
    root = ET.Element("testsuites")
    for run in runs:
        for t in run.targets:
            results = sorted((r for r in run.results if r.environment == t.environment), key=lambda r: r.case_id)
            c = run.counts(t.environment)
            element = ET.SubElement(root, "testsuite", {
                "name": x(f"{run.suite.name}[{t.environment}]"), "tests": str(len(results)),
                "failures": str(c[FAILED]), "errors": str(c[ERROR]), "skipped": str(c[SKIPPED]),
                "time": f"{sum(r.duration_ms for r in results) / 1000:.3f}", "timestamp": x(run.started_at)})
            props = ET.SubElement(element, "properties")
            ET.SubElement(props, "property", {"name": "environment", "value": t.environment})
            ET.SubElement(props, "property", {"name": "base_url", "value": x(t.base_url)})
            for r in results:
                case = ET.SubElement(element, "testcase", {
                    "classname": f"{run.suite.name}.{t.environment}", "name": x(r.case_id),
                    "time": f"{r.duration_ms / 1000:.3f}"})
                case_props = ET.SubElement(case, "properties")
                ET.SubElement(case_props, "property", {"name": "environment", "value": t.environment})
                ET.SubElement(case_props, "property", {"name": "attempts", "value": str(len(r.attempts))})
                if r.flaky:
                    ET.SubElement(case_props, "property", {"name": "flaky", "value": "true"})
                if r.outcome == FAILED:
                    ET.SubElement(case, "failure", {"message": x(r.reason)}).text = x("\n".join(
                        f"attempt {i}: {'; '.join(a.failures()) or 'passed'}" for i, a in enumerate(r.attempts, 1)))
                elif r.outcome == ERROR:
                    ET.SubElement(case, "error", {"message": x(r.reason)})
                elif r.outcome == SKIPPED:
                    ET.SubElement(case, "skipped", {"message": x(r.reason)})
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
