"""Every command of the `qrm` click tree, with arguments that let it start: so tests that hold for
every command (no workspace, --json errors) cover a command added later without being edited."""

from __future__ import annotations

import click

from reconciler.cli import cli

CommandPath = tuple[tuple[str, ...], click.Command]


def leaf_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[CommandPath]:
    """(path, command) of every command that runs something, e.g. (("ports", "list"), <Command>)."""
    found: list[CommandPath] = []
    for name in sorted(group.list_commands(click.Context(group))):
        command = group.get_command(click.Context(group), name)
        assert command is not None
        if isinstance(command, click.Group):
            found += leaf_commands(command, (*prefix, name))
        else:
            found.append(((*prefix, name), command))
    return found


def starting_args(command: click.Command) -> list[str]:
    """A value for every required argument and option: a number where the type wants one, else "x"."""
    args: list[str] = []
    for param in command.params:
        if not param.required:
            continue
        value = "1" if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)) else "x"
        if isinstance(param, click.Option):
            args += [param.opts[0], value]
        else:
            args += [value] * max(param.nargs, 1)
    return args


def has_json(command: click.Command) -> bool:
    return any("--json" in param.opts for param in command.params)
