"""Hostile workspace paths: a folder whose name holds URL syntax (`?`, `#`, `%41`, spaces).

The SQLite registry's URL is built from the workspace path; unescaped, `ws?x` made SQLAlchemy open `ws`
(a file beside the workspace) and `ws%41` decoded to `wsA` (another folder). Each case applies a real
workspace in such a folder and checks the registry is the workspace's own .qrm/registry.db and that
nothing was created beside the workspace.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reconciler.edges.registry import Registry, default_url
from reconciler.flows.workspace import open_workspace, sqlite_path
from tests.support.workspace import Workspace

FOLDER_NAMES = ["ws?mode=memory", "ws%41", "ws#frag", "my work space", "ws?x#y%2F..%2F..%2Fevil", "ws%3F"]
SERVICE = "kind: Service\nname: api\ntype: app\n"


@pytest.mark.parametrize("name", FOLDER_NAMES)
def test_apply_keeps_the_registry_inside_a_workspace_named_with_url_syntax(tmp_path: Path, name: str) -> None:
    parent = tmp_path / "parent"
    ws = Workspace(parent / name)
    ws.manifest("api.yaml", SERVICE)
    result = ws.qrm("apply", "--yes", "--no-refresh")
    assert result.exit_code == 0, result.output
    registry = ws.root / ".qrm" / "registry.db"
    assert registry.is_file()
    with sqlite3.connect(registry) as db:
        [(service,)] = db.execute("SELECT name FROM services").fetchall()
    assert service == "api"
    assert sorted(p.name for p in parent.iterdir()) == [name]  # nothing beside the workspace
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", FOLDER_NAMES)
def test_the_registry_url_names_the_workspace_file(tmp_path: Path, name: str) -> None:
    root = tmp_path / name
    (root / "manifests").mkdir(parents=True)
    ws = open_workspace(root)
    url = ws.registry_url()
    assert sqlite_path(url) == root / ".qrm" / "registry.db"
    assert sqlite_path(default_url(root)) == root / ".qrm" / "registry.db"
    registry = Registry(url)
    try:
        assert registry.file == root / ".qrm" / "registry.db"
    finally:
        registry.close()
    assert (root / ".qrm" / "registry.db").is_file()
