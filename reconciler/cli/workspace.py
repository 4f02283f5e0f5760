"""`qrm init`, `validate`, `schema` and `render`: scaffold a workspace, check its manifests, keep schemas/
current, and print one generated file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from reconciler.cli.root import EXIT_ERROR, EXIT_OK, cli, reports_errors, workspace_from
from reconciler.core.escaping import one_line


@cli.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@reports_errors
def init(directory: str) -> int:
    """Scaffold a workspace in DIRECTORY: qrm.yaml, manifests/, schemas/, .gitignore, .sops.yaml and an age key.

    DIRECTORY becomes a git repository (or joins the one it is in), set up for secrets.enc
    (.gitattributes, and the merge driver and textconv in this clone's git config).
    """
    from reconciler.flows.init import init_workspace, setup_git
    from reconciler.flows.secrets import ensure_key

    created = init_workspace(Path(directory))
    for path in created:
        click.echo(f"created {path}")
    for line in setup_git(Path(directory).resolve(), create=True):
        click.echo(line)
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

    desired, problems = run_validate(workspace_from(ctx))
    if as_json:
        found = [{"file": p.file, "line": p.line, "column": p.column, "field": p.field_name, "message": p.message}
                 for p in problems]
        # "errors", as every --json failure prints it; "problems", its name before, for existing readers.
        click.echo(json.dumps({"valid": not problems, "errors": found, "problems": found}, indent=2))
    else:
        for problem in problems:
            click.echo(f"error: {one_line(str(problem))}", err=True)
        if problems:
            click.echo(f"{len(problems)} problem(s) found.", err=True)
        else:
            click.echo(f"Valid: {len(desired.instances)} services, {len(desired.hosts)} hosts, "
                       f"{len(desired.projects)} projects, {len(desired.suites)} test suites.")
    return EXIT_ERROR if problems else EXIT_OK


@cli.command()
@click.option("--check", is_flag=True, help="Only check that schemas/ is current; exit 1 when it is not.")
@click.pass_context
@reports_errors
def schema(ctx: click.Context, check: bool) -> int:
    """Write JSON Schemas of every manifest kind to schemas/ (for editors and CI)."""
    from reconciler.flows.init import stale_schemas, write_schemas
    from reconciler.flows.workspace import workspace_root

    root = workspace_root(Path(ctx.find_root().obj["directory"]))  # the folder only: no qrm.yaml or registry needed
    if check:
        stale = stale_schemas(root)
        for name in stale:
            click.echo(f"stale: schemas/{name}", err=True)
        return EXIT_ERROR if stale else EXIT_OK
    changed = write_schemas(root)
    click.echo(f"Wrote {len(changed)} schema file(s) to {root / 'schemas'}." if changed else "schemas/ is current.")
    return EXIT_OK


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

    click.echo(render_file(workspace_from(ctx), project, environment, FILE_ALIASES[name]), nl=False)
    return EXIT_OK


@cli.command("files")
@click.option("--host", "host", metavar="HOST", help="Only the files for this host's machine.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {host, path, present}.")
@click.pass_context
@reports_errors
def files_command(ctx: click.Context, host: str | None, as_json: bool) -> int:
    """List the generated files by the host whose machine they are for (`qrm apply --host HOST` writes them)."""
    from reconciler.flows.render import generated_files_by_host

    rows = generated_files_by_host(workspace_from(ctx), host)
    if as_json:
        click.echo(json.dumps([{"host": h, "path": p, "present": here} for h, p, here in rows], indent=2))
        return EXIT_OK
    width = max((len(h) for h, _p, _here in rows), default=4)
    click.echo(f"{'HOST'.ljust(width)}  PATH")
    for owner, path, here in rows:
        click.echo(f"{owner.ljust(width)}  {path}{'' if here else '  (not written here)'}")
    return EXIT_OK
