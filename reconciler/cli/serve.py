"""`qrm serve` (the HTTP API on uvicorn) and `qrm token create|list|revoke` (its named tokens).

The CLI does not import the server (the two faces are independent siblings): `serve` checks the
workspace and the address, then hands uvicorn the server's factory by name, with the workspace in
the environment (QRM_SERVE_WORKSPACE, QRM_REGISTRY, QRM_SERVE_WATCH for --watch, QRM_SERVE_PUSH).
"""

from __future__ import annotations

import json

import click

from reconciler.cli.root import EXIT_ERROR, EXIT_OK, cli, reports_errors, workspace_from

FACTORY = "reconciler.server.app:app_from_environment"


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; beyond this machine only when a token exists (qrm token create).")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--watch", "watch", is_flag=True,
              help="Also run the watch loop here (qrm watch --apply, with --pull when the clone tracks a branch).")
@click.option("--interval", type=click.FloatRange(0.1, 86400), default=30.0, show_default=True, metavar="SECONDS",
              help="With --watch: how often to pull and re-check health and drift.")
@click.option("--push", is_flag=True, help="Writes push their commit to the upstream before applying (rebased, "
                                           "never forced).")
@click.pass_context
@reports_errors
def serve(ctx: click.Context, host: str, port: int, watch: bool, interval: float, push: bool) -> int:
    """The HTTP API over this workspace: the same answers as the commands, for tokens (qrm token).

    Docs at http://HOST:PORT/docs (served from here, no CDN). One JSON access-log line per request on
    stderr. Webhooks in at /hooks/github, /hooks/gitlab and /hooks/generic (signed; no token). With
    --watch, the watch loop runs in the same process. SIGTERM or Ctrl-C stops it cleanly (exit 0).
    """
    import logging
    import os
    import secrets
    import signal

    import uvicorn

    from reconciler.flows.notify import DeliveryLoop
    from reconciler.flows.tokens import check_bind

    ws = workspace_from(ctx)
    check_bind(ws, host)
    os.environ["QRM_SERVE_WORKSPACE"] = str(ws.root)
    if ws.registry_override:
        os.environ["QRM_REGISTRY"] = ws.registry_override
    if watch:
        os.environ["QRM_SERVE_WATCH"] = repr(interval)
    os.environ["QRM_SERVE_PUSH"] = "1" if push else "0"
    ticket = secrets.token_urlsafe(24)
    os.environ["QRM_SERVE_TICKET"] = ticket
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
    # like a freshly made token, shown once to whoever started the server; good once, for ten minutes
    click.echo(f"Dashboard: http://{shown}:{port}/ui/login/{ticket} (a one-time login link, good for 10 minutes)",
               err=True)
    # uvicorn stops gracefully on SIGTERM and SIGINT, then raises the signal again for the handler it found:
    # a no-op one here, so a stop by signal ends as a clean exit 0, not as "killed by SIGTERM".
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: None)
    logging.getLogger("uvicorn.error").setLevel(logging.INFO)  # "Uvicorn running on ...", and the shutdown
    # Every replica delivers notifications (a row is claimed by one sender), in a thread of its own.
    deliveries = DeliveryLoop(ws).start()
    try:
        uvicorn.run(FACTORY, factory=True, host=host, port=port, log_config=None, access_log=False,
                    server_header=False, proxy_headers=False)
    except SystemExit as stopped:  # uvicorn exits 3 when it cannot start (a port in use): qrm's 3 means tests failed
        if stopped.code in (0, None):
            return EXIT_OK
        click.echo(f"error: qrm serve could not start on {host}:{port} (uvicorn's ERROR line above says why)", err=True)
        return EXIT_ERROR
    finally:
        deliveries.stop()
    return EXIT_OK


@cli.group()
def token() -> None:
    """Named tokens of qrm serve, with scopes read, write, secrets: stored in qrm.yaml as a sha256 only."""


@token.command("create")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, default=("read",), show_default=True,
              help="read, write or secrets (repeatable).")
@click.pass_context
@reports_errors
def token_create(ctx: click.Context, name: str, scopes: tuple[str, ...]) -> int:
    """Make token NAME, add its sha256 to qrm.yaml and print the token: the only time it is shown."""
    from reconciler.flows.tokens import create_token

    made = create_token(workspace_from(ctx), name, list(scopes))
    click.echo(made.token)
    click.echo(f"token {name} ({', '.join(made.info.scopes)}) added to qrm.yaml; it is shown only now: keep it in "
               "your password manager or CI secrets, and commit qrm.yaml", err=True)
    return EXIT_OK


@token.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@reports_errors
def token_list(ctx: click.Context, as_json: bool) -> int:
    """Every token: name, scopes, when it was created, and the first 8 digits of its sha256."""
    from reconciler.core.report import table
    from reconciler.flows.tokens import list_tokens

    found = list_tokens(workspace_from(ctx))
    if as_json:
        click.echo(json.dumps({"tokens": [{"name": t.name, "scopes": t.scopes, "created": t.created,
                                           "sha256_prefix": t.sha256[:8]} for t in found]}, indent=2))
        return EXIT_OK
    if not found:
        click.echo("No tokens. Make one with: qrm token create NAME --scope read")
        return EXIT_OK
    click.echo(table(["NAME", "SCOPES", "CREATED", "SHA256"],
                     [(t.name, ",".join(t.scopes), t.created, t.sha256[:8] + "…") for t in found]))
    return EXIT_OK


@token.command("revoke")
@click.argument("name")
@click.pass_context
@reports_errors
def token_revoke(ctx: click.Context, name: str) -> int:
    """Remove token NAME from qrm.yaml: a running qrm serve refuses it from its next request on."""
    from reconciler.flows.tokens import revoke_token

    revoke_token(workspace_from(ctx), name)
    click.echo(f"token {name} revoked (removed from qrm.yaml); commit qrm.yaml")
    return EXIT_OK
