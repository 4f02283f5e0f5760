"""`qrm ports list`, `ranges` and `check`: allocated ports with their owners, range usage, whether a port is free;
`allocate` and `release`: a service's port, written to manifests/, committed and applied (flows/writes)."""

from __future__ import annotations

import getpass
import json

import click

from reconciler.cli.root import EXIT_ERROR, EXIT_OK, cli, reports_errors, workspace_from


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
    from reconciler.core.report import lockfile_reason, table
    from reconciler.flows.ports import list_ports

    found = list_ports(workspace_from(ctx), host=host, type=port_type, mine=mine)
    rows = found.allocations
    if as_json:
        click.echo(json.dumps({"source": found.origin, "workspace": found.workspace, "allocations": rows}, indent=2))
        return EXIT_OK
    if not rows:
        click.echo("No ports allocated." + ("" if found.own else " Run qrm apply."))
        return EXIT_OK
    click.echo(table(["HOST", "PORT", "SERVICE", "TYPE", "PROTOCOL", "PINNED", "PROJECT", "ENV", "OWNER"],
                     [(r["host"], r["port"], r["name"], r["type"], r.get("protocol", ""),
                       "yes" if r.get("pinned") else "", r.get("project") or "", r.get("environment") or "",
                       r["owner"]) for r in rows]))
    if found.origin in ("lockfile", "reports"):
        click.echo(f"(from reports/allocations.yaml: {lockfile_reason(found.origin)}; {len(rows)} allocations)")
    return EXIT_OK


@ports.command("ranges")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@reports_errors
def ports_ranges(ctx: click.Context, as_json: bool) -> int:
    """Use of every port range on every host, with a usage bar."""
    from reconciler.core.report import usage_bar
    from reconciler.flows.ports import port_ranges

    rows = port_ranges(workspace_from(ctx))
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

    status = check_port(workspace_from(ctx), port, host)
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


def _caller(given: str | None) -> str:
    if given:
        return given
    try:
        return f"{getpass.getuser()} (qrm cli)"
    except (KeyError, OSError):  # no user name for this uid (a container)
        return "qrm cli"


@ports.command("allocate")
@click.argument("name")
@click.option("--type", "port_type", required=True, help="The port type (its range): app, database, ...")
@click.option("--host", default="localhost", show_default=True)
@click.option("--project", help="The project the service belongs to (kept as the tag project:NAME).")
@click.option("--preferred-port", type=click.IntRange(1, 65535), help="Used when free (soft).")
@click.option("--caller", help="Who asks, for the commit message (default: your user name).")
@click.option("--idempotency-key", help="A retry with the same key answers the first call's answer.")
@click.option("--push", is_flag=True, help="Push the commit to the upstream before applying (rebased, never forced).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@reports_errors
def ports_allocate(ctx: click.Context, name: str, port_type: str, host: str, project: str | None,
                   preferred_port: int | None, caller: str | None, idempotency_key: str | None, push: bool,
                   as_json: bool) -> int:
    """A port for service NAME: writes its Service document to manifests/services/NAME.yaml, validates,
    commits (the working tree's manifests must be committed), applies, prints the port. Allocating a
    service that exists on that host prints its port and commits nothing."""
    from reconciler.flows.writes import allocate_service

    done = allocate_service(workspace_from(ctx), name, port_type, host, project=project, preferred_port=preferred_port,
                            caller=_caller(caller), idempotency_key=idempotency_key, push=push)
    if as_json:
        click.echo(json.dumps(done.as_dict(), indent=2))
    elif done.created:
        click.echo(f"{done.host}:{done.port} allocated to {done.service} ({done.type}); committed "
                   f"{(done.commit or '')[:12]} ({done.file})")
    else:
        click.echo(f"{done.host}:{done.port} is {done.service}'s ({done.type}, {done.file}); nothing to commit")
    return EXIT_OK


@ports.command("release")
@click.argument("name")
@click.option("--host", default="localhost", show_default=True)
@click.option("--caller", help="Who asks, for the commit message (default: your user name).")
@click.option("--idempotency-key", help="A retry with the same key answers the first call's answer.")
@click.option("--push", is_flag=True, help="Push the commit to the upstream before applying (rebased, never forced).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@reports_errors
def ports_release(ctx: click.Context, name: str, host: str, caller: str | None, idempotency_key: str | None,
                  push: bool, as_json: bool) -> int:
    """Remove service NAME's document from its manifest (the rest of the file kept), commit, apply: its
    port is freed. An unknown service is an error (exit 1)."""
    from reconciler.flows.writes import release_service

    done = release_service(workspace_from(ctx), name, host, caller=_caller(caller), idempotency_key=idempotency_key,
                           push=push)
    if as_json:
        click.echo(json.dumps(done.as_dict(), indent=2))
    else:
        freed = f"{done.host}:{done.port} freed" if done.port is not None else "it had no port yet"
        click.echo(f"{done.service} released ({freed}); committed {(done.commit or '')[:12]} ({done.file})")
    return EXIT_OK
