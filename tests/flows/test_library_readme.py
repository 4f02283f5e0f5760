"""The README's library session, run as written: what a script gets from reconciler.flows is what
the CLI shows (the same plan text, the same apply, the same health round), with no printing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO
from tests.support.workspace import Workspace


def readme_session() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Using qrm as a library"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the README's library section has no python block"
    return match.group(1)


def test_the_readme_library_session_plans_applies_and_checks_as_the_cli_does(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    workspace.manifest("services.yaml", """
        kind: Service
        name: hello
        host: localhost
        type: app
        protocol: http
        health: {path: /health, timeout: 1s}
        ---
        kind: Service
        name: cache
        host: localhost
        type: cache
        protocol: tcp
    """)
    expected_plan = workspace.qrm("plan", "--no-refresh").output
    monkeypatch.chdir(workspace.root)
    session: dict[str, Any] = {}
    exec(compile(readme_session(), "README.md", "exec"), session)

    assert capsys.readouterr().out == ""  # a library prints nothing
    assert session["problems"] == []
    assert sorted(session["desired"].instances) == ["cache", "hello"]
    assert session["text"] == expected_plan
    assert session["pending"] == {"create": 2, "update": 0, "delete": 0, "repair": 0}
    outcome = session["outcome"]
    assert outcome.applied and outcome.apply_id == 1
    lockfile = (workspace.root / "reports" / "allocations.yaml").read_text()
    assert "hello" in lockfile and "cache" in lockfile
    assert workspace.qrm("plan", "--detailed-exitcode").exit_code == 0  # applied: nothing left to do
    health = session["health"]
    assert sum(health.counts().values()) == 2
    assert {v.name for v in health.services} == {"cache", "hello"}
    assert Path(health.report).is_file()
    assert "no-such-folder does not exist" in session["reason"]
