"""The last line of defence: an error no layer anticipated still ends as one line and exit 1.

An operating-system error says what the system said and about which file; any other exception is
named with where it was raised but never with its message (which could quote a secret), and
QRM_DEBUG=1 gives the traceback to whoever reports the bug."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from reconciler.core.errors import unexpected_error
from tests.support.workspace import Workspace


@pytest.fixture
def broken(workspace: Workspace) -> Workspace:
    """A workspace whose secrets.enc is a folder (a bad checkout, a mistaken mkdir)."""
    workspace.manifest("svc.yaml", "kind: Service\nname: web\nhost: localhost\ntype: app\n")
    (workspace.root / "secrets.enc").mkdir()
    return workspace


@pytest.mark.parametrize("command", [["validate"], ["plan", "--no-refresh"], ["apply", "--yes", "--no-refresh"]])
def test_an_os_error_is_one_line_naming_the_file(broken: Workspace, command: list[str]) -> None:
    done = broken.qrm_process(*command)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {broken.root / 'secrets.enc'}: Is a directory"]


def test_json_asks_get_the_error_as_a_document(broken: Workspace) -> None:
    done = broken.qrm_process("validate", "--json")
    assert done.returncode == 1
    document = json.loads(done.stdout)
    assert document["errors"][0]["message"] == f"{broken.root / 'secrets.enc'}: Is a directory"


def test_qrm_debug_shows_the_traceback(broken: Workspace) -> None:
    done = subprocess.run([sys.executable, "-m", "reconciler", "-C", str(broken.root), "validate"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "QRM_DEBUG": "1"})
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "IsADirectoryError" in done.stderr


def _parse_port(text: str) -> int:
    return int(text)


def test_a_bug_is_named_by_type_and_place_never_by_its_message() -> None:
    try:
        _parse_port("canary-s3cr3t-value")
    except ValueError as exc:
        message = unexpected_error(exc)
    assert "canary-s3cr3t-value" not in message
    assert message.startswith("unexpected ValueError in ")
    assert "this is a bug in qrm" in message and "\n" not in message
