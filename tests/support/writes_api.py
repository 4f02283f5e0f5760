"""The workspace the write endpoints are tested on (tests/server/test_writes_api.py): a git repository
with a host named forge that has an app range of its own (FORGE_RANGE), a project shop (dev on localhost)
for scoped secrets, the example's .sops.yaml (the demo age key reads secrets.enc), and TOKENS."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import api_server
from tests.support.git_repos import git
from tests.support.paths import REPO

TOKENS = {"reader": ["read"], "writer": ["write"], "keeper": ["secrets"], "everything": ["read", "write", "secrets"]}
FORGE_RANGE = range(8083, 8300)
AUTHOR = "qrm serve <qrm@example.test>"

FORGE = f"""\
# forge: the build machine the curl lines allocate on
kind: Host
name: forge
address: 127.0.0.9
---
kind: PortRange
name: forge-app
type: app
start: {FORGE_RANGE.start}
end: {FORGE_RANGE.stop - 1}
host: forge
"""

SHOP = """\
kind: Project
name: shop
environments:
  dev: {host: localhost}
services:
  web: {type: app}
"""


def writes_workspace(root: Path, env: dict[str, str]) -> dict[str, str]:
    """The workspace in `root` (a git repository, committed, applied), with TOKENS; returns name -> token."""
    (root / "manifests").mkdir(parents=True)
    (root / "manifests" / "forge.yaml").write_text(FORGE)
    (root / "manifests" / "shop.yaml").write_text(SHOP)
    shutil.copy(REPO / ".sops.yaml", root / ".sops.yaml")
    (root / "qrm.yaml").write_text(f'name: writes-api\ncommit_author: "{AUTHOR}"\n')
    (root / ".gitignore").write_text(".qrm/\ngenerated/**/.env\n")
    tokens = {name: api_server.qrm(root, env, "token", "create", name,
                                   *[a for s in scopes for a in ("--scope", s)]).strip()
              for name, scopes in TOKENS.items()}
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "forge and the shop")
    return tokens


@contextmanager
def served(base: Path, *args: str) -> Iterator[api_server.Server]:
    """The workspace in base/ws served by `qrm serve ARGS` (a real process, logging at debug level)."""
    env = api_server.environment(base / "home")
    tokens = writes_workspace(base / "ws", env)
    server = api_server.start(base / "ws", env, *args, log_level="debug")
    server.tokens = tokens
    try:
        yield server
    finally:
        server.stop()


def with_origin(root: Path, origin: Path) -> Path:
    """A bare repository at `origin` holding the workspace's main, which tracks it (for `qrm serve --push`);
    returns `origin`."""
    git(origin.parent, "init", "-q", "--bare", "-b", "main", str(origin))
    git(root, "remote", "add", "origin", str(origin))
    git(root, "push", "-q", "-u", "origin", "main")
    return origin


def clone_of(origin: Path, into: Path) -> Path:
    """Another person's clone of `origin`, to push from."""
    git(origin.parent, "clone", "-q", str(origin), str(into))
    return into
