"""`qrm notify test`, `log`, `deliver` and `enable`: send a test event, show the outbox, flush it, and enable a
notifier a 410 disabled. The one bounded delivery pass at the end of a command that emitted is registered here
on the root group's context (after the command's own output)."""

from __future__ import annotations

import json

import click

from reconciler.cli.root import EXIT_ERROR, EXIT_OK, cli, reports_errors, workspace_from
from reconciler.core.escaping import one_line


@cli.group()
def notify() -> None:
    """Notifications: test a notifier, show deliveries and failures, deliver what is due.

    Events go to the outbox in the registry when they happen; `qrm watch` and `qrm serve` deliver it in the
    background, any other command that emitted makes one short delivery pass when it ends.
    """


def _status(result_status: str, reason: str) -> str:
    return f"{result_status}: {one_line(reason)}" if reason else result_status


@notify.command("test")
@click.argument("name")
@click.pass_context
@reports_errors
def notify_test(ctx: click.Context, name: str) -> int:
    """Send a notify.test event to the notifier NAME now and print what came of it (exit 1 unless delivered)."""
    from reconciler.flows.notify import send_test

    result = send_test(workspace_from(ctx), name)
    if result.status == "delivered":
        click.echo(f"notifier {name}: delivered ({one_line(result.reason)})")
        return EXIT_OK
    disabled = f"; it is disabled until its manifest changes or `qrm notify enable {name}`" \
        if result.status == "gone" else ""
    click.echo(f"error: notifier {name}: {_status(result.status, result.reason)}{disabled}", err=True)
    return EXIT_ERROR


@notify.command("log")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="Rows to show.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@reports_errors
def notify_log(ctx: click.Context, limit: int, as_json: bool) -> int:
    """The newest deliveries and failures (newest first), and the notifiers that are disabled."""
    from dataclasses import asdict

    from reconciler.core.report import table
    from reconciler.flows.notify import disabled_notifiers
    from reconciler.flows.notify import notify_log as read_log

    ws = workspace_from(ctx)
    entries = read_log(ws, limit)
    disabled = disabled_notifiers(ws)
    if as_json:
        click.echo(json.dumps({"deliveries": [asdict(e) for e in entries],
                               "disabled": [asdict(d) for d in disabled]}, indent=2))
        return EXIT_OK
    if entries:
        click.echo(table(["ID", "CREATED", "NOTIFIER", "EVENT", "WHERE", "STATUS", "ATTEMPTS", "NEXT", "LAST ERROR"],
                         [(str(e.id), e.created_at, e.notifier, e.kind, e.where, e.status, str(e.attempts),
                           e.next_attempt_at, one_line(e.last_error)) for e in entries]))
    else:
        click.echo("No notifications yet.")
    for notifier in disabled:
        click.echo(f"notifier {notifier.name} is disabled since {notifier.since}: {one_line(notifier.reason)} "
                   f"(enable it with: qrm notify enable {notifier.name})")
    return EXIT_OK


@notify.command("deliver")
@click.option("--budget", default=30.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds to spend at most.")
@click.pass_context
@reports_errors
def notify_deliver(ctx: click.Context, budget: float) -> int:
    """Deliver what is due in the outbox now; exit 1 when a delivery failed or was disabled."""
    from reconciler.flows.notify import deliver_due

    results = deliver_due(workspace_from(ctx), budget=budget)
    if not results:
        click.echo("Nothing to deliver.")
        return EXIT_OK
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
        if result.status != "delivered":
            click.echo(f"{result.kind} to {result.notifier}: {_status(result.status, result.reason)}")
    click.echo(", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + ".")
    return EXIT_ERROR if counts.get("failed") or counts.get("gone") else EXIT_OK


@notify.command("enable")
@click.argument("name")
@click.pass_context
@reports_errors
def notify_enable(ctx: click.Context, name: str) -> int:
    """Enable the notifier NAME again after a 410 disabled it (a change to its manifest does it too)."""
    from reconciler.flows.notify import enable

    if enable(workspace_from(ctx), name):
        click.echo(f"notifier {name} is enabled.")
    else:
        click.echo(f"notifier {name} was not disabled.")
    return EXIT_OK
