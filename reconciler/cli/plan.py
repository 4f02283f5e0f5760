"""`qrm plan` and `qrm apply`, with the options they share (--no-refresh, --target, --exclude)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconciler.cli.root import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_TESTS_FAILED,
    F,
    cli,
    reports_errors,
    workspace_from,
)
from reconciler.core.escaping import one_line

if TYPE_CHECKING:
    from reconciler.flows.workspace import Workspace


def _plan_options(func: F) -> F:
    func = click.option("--no-refresh", is_flag=True, help="Do not read live listeners (for CI without hosts).")(func)
    func = click.option("--target", "targets", multiple=True, metavar="ID",
                        help="Only changes to this address or service name (glob; repeatable).")(func)
    func = click.option("--exclude", "excludes", multiple=True, metavar="ID",
                        help="Leave out changes to this address or service name (glob; repeatable).")(func)
    func = click.option("--host", "host", metavar="HOST",
                        help="Run as HOST's own machine: probe its listeners here and change only its services "
                             "and the generated files of its environments.")(func)
    return func


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (format_version 1).")
@click.option("--markdown", is_flag=True, help="Print the plan as Markdown for a PR comment.")
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Save the plan for `qrm apply FILE`.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes, 0 when none.")
@_plan_options
@click.pass_context
@reports_errors
def plan(ctx: click.Context, as_json: bool, markdown: bool, out: str | None, detailed_exitcode: bool,
         no_refresh: bool, targets: tuple[str, ...], excludes: tuple[str, ...], host: str | None) -> int:
    """Show what apply would change: + create, ~ update, - delete, ! repair."""
    from reconciler.core.report import (
        MARKDOWN_LIMIT,
        component_changes_markdown,
        plan_document,
        plan_markdown,
        plan_text,
    )
    from reconciler.flows.plan import plan_with_components, save_plan

    if as_json and markdown:
        raise click.UsageError("--json and --markdown exclude each other")
    context, components = plan_with_components(workspace_from(ctx), refresh=not no_refresh, targets=targets,
                                               excludes=excludes, host=host)
    result = context.plan
    if as_json:
        document = plan_document(result)
        document["components"] = components
        click.echo(json.dumps(document, indent=2 if len(result.changes) + len(components) <= 500 else None))
    elif markdown:
        section = component_changes_markdown(components)  # both parts stay under the comment limit together
        click.echo(plan_markdown(result, limit=MARKDOWN_LIMIT - len(section)) + section, nl=False)
    else:
        section = _short_component_changes(components)
        click.echo(plan_text(result) + (f"\n{section}" if section else ""), nl=False)
    if out:
        save_plan(context, Path(out))
        if not as_json and not markdown:
            click.echo(f"Saved the plan to {out}; apply exactly it with: qrm apply {out}")
    if result.blocked:
        return EXIT_ERROR
    if detailed_exitcode and not result.empty:
        return EXIT_CHANGES
    return EXIT_OK


def _short_component_changes(components: list[dict[str, str]], per_project: int = 20) -> str:
    """The plan's component section, at most `per_project` lines per project (--json has them all)."""
    from reconciler.core.report import component_changes_text

    shown: list[dict[str, str]] = []
    counts: dict[str, int] = {}
    for change in components:
        counts[change["project"]] = counts.get(change["project"], 0) + 1
        if counts[change["project"]] <= per_project:
            shown.append(change)
    text = component_changes_text(shown)
    for project, count in sorted(counts.items()):
        if count > per_project:
            text += f"  ... and {count - per_project} more in {project} (qrm plan --json lists all)\n"
    return text


@cli.command()
@click.argument("planfile", required=False, type=click.Path(dir_okay=False))
@click.option("--yes", "-y", is_flag=True, help="Apply without asking.")
@click.option("--lock-timeout", type=float, metavar="SECONDS",
              help="Wait this long for another apply of this workspace (default: qrm.yaml lock_timeout, 0).")
@click.option("--json", "as_json", is_flag=True, help="Print the applied plan as JSON.")
@click.option("--no-tests", is_flag=True, help="Do not run the auto_run test suites after applying.")
@click.option("--commit", "commit", is_flag=True,
              help="Commit what changed under reports/ and generated/ (never .env) with the trailer Qrm-Report: true.")
@click.option("--allow-dirty", is_flag=True,
              help="With --commit: also apply uncommitted manifests/, secrets.enc, qrm.yaml (the report says +dirty).")
@_plan_options
@click.pass_context
@reports_errors
def apply(ctx: click.Context, planfile: str | None, yes: bool, lock_timeout: float | None, as_json: bool,
          no_tests: bool, commit: bool, allow_dirty: bool, no_refresh: bool, targets: tuple[str, ...],
          excludes: tuple[str, ...], host: str | None) -> int:
    """Allocate ports, register services and write reports; PLANFILE applies exactly a saved plan.

    After every apply that is not cancelled (also one with no changes), the suites marked auto_run
    run; a failing suite with block_on_failure exits 3, and what was applied stays applied.
    --commit applies only what is committed: it refuses when manifests/, secrets.enc or qrm.yaml
    differ from HEAD (--allow-dirty: apply them anyway; the report says +dirty).
    """
    from reconciler.core.changes import Plan
    from reconciler.core.report import plan_json, plan_text
    from reconciler.flows.apply import apply_workspace
    from reconciler.flows.plan import load_saved_plan

    saved = load_saved_plan(Path(planfile)) if planfile else None
    if saved is not None and (targets or excludes or no_refresh or host):
        raise click.UsageError("a saved plan already holds its --target, --exclude, --host and --no-refresh")

    def approve(pending: Plan) -> bool:
        if as_json:
            return True if (yes or saved) else _refuse_unattended()
        click.echo(plan_text(pending), nl=False)
        if yes or saved is not None:
            return True
        if not sys.stdin.isatty():
            return _refuse_unattended()
        return click.confirm("Apply these changes?", default=False)

    ws = workspace_from(ctx)
    dirty: list[str] = []
    if commit:
        from reconciler.edges.git_repo import is_repository
        from reconciler.flows.reconcile import require_committed

        if not is_repository(ws.root):
            raise click.UsageError(f"--commit needs the workspace to be a git repository; {ws.root} is not one")
        dirty = require_committed(ws, "apply --commit", allow_dirty)
    elif allow_dirty:
        raise click.UsageError("--allow-dirty goes with --commit (plain apply always applies the working tree)")
    outcome = apply_workspace(ws, saved=saved, refresh=not no_refresh, targets=targets,
                              excludes=excludes, lock_timeout=lock_timeout, approve=approve, host=host)
    if as_json:
        click.echo(plan_json(outcome.plan), nl=False)
    else:
        if outcome.applied:
            counts = outcome.plan.counts()
            click.echo(f"Apply complete: {counts['create']} created, {counts['update']} updated, "
                       f"{counts['delete']} deleted, {counts['repair']} repaired (apply #{outcome.apply_id}).")
        elif outcome.plan.empty:
            click.echo("No changes. Nothing to apply.")
        for message in outcome.messages:
            click.echo(message)
    if not (outcome.applied or outcome.plan.empty):  # cancelled: nothing to check or commit
        return EXIT_OK
    code = EXIT_OK if no_tests else _post_apply_tests(ws, outcome.apply_id, err=as_json)
    if commit:
        from reconciler.flows.reconcile import commit_after_apply

        made = commit_after_apply(ws, outcome.plan, outcome.apply_id, outcome.applied, dirty)
        for skipped in made.skipped:
            click.echo(f"warning: {one_line(skipped)}", err=True)
        click.echo(f"Committed {made.sha[:12]}: {len(made.paths)} report file(s)." if made.sha
                   else "Nothing to commit: the reports are unchanged.", err=as_json)
    return code


def _post_apply_tests(ws: Workspace, apply_id: int | None, *, err: bool) -> int:
    """Run the auto_run suites on their environments (like post-sync hooks); exit 3 when a blocking one fails
    (and notify deploy.blocked)."""
    from reconciler.flows.notify_events import gate_blocked
    from reconciler.flows.tests_run import run_auto_suites

    runs = run_auto_suites(ws)
    for run in runs:
        for t in run.targets:
            c = run.counts(t.environment)
            click.echo(f"tests: {run.suite.name} on {t.environment}: {c['passed']} passed, {c['failed']} failed, "
                       f"{c['error']} errors, {c['skipped']} skipped", err=err)
    blocking = [run.suite.name for run in runs if run.blocks]
    if blocking:
        gate_blocked(ws, runs, apply_id)
        click.echo(f"error: blocking suite(s) failed after the apply: {', '.join(blocking)}; the apply itself "
                   "stays applied (fix and re-run qrm tests run, or revert and apply again)", err=True)
        return EXIT_TESTS_FAILED
    return EXIT_OK


def _refuse_unattended() -> bool:
    from reconciler.core.errors import QrmError

    raise QrmError("apply needs --yes (or a plan file from `qrm plan --out`) when not run on a terminal")
