"""`qrm tests generate`, `run`, `compare` and `history`: suites written from components, run against
environments, and their results compared across environments and over time."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from reconciler.cli.root import EXIT_OK, EXIT_TESTS_FAILED, cli, reports_errors, workspace_from
from reconciler.core.escaping import one_line


@cli.group("tests")
def tests_group() -> None:
    """Test suites: generate them from components, run them against environments."""


@tests_group.command("generate")
@click.argument("project")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@reports_errors
def tests_generate(ctx: click.Context, project: str, as_json: bool) -> int:
    """Write manifests/tests/PROJECT.yaml from PROJECT's components (scanned first, incrementally).

    Hand-written cases are kept; hand edits of generated cases survive while what is generated for them
    does not change, and each one replaced is named; cases of deleted components are removed.
    reports/generated-cases/PROJECT.json records what was generated: commit it with the suite.
    """
    from reconciler.flows.tests_generate import generate_suite

    ws = workspace_from(ctx)
    result = generate_suite(ws, project)
    where = result.path.relative_to(ws.root)
    record = result.record.relative_to(ws.root)
    if as_json:
        click.echo(json.dumps({
            "project": result.project, "suite": result.suite, "path": str(where), "written": result.written,
            "total": result.total, "counts": result.counts, "added": result.added, "changed": result.changed,
            "removed": result.removed, "kept": result.kept, "hand_written": result.hand_written,
            "edits_kept": result.edits_kept, "notes": result.notes, "record": str(record),
            "record_written": result.record_written}, indent=2))
        return EXIT_OK
    counts = ", ".join(f"{kind} {n}" for kind, n in result.counts.items()) or "none"
    click.echo(f"{result.suite}: {result.total} cases: {counts}")
    click.echo(f"{len(result.added)} added, {len(result.changed)} changed, {len(result.removed)} removed, "
               f"{len(result.kept)} kept, {len(result.hand_written)} hand-written kept")
    if result.edits_kept:
        click.echo(f"hand edits kept in {len(result.edits_kept)} regenerated case(s): {', '.join(result.edits_kept)}")
    verb = "created" if result.created else ("wrote" if result.written else "unchanged:")
    click.echo(f"{verb} {where}")
    if result.record_written:
        click.echo(f"wrote {record} (what was generated: commit it with the suite)")
    for note in result.notes:
        click.echo(f"note: {one_line(note)}")
    return EXIT_OK


@tests_group.command("run")
@click.argument("suite", required=False)
@click.option("--env", "environments", multiple=True, metavar="ENV",
              help="An environment to run against (repeatable; default: the suite's, else all of the project's).")
@click.option("--junit", "junit", type=click.Path(dir_okay=False), metavar="FILE", help="Also write JUnit XML.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--concurrency", default=20, show_default=True, type=click.IntRange(1, 1000),
              help="Cases in flight at once, over all environments.")
@click.pass_context
@reports_errors
def tests_run(ctx: click.Context, suite: str | None, environments: tuple[str, ...], junit: str | None,
              as_json: bool, concurrency: int) -> int:
    """Run SUITE (default: every suite) against each --env; exit 3 when a blocking suite fails."""
    from reconciler.core.test_results import PASSED, CaseResult, unreachable
    from reconciler.flows.tests_run import run_tests

    live = sys.stderr.isatty() and not os.environ.get("CI") and not as_json
    seen: dict[str, int] = {}
    unreached: list[CaseResult] = []  # said at the end: one line if the whole environment was down

    def line(result: CaseResult) -> str:
        extra = f" ({result.reason})" if result.reason else " (flaky)"
        return one_line(f"{result.outcome.upper():7} {result.environment} {result.case_id}{extra}")

    def progress(result: CaseResult) -> None:
        seen[result.outcome] = seen.get(result.outcome, 0) + 1
        if as_json:
            return
        if live:
            counts = " ".join(f"{k} {v}" for k, v in sorted(seen.items()))
            click.echo(f"\r\x1b[K{sum(seen.values())} cases: {counts}", nl=False, err=True)
        elif unreachable(result.outcome, result.reason):
            unreached.append(result)
        elif result.outcome != PASSED or result.flaky:
            click.echo(line(result), err=True)

    outcome = run_tests(workspace_from(ctx), suite, environments, junit=Path(junit) if junit else None,
                        concurrency=concurrency, on_result=progress)
    if live:
        click.echo("", err=True)
    down = {env: text for run in outcome.runs for env, text in run.outages().items()}
    if not as_json:
        for result in unreached:
            if result.environment not in down:
                click.echo(line(result), err=True)
        for text in down.values():
            click.echo(f"UNREACHABLE {one_line(text)}", err=True)
    if as_json:
        click.echo(json.dumps([{
            "suite": run.suite.name, "blocking": run.suite.block_on_failure, "duration": round(run.duration_s, 3),
            "environments": {t.environment: {"base_url": t.base_url, **run.counts(t.environment)}
                             for t in run.targets},
            "results": [{"id": r.case_id, "environment": r.environment, "outcome": r.outcome,
                         "reason": r.reason, "attempts": len(r.attempts), "flaky": r.flaky}
                        for r in sorted(run.results, key=lambda r: (r.environment, r.case_id))],
        } for run in outcome.runs], indent=2))
    else:
        for run in outcome.runs:
            for t in run.targets:
                c = run.counts(t.environment)
                click.echo(f"{run.suite.name} on {t.environment}: {c['passed']} passed, {c['failed']} failed, "
                           f"{c['error']} errors, {c['skipped']} skipped ({t.base_url})")
        click.echo(f"Reports: {', '.join(sorted({str(p.parent) for p in outcome.reports}))}")
    if outcome.blocked:
        blocking = ", ".join(run.suite.name for run in outcome.runs if run.blocks)
        click.echo(f"error: blocking suite(s) failed: {blocking}", err=True)
        return EXIT_TESTS_FAILED
    return EXIT_OK


def _warn(problems: list[str]) -> None:
    """Damaged history lines and reports, skipped: one line each on stderr (the rest of the output stands)."""
    for problem in problems:
        click.echo(f"warning: {one_line(problem)}", err=True)


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


@tests_group.command("compare")
@click.argument("suite")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.pass_context
@reports_errors
def tests_compare(ctx: click.Context, suite: str, as_json: bool) -> int:
    """The pass rate of SUITE per environment (its latest run there), and the cases that fail in one
    environment and pass in another."""
    from reconciler.flows.tests_history import compare

    result = compare(workspace_from(ctx), suite)
    _warn(result.problems)
    if as_json:
        click.echo(json.dumps({
            "suite": result.suite, "source": result.source,
            "environments": {env: run.to_dict() for env, run in result.latest.items()},
            "differing": [{"case": case, "outcomes": by_env} for case, by_env in result.differing.items()],
            "problems": result.problems,
        }, indent=2))
        return EXIT_OK
    click.echo(f"{result.suite} (latest run per environment, from {result.source}):")
    for env, run in result.latest.items():
        click.echo(f"  {env}: {_rate(run.pass_rate)} pass rate ({run.passed} passed, {run.failed} failed, "
                   f"{run.skipped} skipped) at {run.started_at}")
    if not result.differing:
        click.echo("No case fails in one environment and passes in another.")
        return EXIT_OK
    envs = list(result.latest)
    width = max(len("case"), *(len(c) for c in result.differing))
    click.echo("")
    click.echo("  ".join([f"{'case':{width}}", *(f"{e:10}" for e in envs)]).rstrip())
    for case, by_env in result.differing.items():
        click.echo("  ".join([f"{case:{width}}", *(f"{by_env.get(e, '-'):10}" for e in envs)]).rstrip())
    return EXIT_OK


@tests_group.command("history")
@click.argument("suite")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000), help="Runs to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON.")
@click.pass_context
@reports_errors
def tests_history(ctx: click.Context, suite: str, limit: int, as_json: bool) -> int:
    """The runs of SUITE (newest first) and its flaky cases: within its last 10 runs on an environment,
    a case both passed and failed, or passed only after a retry."""
    from reconciler.flows.tests_history import suite_history

    result = suite_history(workspace_from(ctx), suite, limit)
    _warn(result.problems)
    if as_json:
        click.echo(json.dumps({"suite": result.suite, "source": result.source,
                               "runs": [r.to_dict() for r in result.runs],
                               "flaky": [f.to_dict() for f in result.flaky], "problems": result.problems}, indent=2))
        return EXIT_OK
    click.echo(f"{result.suite}: {len(result.runs)} runs (from {result.source}), newest first")
    for r in result.runs:
        click.echo(f"  {r.started_at:25} {r.environment:12} {r.passed:4} passed {r.failed:4} failed "
                   f"{r.skipped:4} skipped {r.duration_ms / 1000:8.2f} s")
    if result.flaky:
        click.echo("Flaky cases:")
        for f in result.flaky:
            click.echo(f"  {f.case_id} on {f.environment}: {f.reason}")
    else:
        click.echo("No flaky cases.")
    return EXIT_OK
