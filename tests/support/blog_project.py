"""The project `blog` of the generation tests: its source folder holds the fixture components."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support import paths
from tests.support.workspace import Workspace

FIXTURES = paths.FIXTURES / "q" / "components"
COPIED = ("login.q", "posts", "admin", "shared", "api.q")


def blog(ws: Workspace) -> Path:
    """A project `blog` whose source folder holds the fixture components; dev and a protected prod."""
    ws.manifest("blog.yaml", """
        kind: Project
        name: blog
        source: ../blog-app
        environments:
          dev: {host: localhost}
          staging: {host: localhost}
          prod: {host: localhost, protected: true}
        datasources:
          blog-db: {driver: sqlite, database: blog.db}
        """)
    components = ws.root.parent / "blog-app" / "components"
    components.mkdir(parents=True)
    for name in COPIED:
        source = FIXTURES / name
        if source.is_dir():
            shutil.copytree(source, components / name)
        else:
            shutil.copy(source, components / name)
    return components
