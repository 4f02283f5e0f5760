"""A folder with neither qrm.yaml nor manifests/ is not a workspace: every command that needs one
exits 1 naming the reason and creates nothing there (`qrm init` makes one). Data-driven over the
click command tree, so a new command is covered without editing this file."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from tests.support.cli_tree import leaf_commands, starting_args

# Commands that do not work on a workspace: init makes one; git calls the merge driver and textconv
# on temporary files anywhere.
NO_WORKSPACE = {("init",), ("secrets", "merge-driver"), ("secrets", "textconv")}
WORKSPACE_COMMANDS = [pytest.param(path, starting_args(command), id=" ".join(path))
                      for path, command in leaf_commands() if path not in NO_WORKSPACE]


def test_the_tree_walk_finds_the_commands_a_user_knows() -> None:
    paths = {p.values[0] for p in WORKSPACE_COMMANDS}
    assert {("plan",), ("apply",), ("validate",), ("ports", "list"), ("secrets", "set"), ("tests", "run"),
            ("watch",), ("schema",), ("render",)} <= paths


def snapshot(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("folder_holds", [{}, {"README.md": "# notes\n", "src/app.py": "print()\n"}],
                         ids=["empty", "unrelated-files"])
@pytest.mark.parametrize(("path", "args"), WORKSPACE_COMMANDS)
def test_every_command_refuses_a_folder_that_is_not_a_workspace_and_creates_nothing(
        tmp_path: Path, path: tuple[str, ...], args: list[str], folder_holds: dict[str, str]) -> None:
    folder = tmp_path / "not-a-workspace"
    for name, text in folder_holds.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    folder.mkdir(exist_ok=True)
    before = snapshot(folder)

    result = CliRunner().invoke(cli, ["-C", str(folder), *path, *args], input="a value\n", catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1] == (
        f"error: {folder} is not a qrm workspace (it has neither qrm.yaml nor manifests/): run qrm init {folder} "
        "to make one, or name a workspace with -C DIR")
    assert snapshot(folder) == before


@pytest.mark.parametrize("marker", ["qrm.yaml", "manifests"])
def test_qrm_yaml_or_manifests_alone_makes_a_workspace(tmp_path: Path, marker: str) -> None:
    if marker == "qrm.yaml":
        (tmp_path / "qrm.yaml").write_text("lock_timeout: 5\n")
    else:
        (tmp_path / "manifests").mkdir()
    result = CliRunner().invoke(cli, ["-C", str(tmp_path), "plan", "--no-refresh"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "No changes" in result.output


def test_init_makes_a_workspace_of_such_a_folder(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["-C", str(tmp_path), "plan"], catch_exceptions=False).exit_code == 1
    assert runner.invoke(cli, ["init", str(tmp_path)], catch_exceptions=False).exit_code == 0
    result = runner.invoke(cli, ["-C", str(tmp_path), "validate"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
