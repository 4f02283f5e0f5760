"""The workspace the component and test-suite endpoints are tested on (tests/server/test_suites_api.py):
a git repository with two projects in manifest order, blog (1: no source) and shop (2: five .q pages in
shop-app/components), shop's environments dev (1) and staging (2) both at the Quantum stand-in's URL. The
stand-in serves index, about and thanks; missing and gone are 404 there, so a suite of the five smoke cases has 3 passed
and 2 failed: the numbers the run tests check."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import api_server, writes_api
from tests.support.git_repos import git
from tests.support.quantum_server import quantum_server

TOKENS = {"reader": ["read"], "writer": ["write"], "everything": ["read", "write", "secrets"]}
PAGES = {"index.q": "Home", "about.q": "About", "thanks.q": "Thanks", "missing.q": "Missing", "gone.q": "Gone"}
PASSING, FAILING = 3, 2

BLOG = """\
kind: Project
name: blog
environments:
  dev: {host: localhost}
services:
  web: {type: app}
"""


def shop(url: str) -> str:
    return f"""\
# the project the curl lines name as projects/2
kind: Project
name: shop
source: shop-app
environments:
  dev: {{host: localhost, url: "{url}"}}
  staging: {{host: localhost, url: "{url}"}}
services:
  web: {{type: app}}
"""


def suites_workspace(root: Path, env: dict[str, str], quantum_url: str) -> dict[str, str]:
    """The workspace in `root` (a git repository, committed), with TOKENS; returns name -> token."""
    (root / "manifests").mkdir(parents=True)
    (root / "manifests" / "blog.yaml").write_text(BLOG)
    (root / "manifests" / "shop.yaml").write_text(shop(quantum_url))
    pages = root / "shop-app" / "components"  # the folder a Quantum app serves by default
    pages.mkdir(parents=True)
    for name, title in PAGES.items():
        (pages / name).write_text(f'<q:component name="{title}" type="page"><h1>{title}</h1>'
                                              "</q:component>\n")
    (root / "qrm.yaml").write_text('name: suites-api\ncommit_author: "qrm serve <qrm@example.test>"\n')
    (root / ".gitignore").write_text(".qrm/\n")
    tokens = {name: api_server.qrm(root, env, "token", "create", name,
                                   *[a for s in scopes for a in ("--scope", s)]).strip()
              for name, scopes in TOKENS.items()}
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the shop and the blog")
    return tokens


@contextmanager
def served(base: Path, *args: str, origin: Path | None = None) -> Iterator[api_server.Server]:
    """The workspace in base/ws with its Quantum stand-in, served by `qrm serve ARGS` (a real process) on a free
    port; with `origin`, a bare repository made there that the workspace tracks (for --push)."""
    env = api_server.environment(base / "home")
    with quantum_server() as quantum:
        tokens = suites_workspace(base / "ws", env, quantum.url)
        if origin is not None:
            writes_api.with_origin(base / "ws", origin)
        server = api_server.start(base / "ws", env, *args)
        server.tokens = tokens
        try:
            yield server
        finally:
            server.stop()
