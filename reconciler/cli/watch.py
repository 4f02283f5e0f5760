"""`qrm watch`: reconcile on every change and interval until SIGTERM or SIGINT, one timestamped line each."""

from __future__ import annotations

import time

import click

from reconciler.cli.root import EXIT_OK, cli, reports_errors, workspace_from


@cli.command()
@click.option("--apply", "do_apply", is_flag=True, help="Apply changes (default: only plan and report).")
@click.option("--interval", type=click.FloatRange(0.1, 86400), default=30.0, show_default=True, metavar="SECONDS",
              help="Re-check health and drift (and pull, with --pull) this often.")
@click.option("--pull", is_flag=True, help="Fetch and fast-forward from the upstream; push the report commits.")
@click.option("--no-commit", is_flag=True, help="Write reports but do not commit them.")
@click.option("--allow-dirty", is_flag=True,
              help="Also reconcile uncommitted manifests/, secrets.enc and qrm.yaml (reports say +dirty).")
@click.pass_context
@reports_errors
def watch(ctx: click.Context, do_apply: bool, interval: float, pull: bool, no_commit: bool, allow_dirty: bool) -> int:
    """Reconcile whenever manifests/, secrets.enc, qrm.yaml or a project's .q files change, and on every interval.

    With --apply, or when it commits its reports, it reconciles what is committed: while manifests/,
    secrets.enc or qrm.yaml differ from HEAD it does nothing and says so (--allow-dirty: go on, +dirty).
    One line per reconcile. SIGTERM or SIGINT finishes the current step and exits 0.
    """
    import signal
    import threading

    from reconciler.flows.notify import DeliveryLoop
    from reconciler.flows.watch import WatchOptions
    from reconciler.flows.watch import watch as watch_workspace

    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        click.echo(f"received {signal.Signals(signum).name}; stopping after the current step", err=True)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    options = WatchOptions(apply=do_apply, interval=interval, pull=pull, commit=not no_commit,
                           allow_dirty=allow_dirty)

    def emit(line: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        click.echo(f"{stamp} {line}")

    ws = workspace_from(ctx)
    deliveries = DeliveryLoop(ws).start()  # notifications go out in their own thread, never in a reconcile's
    try:
        watch_workspace(ws, options, stop, emit)
    finally:
        deliveries.stop()
    return EXIT_OK
