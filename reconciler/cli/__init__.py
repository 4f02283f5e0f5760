"""The qrm command line: thin click wrappers over workflow.py; the only place that prints or exits.

Exit codes everywhere: 0 success and nothing to change, 1 error (bad input, failed apply,
usage error), 2 changes present (plan --detailed-exitcode only), 3 tests failed.
Heavy modules (SQLAlchemy, pydantic) are imported inside commands so `qrm --help` is instant.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

if TYPE_CHECKING:
    from reconciler.flows.workspace import Workspace

# pydantic looks for plugins in every installed distribution's entry points on first use (~40 ms
# of each run); qrm uses none. A user who wants one can still set the variable.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_TESTS_FAILED = 0, 1, 2, 3
F = TypeVar("F", bound=Callable[..., Any])


class QrmGroup(click.Group):
    """A click group whose usage errors exit 1, as every other error does (click's own default is 2)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            code = super().main(args=args, prog_name=prog_name or "qrm", complete_var=complete_var,
                                standalone_mode=False, **extra)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            code = EXIT_ERROR
        except click.ClickException as exc:
            exc.show()
            code = EXIT_ERROR
        sys.exit(code if isinstance(code, int) else EXIT_OK)


def reports_errors(func: F) -> F:
    """Turn QrmError into a one-line message (a list for manifest errors) and exit code 1; no traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from reconciler.core.errors import ManifestError, QrmError

        try:
            return func(*args, **kwargs)
        except ManifestError as exc:
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            click.echo(f"{exc}; nothing was changed", err=True)
            return EXIT_ERROR
        except QrmError as exc:
            click.echo(f"error: {exc}", err=True)
            return EXIT_ERROR

    return cast(F, wrapper)


def _workspace(ctx: click.Context) -> Workspace:
    from reconciler.flows.workspace import open_workspace

    obj = ctx.find_root().obj
    return open_workspace(Path(obj["directory"]), obj["registry"])


@click.group(cls=QrmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-C", "directory", default=".", metavar="DIR", show_default=True,
              help="Run as if qrm was started in DIR (the workspace).")
@click.option("--registry", metavar="URL", envvar="QRM_REGISTRY",
              help="Registry database URL (default: sqlite at DIR/.qrm/registry.db, or qrm.yaml's registry).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              envvar="QRM_LOG_LEVEL", show_default=True, help="Log lines on stderr from this level up.")
@click.version_option(package_name="qrm", prog_name="qrm")
@click.pass_context
def cli(ctx: click.Context, directory: str, registry: str | None, log_level: str) -> None:
    """qrm, the Quantum Resource Manager: plan and apply ports, services and configs from git."""
    import logging

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)
    ctx.obj = {"directory": directory, "registry": registry}


@cli.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@reports_errors
def init(directory: str) -> int:
    """Scaffold a workspace in DIRECTORY: qrm.yaml, manifests/, schemas/, .gitignore, .sops.yaml and an age key."""
    from reconciler.flows.init import init_workspace
    from reconciler.flows.secrets import ensure_key

    created = init_workspace(Path(directory))
    for path in created:
        click.echo(f"created {path}")
    key_file, recipient, new_key = ensure_key(Path(directory).resolve())
    click.echo(f"{'created' if new_key else 'using'} age key {key_file} (recipient {recipient}); "
               f".sops.yaml names it as the reader of secrets.enc")
    click.echo(f"Workspace ready. Next: qrm -C {directory} plan")
    return EXIT_OK


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
@click.pass_context
@reports_errors
def validate(ctx: click.Context, as_json: bool) -> int:
    """Check every manifest (schema and cross-references) and report all problems at once."""
    from reconciler.flows.desired import validate as run_validate

    desired, problems = run_validate(_workspace(ctx))
    if as_json:
        click.echo(json.dumps({"valid": not problems, "problems": [
            {"file": p.file, "line": p.line, "column": p.column, "field": p.field_name, "message": p.message}
            for p in problems]}, indent=2))
    else:
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        if problems:
            click.echo(f"{len(problems)} problem(s) found.", err=True)
        else:
            click.echo(f"Valid: {len(desired.instances)} services, {len(desired.hosts)} hosts, "
                       f"{len(desired.projects)} projects, {len(desired.suites)} test suites.")
    return EXIT_ERROR if problems else EXIT_OK


def _plan_options(func: F) -> F:
    func = click.option("--no-refresh", is_flag=True, help="Do not read live listeners (for CI without hosts).")(func)
    func = click.option("--target", "targets", multiple=True, metavar="ID",
                        help="Only changes to this address or service name (glob; repeatable).")(func)
    func = click.option("--exclude", "excludes", multiple=True, metavar="ID",
                        help="Leave out changes to this address or service name (glob; repeatable).")(func)
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
         no_refresh: bool, targets: tuple[str, ...], excludes: tuple[str, ...]) -> int:
    """Show what apply would change: + create, ~ update, - delete, ! repair."""
    from reconciler.core.report import (
        MARKDOWN_LIMIT,
        component_changes_markdown,
        plan_document,
        plan_markdown,
        plan_text,
    )
    from reconciler.edges import files
    from reconciler.flows.plan import plan_workspace, saved_plan_document
    from reconciler.flows.scan import component_changes

    if as_json and markdown:
        raise click.UsageError("--json and --markdown exclude each other")
    context = plan_workspace(_workspace(ctx), refresh=not no_refresh, targets=targets, excludes=excludes)
    try:
        components = component_changes(context.ws, context.desired, context.registry)
    finally:
        if context.registry is not None:
            context.registry.close()
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
        files.write_atomic(Path(out), json.dumps(saved_plan_document(context), indent=2) + "\n")
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
@click.argument("project", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the components and totals as JSON.")
@click.pass_context
@reports_errors
def scan(ctx: click.Context, project: str | None, as_json: bool) -> int:
    """Read the .q components of each project's source: folder (or PROJECT's) and write reports/components/.

    Incremental: only files whose content hash changed since the last scan are parsed.
    """
    import time

    from reconciler.core.report import component_totals, table, totals_line
    from reconciler.flows.scan import scan_workspace

    interactive = sys.stderr.isatty() and not os.environ.get("CI")
    last = [0.0]

    def progress(name: str, done: int, total: int) -> None:
        now = time.monotonic()
        if total >= 100 and (done == total or now - last[0] >= 0.1):
            last[0] = now
            click.echo(f"\rscanning {name}: {done}/{total} files", nl=done == total, err=True)

    scans = scan_workspace(_workspace(ctx), project, progress if interactive else None)
    everything = [c for s in scans for c in s.summaries]
    if as_json:
        click.echo(json.dumps({"projects": [s.to_dict() for s in scans], "totals": component_totals(everything)},
                              indent=2 if len(everything) <= 500 else None))
        return EXIT_OK
    if not scans:
        click.echo("No project has a source: folder to scan.")
        return EXIT_OK
    for s in scans:
        unchanged = len(s.summaries) - len(s.parsed)
        click.echo(f"{s.project} ({s.source}): {len(s.summaries)} file(s); {len(s.parsed)} parsed, "
                   f"{unchanged} unchanged, {len(s.removed)} removed")
        if s.summaries:
            click.echo(table(["PATH", "NAME", "TYPE", "ROUTE", "ACTIONS", "FORMS", "QUERIES", "PARSE"], [
                (c["path"], c["name"], c["type"], c["route"], c["actions"], c["forms"], c["queries"], c["parse"])
                for c in s.summaries]))
        click.echo(totals_line(s.totals))
        for c in s.with_problems:
            click.echo(f"problems in {c['path']} ({c['parse']}): " + "; ".join(c["problems"]))
        for path in s.removed:
            click.echo(f"removed: {path}")
        where = s.report.relative_to(s.report.parent.parent.parent)
        click.echo(f"{'wrote' if s.report_written else 'unchanged:'} {where}")
        click.echo()
    if len(scans) > 1:
        click.echo(f"All projects: {totals_line(component_totals(everything))}")
    return EXIT_OK


@cli.command()
@click.argument("planfile", required=False, type=click.Path(dir_okay=False))
@click.option("--yes", "-y", is_flag=True, help="Apply without asking.")
@click.option("--lock-timeout", type=float, metavar="SECONDS",
              help="Wait this long for another apply of this workspace (default: qrm.yaml lock_timeout, 0).")
@click.option("--json", "as_json", is_flag=True, help="Print the applied plan as JSON.")
@click.option("--no-tests", is_flag=True, help="Do not run the auto_run test suites after applying.")
@click.option("--commit", "commit", is_flag=True,
              help="Commit what changed under reports/ and generated/ (never .env) with the trailer Qrm-Report: true.")
@_plan_options
@click.pass_context
@reports_errors
def apply(ctx: click.Context, planfile: str | None, yes: bool, lock_timeout: float | None, as_json: bool,
          no_tests: bool, commit: bool, no_refresh: bool, targets: tuple[str, ...], excludes: tuple[str, ...]) -> int:
    """Allocate ports, register services and write reports; PLANFILE applies exactly a saved plan.

    After every apply that is not cancelled (also one with no changes), the suites marked auto_run
    run; a failing suite with block_on_failure exits 3, and what was applied stays applied.
    """
    from reconciler.core.changes import Plan
    from reconciler.core.report import plan_json, plan_text
    from reconciler.flows.apply import apply_workspace
    from reconciler.flows.plan import load_saved_plan

    saved = load_saved_plan(Path(planfile)) if planfile else None
    if saved is not None and (targets or excludes or no_refresh):
        raise click.UsageError("a saved plan already holds its --target, --exclude and --no-refresh")

    def approve(pending: Plan) -> bool:
        if as_json:
            return True if (yes or saved) else _refuse_unattended()
        click.echo(plan_text(pending), nl=False)
        if yes or saved is not None:
            return True
        if not sys.stdin.isatty():
            return _refuse_unattended()
        return click.confirm("Apply these changes?", default=False)

    ws = _workspace(ctx)
    if commit:
        from reconciler.edges.git_repo import is_repository

        if not is_repository(ws.root):
            raise click.UsageError(f"--commit needs the workspace to be a git repository; {ws.root} is not one")
    outcome = apply_workspace(ws, saved=saved, refresh=not no_refresh, targets=targets,
                              excludes=excludes, lock_timeout=lock_timeout, approve=approve)
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
    code = EXIT_OK if no_tests else _post_apply_tests(ws, err=as_json)
    if commit:
        from reconciler.flows.reconcile import commit_after_apply

        made = commit_after_apply(ws, outcome.plan, outcome.apply_id, outcome.applied)
        for skipped in made.skipped:
            click.echo(f"warning: {skipped}", err=True)
        click.echo(f"Committed {made.sha[:12]}: {len(made.paths)} report file(s)." if made.sha
                   else "Nothing to commit: the reports are unchanged.", err=as_json)
    return code


def _post_apply_tests(ws: Workspace, *, err: bool) -> int:
    """Run the auto_run suites on their environments (like post-sync hooks); exit 3 when a blocking one fails."""
    from reconciler.flows.tests_history import auto_run_suites
    from reconciler.flows.tests_run import run_tests

    names = auto_run_suites(ws)
    if not names:
        return EXIT_OK
    runs = [run for name in names for run in run_tests(ws, name, ()).runs]
    for run in runs:
        for t in run.targets:
            c = run.counts(t.environment)
            click.echo(f"tests: {run.suite.name} on {t.environment}: {c['passed']} passed, {c['failed']} failed, "
                       f"{c['error']} errors, {c['skipped']} skipped", err=err)
    blocking = [run.suite.name for run in runs if run.blocks]
    if blocking:
        click.echo(f"error: blocking suite(s) failed after the apply: {', '.join(blocking)}; the apply itself "
                   "stays applied (fix and re-run qrm tests run, or revert and apply again)", err=True)
        return EXIT_TESTS_FAILED
    return EXIT_OK


def _refuse_unattended() -> bool:
    from reconciler.core.errors import QrmError

    raise QrmError("apply needs --yes (or a plan file from `qrm plan --out`) when not run on a terminal")


@cli.command()
@click.option("--apply", "do_apply", is_flag=True, help="Apply changes (default: only plan and report).")
@click.option("--interval", type=click.FloatRange(0.1, 86400), default=30.0, show_default=True, metavar="SECONDS",
              help="Re-check health and drift (and pull, with --pull) this often.")
@click.option("--pull", is_flag=True, help="Fetch and fast-forward from the upstream; push the report commits.")
@click.option("--no-commit", is_flag=True, help="Write reports but do not commit them.")
@click.pass_context
@reports_errors
def watch(ctx: click.Context, do_apply: bool, interval: float, pull: bool, no_commit: bool) -> int:
    """Reconcile whenever manifests/, secrets.enc, qrm.yaml or a project's .q files change, and on every interval.

    One line per reconcile. SIGTERM or SIGINT finishes the current step and exits 0.
    """
    import signal
    import threading

    from reconciler.flows.watch import WatchOptions
    from reconciler.flows.watch import watch as watch_workspace

    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        click.echo(f"received {signal.Signals(signum).name}; stopping after the current step", err=True)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    options = WatchOptions(apply=do_apply, interval=interval, pull=pull, commit=not no_commit)

    def emit(line: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        click.echo(f"{stamp} {line}")

    watch_workspace(_workspace(ctx), options, stop, emit)
    return EXIT_OK


@cli.group(cls=click.Group)
def ports() -> None:
    """Allocated ports, range usage, and whether a port is free."""


@ports.command("list")
@click.option("--host", help="Only this host.")
@click.option("--type", "port_type", help="Only this port type.")
@click.option("--mine", is_flag=True, help="Only this workspace's ports (in a shared registry).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@reports_errors
def ports_list(ctx: click.Context, host: str | None, port_type: str | None, mine: bool, as_json: bool) -> int:
    """Every allocated port: host, port, service, type, protocol, and its owner (the workspace that
    allocated it: in a shared registry, also the other workspaces' ports)."""
    from reconciler.core.report import table
    from reconciler.core.state import service_to_dict
    from reconciler.flows.recorded import recorded_state

    ws = _workspace(ctx)
    recorded = recorded_state(ws)
    rows: list[dict[str, Any]] = [{**service_to_dict(s), "owner": ws.name} for s in recorded.services.values()]
    if not mine:
        rows += [{"name": f.service, "host": f.host, "port": f.port, "type": f.type, "owner": f.owner}
                 for f in recorded.foreign]
    rows = sorted((r for r in rows if host in (None, r["host"]) and port_type in (None, r["type"])),
                  key=lambda r: (r["host"], r["port"]))
    if as_json:
        click.echo(json.dumps({"source": recorded.origin, "workspace": ws.name, "allocations": rows}, indent=2))
        return EXIT_OK
    if not rows:
        click.echo("No ports allocated." + ("" if recorded.services else " Run qrm apply."))
        return EXIT_OK
    click.echo(table(["HOST", "PORT", "SERVICE", "TYPE", "PROTOCOL", "PINNED", "PROJECT", "ENV", "OWNER"],
                     [(r["host"], r["port"], r["name"], r["type"], r.get("protocol", ""),
                       "yes" if r.get("pinned") else "", r.get("project") or "", r.get("environment") or "",
                       r["owner"]) for r in rows]))
    if recorded.origin in ("lockfile", "reports"):
        click.echo(f"(from reports/allocations.yaml: {_no_registry(recorded.origin)}; {len(rows)} allocations)")
    return EXIT_OK


def _no_registry(origin: str) -> str:
    return "the registry is empty" if origin == "lockfile" else "no registry here"


@ports.command("ranges")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@reports_errors
def ports_ranges(ctx: click.Context, as_json: bool) -> int:
    """Use of every port range on every host, with a usage bar."""
    from reconciler.core.report import usage_bar
    from reconciler.edges import probes
    from reconciler.flows.desired import load_desired
    from reconciler.flows.ports import range_usage
    from reconciler.flows.recorded import recorded_state

    ws = _workspace(ctx)
    desired = load_desired(ws)
    recorded = recorded_state(ws)
    rows = range_usage(desired, recorded, probes.ephemeral_range())
    if as_json:
        click.echo(json.dumps([{"host": r.host, "type": r.type, "range": r.name, "start": r.start, "end": r.end,
                                "used": r.used, "reserved": r.reserved, "ephemeral": r.unavailable,
                                "free": r.free} for r in rows], indent=2))
        return EXIT_OK
    lines = []
    for r in rows:
        extra = "".join([f", {r.reserved} reserved" if r.reserved else "",
                         f", {r.unavailable} ephemeral" if r.unavailable else ""])
        lines.append((r.host, f"{r.type} {r.start}-{r.end}: {r.used} used, {r.free} free{extra}", r))
    host_width = max((len(host) for host, _, _ in lines), default=0)
    width = max((len(usage) for _, usage, _ in lines), default=0)
    for host, usage, r in lines:
        click.echo(f"{host.ljust(host_width)}  {usage.ljust(width)}  {usage_bar(r.used, r.size)}")
    return EXIT_OK


@ports.command("check")
@click.argument("port", type=click.IntRange(1, 65535))
@click.option("--host", default="localhost", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@reports_errors
def ports_check(ctx: click.Context, port: int, host: str, as_json: bool) -> int:
    """Whether PORT is free on a host; exit 0 when free, 1 when not, with the reasons."""
    from reconciler.flows.ports import check_port

    status = check_port(_workspace(ctx), port, host)
    if as_json:
        click.echo(json.dumps({"host": status.host, "port": status.port, "free": status.free,
                               "reasons": status.reasons, "range": status.range}, indent=2))
    else:
        where = f" in range {status.range}" if status.range else " (outside every range)"
        if status.free:
            click.echo(f"{host}:{port} is free{where}.")
        else:
            click.echo(f"{host}:{port} is not free{where}: " + "; ".join(status.reasons) + ".")
    return EXIT_OK if status.free else EXIT_ERROR


@cli.group()
def services() -> None:
    """Registered services: list, discover a passing instance, and check health (Consul's rules).

    Statuses: passing, warning (HTTP 429), critical; unknown until a first `qrm services health`.
    """


def _latency(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} ms"


def _when(value: str | None) -> str:
    return "" if value is None else value.split(".", 1)[0].replace("T", " ") + "Z"


@services.command("list")
@click.option("--type", "service_type", metavar="T", help="Only services of this port type.")
@click.option("--tag", metavar="X", help="Only services with this tag.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@reports_errors
def services_list(ctx: click.Context, service_type: str | None, tag: str | None, as_json: bool) -> int:
    """Every registered service with its health as the last `qrm services health` left it."""
    from reconciler.core.report import table
    from reconciler.flows.services import list_services

    found = list_services(_workspace(ctx), type=service_type, tag=tag)
    if as_json:
        click.echo(json.dumps({"source": found.origin, "services": [v.to_dict() for v in found.services]}, indent=2))
        return EXIT_OK
    if not found.services:
        click.echo("No services registered" + (" with these filters." if service_type or tag else ". Run qrm apply."))
        return EXIT_OK
    click.echo(table(["NAME", "ADDRESS", "TYPE", "PROTOCOL", "HEALTH", "LATENCY", "LAST CHECK", "TAGS"],
                     [(v.name, v.hostport, v.service.type, v.service.protocol, v.status, _latency(v.latency_ms),
                       _when(v.checked_at), ",".join(v.service.tags)) for v in found.services]))
    if found.origin in ("lockfile", "reports"):
        click.echo(f"(from reports/allocations.yaml: {_no_registry(found.origin)})")
    return EXIT_OK


@services.command("discover")
@click.argument("name")
@click.option("--type", "service_type", metavar="T", help="Only instances of this port type.")
@click.option("--tag", metavar="X", help="Only instances with this tag.")
@click.option("--env", "environment", metavar="E", help="Only the instance of this environment.")
@click.option("--all", "every", is_flag=True, help="Print every passing instance, one per line.")
@click.pass_context
@reports_errors
def services_discover(ctx: click.Context, name: str, service_type: str | None, tag: str | None,
                      environment: str | None, every: bool) -> int:
    """Print address:port of a passing instance of NAME; exit 1 with the reason when none is passing.

    NAME is a service (quantum-admin, quantumblog-prod-web) or a project service in any environment
    (quantumblog-web). Of several passing instances the first by name is printed (or all with --all).
    """
    from reconciler.core.health import why_not
    from reconciler.flows.services import discover

    found = discover(_workspace(ctx), name, type=service_type, tag=tag, environment=environment)
    if not found.found:
        click.echo(f"error: {why_not(found, name)}", err=True)
        return EXIT_ERROR
    for view in found.passing if every else found.passing[:1]:
        click.echo(view.address or view.hostport)
    return EXIT_OK


@services.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print the round as JSON (what reports/health.yaml holds).")
@click.option("--fail-on", type=click.Choice(["never", "warning", "critical"]), default="never", show_default=True,
              help="Exit 1 when a service ends critical (critical), or warning or critical (warning).")
@click.option("--concurrency", type=click.IntRange(1, 5000), default=200, show_default=True,
              help="Checks in flight at once.")
@click.pass_context
@reports_errors
def services_health(ctx: click.Context, as_json: bool, fail_on: str, concurrency: int) -> int:
    """Check every registered service at once; record the statuses and write reports/health.yaml.

    HTTP(S) GET of the health path for http/https services that have one (2xx passing, 429 warning,
    anything else critical), a TCP connect for the others; each within its check's timeout.
    """
    from reconciler.core.report import table
    from reconciler.flows.services import check_health

    outcome = check_health(_workspace(ctx), concurrency=concurrency)
    totals = outcome.counts()
    if as_json:
        click.echo(json.dumps({"checked_at": outcome.checked_at, "summary": totals,
                               "services": outcome.entries()}, indent=2))
    elif not outcome.services:
        click.echo("No services registered. Run qrm apply.")
    else:
        click.echo(table(["NAME", "CHECK", "STATUS", "LATENCY", "REASON"],
                         [(e["name"], e["check"], e["status"], _latency(e["latency_ms"]), e["reason"])
                          for e in outcome.entries()]))
        click.echo(f"{len(outcome.services)} services: {totals['passing']} passing, {totals['warning']} warning, "
                   f"{totals['critical']} critical (checked in {outcome.probe_seconds:.2f} s); "
                   f"{'wrote' if outcome.report_written else 'unchanged:'} "
                   f"{outcome.report.relative_to(outcome.report.parent.parent)}")
    failing = {"never": (), "warning": ("warning", "critical"), "critical": ("critical",)}[fail_on]
    return EXIT_ERROR if any(totals[status] for status in failing) else EXIT_OK


@cli.command("render")
@click.option("--project", "-p", required=True, metavar="P")
@click.option("--env", "-e", "environment", required=True, metavar="E")
@click.option("--file", "-f", "name", type=click.Choice(["env", "compose", "nginx", "quantum"]), default="env",
              show_default=True, help="Which generated file.")
@click.pass_context
@reports_errors
def render_command(ctx: click.Context, project: str, environment: str, name: str) -> int:
    """Print one generated file of a project environment as apply would write it (secrets masked)."""
    from reconciler.core.render import FILE_ALIASES
    from reconciler.flows.render import render_file

    click.echo(render_file(_workspace(ctx), project, environment, FILE_ALIASES[name]), nl=False)
    return EXIT_OK


@cli.command()
@click.option("--check", is_flag=True, help="Only check that schemas/ is current; exit 1 when it is not.")
@click.pass_context
@reports_errors
def schema(ctx: click.Context, check: bool) -> int:
    """Write JSON Schemas of every manifest kind to schemas/ (for editors and CI)."""
    from reconciler.core.schema import json_schemas
    from reconciler.flows.init import write_schemas

    root = Path(ctx.find_root().obj["directory"]).resolve()
    if check:
        stale = [name for name, content in json_schemas().items()
                 if not (root / "schemas" / name).is_file() or (root / "schemas" / name).read_text() != content]
        for name in stale:
            click.echo(f"stale: schemas/{name}", err=True)
        return EXIT_ERROR if stale else EXIT_OK
    changed = write_schemas(root)
    click.echo(f"Wrote {len(changed)} schema file(s) to {root / 'schemas'}." if changed else "schemas/ is current.")
    return EXIT_OK


_SCOPE_OPTIONS = [
    click.option("--project", "-p", metavar="P", help="Project scope (project/NAME)."),
    click.option("--env", "-e", "environment", metavar="E",
                 help="Environment scope (project/env/NAME); needs --project."),
]


def _scope_options(func: F) -> F:
    for option in reversed(_SCOPE_OPTIONS):
        func = option(func)
    return func


@cli.group()
def secrets() -> None:
    """SOPS-compatible secrets.enc: set, get, list, rm, rotate, updatekeys; git merge driver and textconv.

    Values are never taken from the command line (where `ps` shows them): `set` reads stdin, or
    prompts without echo on a terminal. Keys come from SOPS_AGE_KEY, SOPS_AGE_KEY_FILE or SOPS's
    default key file.
    """


@secrets.command("set", context_settings={"allow_extra_args": True})
@click.argument("name")
@_scope_options
@click.pass_context
@reports_errors
def secrets_set(ctx: click.Context, name: str, project: str | None, environment: str | None) -> int:
    """Set secret NAME to the value on stdin (or typed at a hidden prompt)."""
    from reconciler.core.errors import SecretsError
    from reconciler.flows.secrets import set_secret

    if ctx.args:  # a value on the command line: refused, and not repeated into the error (logs keep it)
        raise click.UsageError("the value is never taken from the command line, where `ps` and the shell "
                               "history show it: pipe it in, or type it at the prompt", ctx)
    if sys.stdin.isatty():
        value = click.prompt(f"Value of {name}", hide_input=True, confirmation_prompt=True, err=True)
    else:
        raw = sys.stdin.buffer.read()  # bytes: no newline translation, no surrogates
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretsError("the value on stdin is not UTF-8 text; secrets.enc was not changed") from None
        value = value[:-1] if value.endswith("\n") else value  # `echo x |` adds one newline
    key = set_secret(_workspace(ctx), name, project, environment, value)
    click.echo(f"Set {key} in secrets.enc.")
    return EXIT_OK


@secrets.command("get")
@click.argument("name")
@_scope_options
@click.pass_context
@reports_errors
def secrets_get(ctx: click.Context, name: str, project: str | None, environment: str | None) -> int:
    """Print the value of secret NAME (exactly this scope)."""
    from reconciler.flows.secrets import get_secret

    click.echo(get_secret(_workspace(ctx), name, project, environment), nl=False)
    if sys.stdout.isatty():
        click.echo()
    return EXIT_OK


@secrets.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@reports_errors
def secrets_list(ctx: click.Context, as_json: bool) -> int:
    """Names, scopes and when each was last set; never values, and no key needed."""
    from reconciler.core.report import table
    from reconciler.flows.secrets import list_secrets

    infos, rotated = list_secrets(_workspace(ctx))
    if as_json:
        click.echo(json.dumps({"rotated_at": rotated, "secrets": [
            {"key": i.key, "name": i.name, "scope": i.scope, "changed_at": i.changed_at} for i in infos]}, indent=2))
        return EXIT_OK
    if not infos:
        click.echo("No secrets. Add one with: qrm secrets set NAME [--project P] [--env E]")
        return EXIT_OK
    click.echo(table(["KEY", "SCOPE", "LAST SET"], [(i.key, i.scope, i.changed_at or "") for i in infos]))
    click.echo(f"{len(infos)} secret(s); data key last rotated: {rotated or 'never'}")
    return EXIT_OK


@secrets.command("rm")
@click.argument("name")
@_scope_options
@click.pass_context
@reports_errors
def secrets_rm(ctx: click.Context, name: str, project: str | None, environment: str | None) -> int:
    """Remove secret NAME."""
    from reconciler.flows.secrets import remove_secret

    click.echo(f"Removed {remove_secret(_workspace(ctx), name, project, environment)} from secrets.enc.")
    return EXIT_OK


@secrets.command("rotate")
@click.pass_context
@reports_errors
def secrets_rotate(ctx: click.Context) -> int:
    """New data key for the recipients in .sops.yaml; every value re-encrypted."""
    from reconciler.flows.secrets import rotate

    click.echo(f"Rotated the data key; re-encrypted {rotate(_workspace(ctx))} secret(s).")
    return EXIT_OK


@secrets.command("updatekeys")
@click.pass_context
@reports_errors
def secrets_updatekeys(ctx: click.Context) -> int:
    """Re-wrap the data key for the recipients now in .sops.yaml (values and ciphertexts unchanged)."""
    from reconciler.flows.secrets import update_keys

    recipients = update_keys(_workspace(ctx))
    click.echo(f"Data key wrapped for {len(recipients)} recipient(s): {', '.join(recipients)}")
    return EXIT_OK


@secrets.command("merge-driver")
@click.argument("base", type=click.Path(dir_okay=False))
@click.argument("ours", type=click.Path(dir_okay=False))
@click.argument("theirs", type=click.Path(dir_okay=False))
@reports_errors
def secrets_merge_driver(base: str, ours: str, theirs: str) -> int:
    """git merge driver (%O %A %B): three-way merge of the decrypted secrets, re-encrypted into %A."""
    from reconciler.flows.secrets import merge

    conflicts = merge(Path(base), Path(ours), Path(theirs))
    if conflicts:
        click.echo(f"error: secrets changed differently on both sides: {', '.join(conflicts)}; the merged "
                   "file keeps our value for them and every other change; set the right value with "
                   "qrm secrets set, then commit", err=True)
        return EXIT_ERROR
    return EXIT_OK


@secrets.command("textconv")
@click.argument("path", type=click.Path(dir_okay=False))
@reports_errors
def secrets_textconv(path: str) -> int:
    """git diff textconv: the secrets as KEY: value lines (names and fingerprints without a key)."""
    from reconciler.flows.secrets import textconv

    click.echo(textconv(Path(path)), nl=False)
    return EXIT_OK


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

    Hand-written cases and hand edits of cases of unchanged components are kept; cases of changed
    components are regenerated; cases of deleted components are removed.
    """
    from reconciler.flows.tests_generate import generate_suite

    ws = _workspace(ctx)
    result = generate_suite(ws, project)
    where = result.path.relative_to(ws.root)
    if as_json:
        click.echo(json.dumps({
            "project": result.project, "suite": result.suite, "path": str(where), "written": result.written,
            "total": result.total, "counts": result.counts, "added": result.added, "changed": result.changed,
            "removed": result.removed, "kept": result.kept, "hand_written": result.hand_written}, indent=2))
        return EXIT_OK
    counts = ", ".join(f"{kind} {n}" for kind, n in result.counts.items()) or "none"
    click.echo(f"{result.suite}: {result.total} cases: {counts}")
    click.echo(f"{len(result.added)} added, {len(result.changed)} changed, {len(result.removed)} removed, "
               f"{len(result.kept)} kept, {len(result.hand_written)} hand-written kept")
    verb = "created" if result.created else ("wrote" if result.written else "unchanged:")
    click.echo(f"{verb} {where}")
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
    from reconciler.core.test_results import PASSED, CaseResult
    from reconciler.flows.tests_run import run_tests

    live = sys.stderr.isatty() and not os.environ.get("CI") and not as_json
    seen: dict[str, int] = {}

    def progress(result: CaseResult) -> None:
        seen[result.outcome] = seen.get(result.outcome, 0) + 1
        if as_json:
            return
        if live:
            counts = " ".join(f"{k} {v}" for k, v in sorted(seen.items()))
            click.echo(f"\r\x1b[K{sum(seen.values())} cases: {counts}", nl=False, err=True)
        elif result.outcome != PASSED or result.flaky:
            extra = f" ({result.reason})" if result.reason else " (flaky)"
            click.echo(f"{result.outcome.upper():7} {result.environment} {result.case_id}{extra}", err=True)

    outcome = run_tests(_workspace(ctx), suite, environments, junit=Path(junit) if junit else None,
                        concurrency=concurrency, on_result=progress)
    if live:
        click.echo("", err=True)
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

    result = compare(_workspace(ctx), suite)
    if as_json:
        click.echo(json.dumps({
            "suite": result.suite, "source": result.source,
            "environments": {env: run.to_dict() for env, run in result.latest.items()},
            "differing": [{"case": case, "outcomes": by_env} for case, by_env in result.differing.items()],
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

    result = suite_history(_workspace(ctx), suite, limit)
    if as_json:
        click.echo(json.dumps({"suite": result.suite, "source": result.source,
                               "runs": [r.to_dict() for r in result.runs],
                               "flaky": [f.to_dict() for f in result.flaky]}, indent=2))
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


def main() -> None:
    cli()
