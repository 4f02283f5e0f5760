"""`--json` always prints a JSON document on stdout, errors included ({"errors": [...]}, each with file,
line, column, field and message), with the exit codes unchanged. Data-driven over every command of
the click tree that has --json, so a new one is covered without editing this file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import cli
from tests.support.cli_tree import has_json, leaf_commands, starting_args

# --no-refresh where a command has it: no live probes of this machine's listeners.
JSON_COMMANDS = [pytest.param(path, [*starting_args(command), *(["--no-refresh"] if any(
                     "--no-refresh" in p.opts for p in command.params) else [])], id=" ".join(path))
                 for path, command in leaf_commands() if has_json(command)]
KEYS = {"file", "line", "column", "field", "message"}
# A manifest with a wrong field on line 5: where every command that reads manifests must point.
BROKEN = "kind: Service\nname: web\nhost: localhost\ntype: app\nport: lots\n"
PROBLEM = {"file": "manifests/svc.yaml", "line": 5, "column": 1, "field": "port",
           "message": "expected a whole number (got 'lots')"}


def run_json(folder: Path, path: tuple[str, ...], args: list[str]) -> tuple[Result, Any]:
    result = CliRunner().invoke(cli, ["-C", str(folder), *path, *args, "--json"], input="", catch_exceptions=False)
    try:
        document = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not JSON (exit {result.exit_code}):\n{result.stdout}\n{result.stderr}")
    return result, document


def test_the_tree_walk_finds_the_json_commands() -> None:
    assert {("validate",), ("plan",), ("apply",), ("ports", "list"), ("services", "health"), ("tests", "run"),
            ("secrets", "list"), ("scan",)} <= {p.values[0] for p in JSON_COMMANDS}


@pytest.mark.parametrize(("path", "args"), JSON_COMMANDS)
def test_json_of_a_folder_that_is_not_a_workspace_is_a_document_with_the_error(
        tmp_path: Path, path: tuple[str, ...], args: list[str]) -> None:
    result, document = run_json(tmp_path, path, args)
    assert result.exit_code == 1
    assert document == {"errors": [{"file": None, "line": None, "column": None, "field": None, "message": (
        f"{tmp_path} is not a qrm workspace (it has neither qrm.yaml nor manifests/): run qrm init {tmp_path} "
        "to make one, or name a workspace with -C DIR")}]}


@pytest.mark.parametrize(("path", "args"), JSON_COMMANDS)
def test_json_of_a_workspace_with_a_broken_manifest_is_a_document(
        tmp_path: Path, path: tuple[str, ...], args: list[str]) -> None:
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "svc.yaml").write_text(BROKEN)
    result, document = run_json(tmp_path, path, args)
    # Exit codes as without --json: 1 with errors (the manifest's, when the command reads manifests);
    # 0 for commands that only read the registry, which a broken manifest does not stop.
    assert result.exit_code in (0, 1)
    assert (result.exit_code == 1) == bool(document.get("errors")), document
    for error in document.get("errors", []):
        assert set(error) == KEYS
    if path in (("validate",), ("plan",), ("apply",), ("scan",), ("tests", "run"), ("ports", "ranges")):
        assert PROBLEM in document["errors"]


def test_a_usage_error_asked_for_json_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "manifests").mkdir()
    for args in (["plan", "--json", "--no-such-option"], ["plan", "--json", "--markdown"]):
        with pytest.raises(SystemExit) as exited:
            cli.main(["-C", str(tmp_path), *args])
        assert exited.value.code == 1
        errors = json.loads(capsys.readouterr().out)["errors"]
        assert len(errors) == 1 and set(errors[0]) == KEYS
        assert "--no-such-option" in errors[0]["message"] or "exclude each other" in errors[0]["message"]


def test_without_json_errors_stay_lines_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "svc.yaml").write_text(BROKEN)
    result = CliRunner().invoke(cli, ["-C", str(tmp_path), "plan", "--no-refresh"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[0] == "error: manifests/svc.yaml:5:1: port: expected a whole number (got 'lots')"
