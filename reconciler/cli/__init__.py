"""The qrm command line: thin click wrappers over reconciler.flows; the only place that prints or exits.

The root group `cli` is in root.py; each other module holds one command group, and importing it
registers its commands on `cli`. `main` is the console script.
"""

from reconciler.cli import (  # noqa: F401 (registers)
    notify,
    plan,
    ports,
    scan,
    secrets,
    serve,
    services,
    tests,
    watch,
    workspace,
)
from reconciler.cli.root import cli

__all__ = ["cli", "main"]


def main() -> None:
    cli()
