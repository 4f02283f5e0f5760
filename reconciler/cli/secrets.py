"""`qrm secrets`: set, get, list, rm, rotate and updatekeys of secrets.enc, and the git merge driver and
textconv that keep it mergeable and diffable."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from reconciler.cli.root import EXIT_ERROR, EXIT_OK, F, cli, reports_errors, workspace_from
from reconciler.core.escaping import one_line

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
        # default "": an empty answer comes back (rather than click asking again) and set_secret refuses it
        value = click.prompt(f"Value of {name}", hide_input=True, confirmation_prompt=True, err=True, default="",
                             show_default=False)
    else:
        raw = sys.stdin.buffer.read()  # bytes: no newline translation, no surrogates
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretsError("the value on stdin is not UTF-8 text; secrets.enc was not changed") from None
        value = value[:-1] if value.endswith("\n") else value  # `echo x |` adds one newline
    key = set_secret(workspace_from(ctx), name, project, environment, value)
    click.echo(f"Set {key} in secrets.enc.")
    return EXIT_OK


@secrets.command("get")
@click.argument("name")
@_scope_options
@click.option("--resolve", is_flag=True,
              help="Resolve as `secret:NAME` does for --project/--env (environment, project, global); "
                   "stderr names the key that answers.")
@click.pass_context
@reports_errors
def secrets_get(ctx: click.Context, name: str, project: str | None, environment: str | None, resolve: bool) -> int:
    """Print the value of secret NAME (exactly this scope, or with --resolve the scope that answers)."""
    from reconciler.core import secret_scope
    from reconciler.flows.secrets import get_secret, resolve_secret

    if resolve:
        if project is None or environment is None:
            raise click.UsageError("--resolve needs --project P and --env E: a reference resolves per environment",
                                   ctx)
        key, value = resolve_secret(workspace_from(ctx), name, project, environment)
        click.echo(f"secret:{name} for {project}/{environment} is {key} ({secret_scope.scope_label(key)} key)",
                   err=True)
    else:
        value = get_secret(workspace_from(ctx), name, project, environment)
    click.echo(value, nl=False)
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

    infos, rotated = list_secrets(workspace_from(ctx))
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
    """Remove secret NAME (a warning names each manifest reference that resolved to it)."""
    from reconciler.flows.secrets import remove_checked

    removal = remove_checked(workspace_from(ctx), name, project, environment)
    click.echo(f"Removed {removal.key} from secrets.enc.")
    for ref in removal.references:  # removed all the same: the user asked, and git can bring it back
        now = f"now resolves to {ref.now}" if ref.now else "now not set: validate, plan and apply will fail"
        click.echo(f"warning: {ref.where}: datasource {ref.datasource} of {ref.project}/{ref.environment} "
                   f"referenced {removal.key}; {now}", err=True)
    return EXIT_OK


@secrets.command("rotate")
@click.pass_context
@reports_errors
def secrets_rotate(ctx: click.Context) -> int:
    """New data key for the recipients in .sops.yaml; every value re-encrypted (notified as secret.rotated)."""
    from reconciler.flows.notify_events import secret_rotated
    from reconciler.flows.secrets import rotate

    ws = workspace_from(ctx)
    count = rotate(ws)
    secret_rotated(ws, count)
    click.echo(f"Rotated the data key; re-encrypted {count} secret(s).")
    return EXIT_OK


@secrets.command("updatekeys")
@click.pass_context
@reports_errors
def secrets_updatekeys(ctx: click.Context) -> int:
    """Re-wrap the data key for the recipients now in .sops.yaml (values and ciphertexts unchanged)."""
    from reconciler.flows.secrets import update_readers

    rewrapped = update_readers(workspace_from(ctx))
    recipients = rewrapped.recipients
    click.echo(f"Data key wrapped for {len(recipients)} recipient(s): {', '.join(recipients)}")
    if rewrapped.removed:  # the old data key, and every value, are in their copies of the history
        click.echo(f"warning: removed reader(s) {', '.join(rewrapped.removed)} still know the data key and every "
                   "value (git history keeps the old file): run `qrm secrets rotate`, then change each value "
                   "with `qrm secrets set`", err=True)
    return EXIT_OK


@secrets.command("setup-git")
@click.pass_context
@reports_errors
def secrets_setup_git(ctx: click.Context) -> int:
    """Set up this clone for secrets.enc: .gitattributes, and the merge driver and textconv in its git config.

    git config is per clone and never committed, so run this once in every clone (qrm init does it
    for the repository it creates). Idempotent.
    """
    from reconciler.flows.init import setup_git
    from reconciler.flows.workspace import workspace_root

    root = workspace_root(Path(ctx.find_root().obj["directory"]))  # a clone of a workspace, not any folder
    done = setup_git(root)
    for line in done:
        click.echo(line)
    if not done:
        click.echo("This clone is already set up: .gitattributes and git config name qrm's merge driver and textconv.")
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
        click.echo(f"error: secrets changed differently on both sides: {one_line(', '.join(conflicts))}; the merged "
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
