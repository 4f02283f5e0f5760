"""The workspace the dashboard's Tests pages are tested on (tests/dashboard/test_tests.py): project shop with two
environments on two Quantum stand-ins, dev on variant v1 and staging on v2, and two suites.

shop-smoke (dev and staging) has one case of each outcome: `home` passes where the page says v1 (dev) and fails
where it says v2 (staging), so the environments differ; `about` passes; `flaky` passes on its second attempt
(the stand-in's /flaky answers 500 every other time); `missing` fails (404); `slow` errors when its 3 s timeout
ends (so a run lasts about three seconds: long enough to watch it finish); `signed-in` is skipped. Both
environments have run once (`qrm tests run`) before the server starts. shop-pages (dev, blocking) never ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from tests.support import api_server
from tests.support.git_repos import git
from tests.support.quantum_server import quantum_server

TOKENS = {"reader": ["read"], "everything": ["read", "write", "secrets"]}
# case id -> its outcome on (dev, staging)
OUTCOMES = {"about": ("passed", "passed"), "flaky": ("passed", "passed"), "home": ("passed", "failed"),
            "missing": ("failed", "failed"), "signed-in": ("skipped", "skipped"), "slow": ("error", "error")}


def shop(dev: str, staging: str) -> str:
    return f"""\
kind: Project
name: shop
environments:
  dev: {{host: localhost, url: "{dev}"}}
  staging: {{host: localhost, url: "{staging}"}}
services:
  web: {{type: app}}
"""


SUITES = """\
kind: TestSuite
name: shop-smoke
project: shop
environments: [dev, staging]
cases:
  - {id: home, name: "Home shows v1", type: smoke, request: {path: /}, expect: [{status: 200}, {contains: v1}]}
  - {id: about, name: About loads, type: smoke, request: {path: /about}, expect: [{status: 200}]}
  - {id: flaky, name: Flaky page, type: custom, retries: 1, request: {path: /flaky}, expect: [{status: 200}]}
  - {id: missing, name: Missing page, type: smoke, request: {path: /missing}, expect: [{status: 200}]}
  - {id: slow, name: Slow page, type: endpoint, timeout: 3s, request: {path: /slow}, expect: [{status: 200}]}
  - {id: signed-in, name: Admin page, type: auth, skip: needs a signed-in user, request: {path: /admin}}
---
kind: TestSuite
name: shop-pages
project: shop
block_on_failure: true
environments: [dev]
cases:
  - {id: index, name: Index loads, type: smoke, request: {path: /}, expect: [{status: 200}]}
  - {id: about, name: About loads, type: smoke, request: {path: /about}, expect: [{status: 200}]}
"""


def workspace(root: Path, env: dict[str, str], dev: str, staging: str) -> dict[str, str]:
    """The workspace in `root` (a git repository, committed), both environments of shop-smoke run once;
    returns token name -> token."""
    (root / "manifests").mkdir(parents=True)
    (root / "manifests" / "shop.yaml").write_text(shop(dev, staging))
    (root / "manifests" / "tests.yaml").write_text(SUITES)
    (root / "qrm.yaml").write_text('name: tests-pages\ncommit_author: "qrm serve <qrm@example.test>"\n')
    (root / ".gitignore").write_text(".qrm/\n")
    tokens = {name: api_server.qrm(root, env, "token", "create", name,
                                   *[a for s in scopes for a in ("--scope", s)]).strip()
              for name, scopes in TOKENS.items()}
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the shop and its suites")
    # in a thread of its own: the runner's asyncio.run cannot start on a thread whose loop playwright runs
    with ThreadPoolExecutor(1) as pool:
        pool.submit(api_server.qrm, root, env, "tests", "run", "shop-smoke").result()
    return tokens


@contextmanager
def served(base: Path) -> Iterator[api_server.Server]:
    """The workspace in base/ws with its two Quantum stand-ins, served by `qrm serve` (a real process)."""
    env = api_server.environment(base / "home")
    with quantum_server("v1") as dev, quantum_server("v2") as staging:
        tokens = workspace(base / "ws", env, dev.url, staging.url)
        with api_server.serving(base / "ws", env, tokens) as server:
            yield server
