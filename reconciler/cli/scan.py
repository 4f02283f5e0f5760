"""`qrm scan`: read each project's .q components and write reports/components/, with progress on a terminal."""

from __future__ import annotations

import json
import os
import sys
import time

import click

from reconciler.cli.root import EXIT_OK, cli, reports_errors, workspace_from
from reconciler.core.escaping import one_line


@cli.command()
@click.argument("project", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the components and totals as JSON.")
@click.pass_context
@reports_errors
def scan(ctx: click.Context, project: str | None, as_json: bool) -> int:
    """Read the .q components of each project's source: folder (or PROJECT's) and write reports/components/.

    Incremental: only files whose content hash changed since the last scan are parsed.
    """
    from reconciler.core.report import component_totals, table, totals_line
    from reconciler.flows.scan import scan_workspace

    interactive = sys.stderr.isatty() and not os.environ.get("CI")
    last = [0.0]

    def progress(name: str, done: int, total: int) -> None:
        now = time.monotonic()
        if total >= 100 and (done == total or now - last[0] >= 0.1):
            last[0] = now
            click.echo(f"\rscanning {name}: {done}/{total} files", nl=done == total, err=True)

    scans = scan_workspace(workspace_from(ctx), project, progress if interactive else None)
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
        served = f"{s.app.components}/" if s.app.components else "the whole source folder"
        click.echo(f"served: {served} (" + (f"paths.components of {s.app.file}" if s.app.file else
                                             "the default: no quantum.config.yaml") + ")")
        if s.summaries:
            click.echo(table(["PATH", "NAME", "TYPE", "ROUTE", "ACTIONS", "FORMS", "QUERIES", "PARSE"], [
                (c["path"], c["name"], c["type"], c["route"] if c.get("served", True) else "(not served)",
                 c["actions"], c["forms"], c["queries"], c["parse"])
                for c in s.summaries]))
        click.echo(totals_line(s.totals))
        if s.not_served:
            click.echo(f"not served: {len(s.not_served)} file(s) outside {served}; scanned and reported, "
                       "but no HTTP test cases are generated for them")
        for note in s.app.notes:
            click.echo(f"note: {one_line(note)}")
        for c in s.with_problems:
            click.echo(one_line(f"problems in {c['path']} ({c['parse']}): " + "; ".join(c["problems"])))
        for path in s.removed:
            click.echo(f"removed: {one_line(path)}")
        where = s.report.relative_to(s.report.parent.parent.parent)
        click.echo(f"{'wrote' if s.report_written else 'unchanged:'} {where}")
        click.echo()
    if len(scans) > 1:
        click.echo(f"All projects: {totals_line(component_totals(everything))}")
    return EXIT_OK
