"""A workspace in a folder, with qrm run in it as a user runs it (CliRunner or a subprocess).
tests/conftest.py's `workspace` fixture makes one in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner, Result

from reconciler.cli import cli


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
