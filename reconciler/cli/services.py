"""`qrm services list`, `discover` and `health`: registered services, a passing instance, health checks."""

from __future__ import annotations

import json

import click

from reconciler.cli.root import EXIT_ERROR, EXIT_OK, cli, reports_errors, workspace_from
from reconciler.core.escaping import one_line


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
    from reconciler.core.report import lockfile_reason, table
    from reconciler.flows.services import list_services

    found = list_services(workspace_from(ctx), type=service_type, tag=tag)
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
        click.echo(f"(from reports/allocations.yaml: {lockfile_reason(found.origin)})")
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

    found = discover(workspace_from(ctx), name, type=service_type, tag=tag, environment=environment)
    if not found.found:
        click.echo(f"error: {one_line(why_not(found, name))}", err=True)
        return EXIT_ERROR
    for view in found.passing if every else found.passing[:1]:
        click.echo(view.address or view.hostport)
    return EXIT_OK


@services.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print the round as JSON (what reports/health.yaml holds).")
@click.option("--fail-on", type=click.Choice(["never", "warning", "critical"]), default="never", show_default=True,
              help="Exit 1 when a service ends critical (critical), or warning or critical (warning).")
@click.option("--concurrency", type=click.IntRange(1, 5000), default=1000, show_default=True,
              help="Checks in flight at once (bounded by the open-files limit, which is raised when it can be).")
@click.pass_context
@reports_errors
def services_health(ctx: click.Context, as_json: bool, fail_on: str, concurrency: int) -> int:
    """Check every registered service at once; record the statuses and write reports/health.yaml.

    HTTP(S) GET of the health path for http/https services that have one (2xx passing, 429 warning,
    anything else critical), a TCP connect for the others; each within its check's timeout.
    """
    from reconciler.core.report import table
    from reconciler.flows.services import check_health

    outcome = check_health(workspace_from(ctx), concurrency=concurrency)
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
