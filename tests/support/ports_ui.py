"""The workspace the Overview and Ports pages are tested on (tests/dashboard/test_overview.py, test_ports.py): a
git repository with a host forge, APPS app services on localhost and DATABASES database services on forge (more
than two pages of the Ports page), a Reservation of RESERVED on localhost inside the app range, a project shop
whose dev environment is a Quantum stand-in with a suite of one passing and one failing case; applied, one
health round (nothing listens on the services' ports: each is critical), the suite run once, all committed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page

from tests.support import api_server
from tests.support.git_repos import git
from tests.support.quantum_server import quantum_server

TOKENS = {"reader": ["read"], "everything": ["read", "write", "secrets"]}
APPS, DATABASES = 90, 30
RESERVED = range(8990, 8996)  # localhost, in the app range 8000-8999
AUTHOR = "qrm serve <qrm@example.test>"

FORGE = """\
kind: Host
name: forge
address: 127.0.0.9
---
kind: Reservation
name: legacy-admin
host: localhost
ports: ["8990-8995"]
reason: the old PHP admin still listens here
"""


def shop(url: str) -> str:
    return f"""\
kind: Project
name: shop
environments:
  dev: {{host: localhost, url: "{url}"}}
services:
  web: {{type: web}}
---
kind: TestSuite
name: shop-smoke
project: shop
environments: [dev]
cases:
  - id: about
    name: "Smoke: About loads"
    type: smoke
    request: {{method: GET, path: /about}}
    expect: [{{status: 200}}]
  - id: missing
    name: "Smoke: Missing loads"
    type: smoke
    request: {{method: GET, path: /missing}}
    expect: [{{status: 200}}]
"""


def services() -> str:
    apps = [f"kind: Service\nname: api-{i:03d}\ntype: app\n" for i in range(APPS)]
    databases = [f"kind: Service\nname: db-{i:03d}\nhost: forge\ntype: database\n" for i in range(DATABASES)]
    return "---\n".join(apps + databases)


def _qrm(root: Path, env: dict[str, str], *args: str) -> int:
    """qrm in a process (a health round and a test run start their own event loop, which playwright's would
    refuse in this one); its exit code."""
    return subprocess.run([sys.executable, "-m", "reconciler", "-C", str(root), *args], env=env,
                          capture_output=True, timeout=300, check=False).returncode


def ports_workspace(root: Path, env: dict[str, str]) -> dict[str, str]:
    """The workspace in `root`, applied, checked, tested and committed; returns token name -> token."""
    (root / "manifests").mkdir(parents=True)
    (root / "manifests" / "forge.yaml").write_text(FORGE)
    (root / "manifests" / "services.yaml").write_text(services())
    (root / "qrm.yaml").write_text(f'name: ports-ui\ncommit_author: "{AUTHOR}"\n')
    (root / ".gitignore").write_text(".qrm/\ngenerated/**/.env\n")
    git(root, "init", "-q", "-b", "main")
    with quantum_server() as quantum:
        (root / "manifests" / "shop.yaml").write_text(shop(quantum.url))
        git(root, "add", "-A")
        git(root, "commit", "-qm", "forge, the services and the shop")
        api_server.qrm(root, env, "apply", "--yes", "--no-refresh", "--no-tests")
        assert _qrm(root, env, "services", "health", "--fail-on", "never") == 0
        assert _qrm(root, env, "tests", "run", "shop-smoke") in (0, 3)  # one case fails, as meant
    tokens = {name: api_server.qrm(root, env, "token", "create", name,
                                   *[a for s in scopes for a in ("--scope", s)]).strip()
              for name, scopes in TOKENS.items()}
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the reports of the first apply, the tokens")
    return tokens


@contextmanager
def served(base: Path) -> Iterator[api_server.Server]:
    """The workspace in base/ws served by `qrm serve` (a real process)."""
    env = api_server.environment(base / "home")
    tokens = ports_workspace(base / "ws", env)
    with api_server.serving(base / "ws", env, tokens) as server:
        yield server


def sign_in(browser: Browser, server: api_server.Server, token: str, **context: Any) -> tuple[BrowserContext, Page]:
    """A new browser context signed in with the token named `token` through the sign-in form."""
    opened = browser.new_context(**context)
    page = opened.new_page()
    page.goto(server.url + "/ui/login")
    page.get_by_label("API token").fill(server.tokens[token])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.url + "/ui/")
    return opened, page


def overflows(page: Page) -> bool:
    """Whether the page scrolls sideways (wider than the window)."""
    return bool(page.evaluate("document.documentElement.scrollWidth > window.innerWidth"))
