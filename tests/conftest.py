"""Shared fixtures: a workspace in tmp_path, and qrm run as a user runs it (CliRunner or a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import cli

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Workspace:
    root: Path

    def write(self, relative: str, content: str) -> Path:
        """Write a file (dedented) under the workspace, e.g. write("manifests/a.yaml", "kind: ...")."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content).lstrip("\n"))
        return path

    def manifest(self, name: str, content: str) -> Path:
        return self.write(f"manifests/{name}", content)

    def qrm(self, *args: str, input: str | None = None) -> Result:
        """Run qrm in this workspace in-process, as the console script would."""
        return CliRunner().invoke(cli, ["-C", str(self.root), *args], input=input, catch_exceptions=False)

    def qrm_process(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run qrm as a separate process (for locking and concurrency tests)."""
        return subprocess.run([sys.executable, "-m", "reconciler", "-C", str(self.root), *args],
                              capture_output=True, text=True, timeout=timeout, env={**os.environ})

    @property
    def lockfile(self) -> Path:
        return self.root / "reports" / "allocations.yaml"


@pytest.fixture(autouse=True)
def private_age_keys(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the user's real age keys: HOME and XDG_CONFIG_HOME point to a fresh
    folder and the SOPS_AGE_* variables are unset (tests that need a key set them)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("SOPS_AGE_KEY", raising=False)
    monkeypatch.delenv("SOPS_AGE_KEY_FILE", raising=False)
    return home


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    (root / "manifests").mkdir(parents=True)
    return Workspace(root)
