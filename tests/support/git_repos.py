"""Real git repositories for the `qrm apply --commit` and `qrm watch` tests (tests/cli/test_commit.py,
tests/cli/test_watch.py): git with a fixed identity, a workspace made a repository (or the bundled
example as one), and a bare origin with a developer's clone and a watcher's clone."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import REPO
from tests.support.workspace import Workspace

DEMO_KEY = REPO / "examples" / "demo-age-key.txt"


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
           "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, env=env, check=True)
    return done.stdout


def services(*names: str) -> str:
    return "".join(f"---\nkind: Service\nname: {n}\nhost: localhost\ntype: app\n" for n in names)


def repository(workspace: Workspace, gitignore: str = ".qrm/\ngenerated/**/.env\n") -> Workspace:
    workspace.write(".gitignore", gitignore)
    git(workspace.root, "init", "-q", "-b", "main")
    git(workspace.root, "add", "-A")
    git(workspace.root, "commit", "-qm", "manifests")
    return workspace


def example(workspace: Workspace, monkeypatch: pytest.MonkeyPatch, gitignore: str = ".qrm/\n") -> Workspace:
    """The bundled example (a project with secrets), as a git repository."""
    for name in ("manifests", "secrets.enc", ".sops.yaml"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, workspace.root / name, dirs_exist_ok=True)
        else:
            shutil.copy(source, workspace.root / name)
    shutil.copytree(REPO / "examples" / "quantumblog", workspace.root / "examples" / "quantumblog")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(DEMO_KEY))
    return repository(workspace, gitignore)


def clones(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A bare origin with one commit, a developer's clone and a watcher's clone."""
    origin, dev, watcher = tmp_path / "origin.git", tmp_path / "dev", tmp_path / "watcher"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    subprocess.run(["git", "clone", "-q", str(origin), str(dev)], check=True, capture_output=True)
    (dev / "manifests").mkdir()
    (dev / "manifests" / "svc.yaml").write_text(services("a"))
    git(dev, "add", "-A")
    git(dev, "commit", "-qm", "first")
    git(dev, "push", "-q", "origin", "main")
    subprocess.run(["git", "clone", "-q", str(origin), str(watcher)], check=True, capture_output=True)
    return origin, dev, watcher
