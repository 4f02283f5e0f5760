"""The root `qrm` group and what every command shares: exit codes, QrmGroup (usage errors exit 1),
reports_errors (QrmError as one line on stderr, or {"errors": [...]} on stdout under --json) and
workspace_from (the workspace of -C and --registry).

Exit codes everywhere: 0 success and nothing to change, 1 error (bad input, failed apply,
usage error), 2 changes present (plan --detailed-exitcode only), 3 tests failed.
Heavy modules (SQLAlchemy, pydantic, flows) are imported inside commands so `qrm --help` is instant.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from reconciler.core.errors import unexpected_error

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
            # A usage error found before the command ran (an unknown option): JSON when --json was asked.
            if _asks_for_json(args):
                code = json_errors([_unlocated(exc.format_message())])
            else:
                exc.show()
                code = EXIT_ERROR
        sys.exit(code if isinstance(code, int) else EXIT_OK)


def reports_errors(func: F) -> F:
    """Turn QrmError into a one-line message (a list for manifest errors) and exit code 1; no traceback.

    A command asked for --json (its `as_json` parameter) gets the errors as a JSON document on stdout
    instead, {"errors": [...]}, each with file, line, column, field and message (as `validate --json`
    gives manifest problems; null where an error has no location), so a pipe into jq never breaks."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from reconciler.core.errors import ManifestError, QrmError
        from reconciler.core.escaping import one_line

        as_json = bool(kwargs.get("as_json"))
        try:
            return func(*args, **kwargs)
        except ManifestError as exc:
            if as_json:
                return json_errors([{"file": p.file, "line": p.line, "column": p.column, "field": p.field_name,
                                     "message": p.message} for p in exc.problems])
            for problem in exc.problems:
                click.echo(f"error: {one_line(str(problem))}", err=True)
            click.echo(f"{exc}; nothing was changed", err=True)
            return EXIT_ERROR
        except (QrmError, click.ClickException) as exc:
            if as_json:
                error = _unlocated(exc.format_message() if isinstance(exc, click.ClickException) else str(exc))
                error["field"] = getattr(exc, "field", None)  # a refused write request names its field
                return json_errors([error])
            if isinstance(exc, click.ClickException):
                raise
            click.echo(f"error: {one_line(str(exc))}", err=True)  # a key or file name may hold a newline
            return EXIT_ERROR
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # the last line of defence (a full disk, a bug): one line, never a traceback
            if os.environ.get("QRM_DEBUG"):
                raise
            message = unexpected_error(exc)
            if as_json:
                return json_errors([_unlocated(message)])
            click.echo(f"error: {message}", err=True)
            return EXIT_ERROR

    return cast(F, wrapper)


def _unlocated(message: str) -> dict[str, Any]:
    return {"file": None, "line": None, "column": None, "field": None, "message": message}


def json_errors(errors: list[dict[str, Any]]) -> int:
    """Print {"errors": [...]} on stdout (what --json prints on failure); exit code 1."""
    import json

    click.echo(json.dumps({"errors": errors}, indent=2))
    return EXIT_ERROR


def _asks_for_json(args: Sequence[str] | None) -> bool:
    return "--json" in (sys.argv[1:] if args is None else args)


def workspace_from(ctx: click.Context) -> Workspace:
    """The workspace the root options name: -C DIR and --registry URL."""
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

    from reconciler.core.escaping import one_line

    class OneLine(logging.Formatter):
        """A log record on one line: its message may quote a file name, a key or a server's answer."""

        def formatMessage(self, record: logging.LogRecord) -> str:
            return one_line(super().formatMessage(record))

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=log_level.upper(), handlers=[handler], force=True)
    if log_level != "debug":
        # psycopg warns while it tears down a pipeline that a refused statement aborted: a second line after
        # the one error qrm reports for that statement (the registry's own message names it).
        logging.getLogger("psycopg").setLevel(logging.ERROR)
    ctx.obj = {"directory": directory, "registry": registry}
    ctx.call_on_close(_deliver_emitted)


def _deliver_emitted() -> None:
    """When a command ends (after its output, whatever its exit code): one bounded delivery pass of the
    notifications it emitted (flows/notify.deliver_after_command; not loaded: it emitted nothing)."""
    notify = sys.modules.get("reconciler.flows.notify")
    if notify is None:
        return
    try:
        notify.deliver_after_command()
    except Exception as exc:  # a notification never fails the command it reports on
        import logging

        logging.getLogger(__name__).warning("notifications not delivered: %s", unexpected_error(exc))
