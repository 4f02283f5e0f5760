"""`qrm serve` as a user runs it: a real process (`python -m reconciler -C WS serve --port FREE`) on a free
port of 127.0.0.1, its stderr in a file, reached with httpx once /health answers; and the bundled
example as a workspace to serve (tests/conftest.py's `served` fixture)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from reconciler.cli import cli
from tests.support.paths import REPO

DEMO_KEY = REPO / "examples" / "demo-age-key.txt"
CANARY = "canary-" + os.urandom(24).hex()  # the prod database password of the served example


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    log_file: Path
    tokens: dict[str, str] = field(default_factory=dict)  # name -> token, for the tests that call it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.get(self.url + path, headers={**headers, **kwargs.pop("headers", {})}, timeout=30, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, **{"timeout": 30, **kwargs})

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code (killed and reported as -9 when it does not stop in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -9


def environment(home: Path) -> dict[str, str]:
    """A process environment with its own HOME and caches, and the example's demo age key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOPS_AGE", "QRM_"))}
    return {**env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
            "SOPS_AGE_KEY_FILE": str(DEMO_KEY), "PYTHONPATH": str(REPO)}


def start(root: Path, env: dict[str, str], *args: str, host: str = "127.0.0.1", wait: float = 60,
          log_level: str = "warning") -> Server:
    """`qrm serve` in a process on a free port; returns once GET /health answers 200. `log_level` is given as
    --log-level, so it wins over QRM_LOG_LEVEL in `env`."""
    port = free_port()
    log_file = root.parent / f"serve-{port}.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "reconciler", "-C", str(root), "--log-level", log_level,
                                    "serve", "--host", host, "--port", str(port), *args],
                                   stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Server(root, port, process, log_file)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"qrm serve exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"qrm serve did not answer /health within {wait} s:\n{server.log()}")


def qrm(root: Path, env: dict[str, str], *args: str, input: str | None = None) -> str:
    """qrm in-process with `env` (as the served process has it); its stdout; exit code 0 or a failure."""
    result = CliRunner().invoke(cli, ["-C", str(root), *args], input=input, env=env, catch_exceptions=False)
    assert result.exit_code == 0, (args, result.output)
    return result.stdout



@contextmanager
def serving(root: Path, env: dict[str, str], tokens: dict[str, str]) -> Iterator[Server]:
    """`qrm serve` of the workspace at `root` (start), knowing its `tokens`, stopped on the way out."""
    server = start(root, env)
    server.tokens = tokens
    try:
        yield server
    finally:
        server.stop()

# The tokens of the served example: name -> scopes.
TOKENS = {"reader": ["read"], "writer": ["write"], "keeper": ["secrets"], "trusted": ["read", "secrets"],
          "everything": ["read", "write", "secrets"]}


def example_workspace(root: Path, env: dict[str, str]) -> dict[str, str]:
    """The bundled example in `root`, applied, with CANARY as its prod database password and TOKENS;
    returns name -> token."""
    root.mkdir(parents=True)
    for name in ("manifests", "secrets.enc", ".sops.yaml"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        else:
            shutil.copy(source, root / name)
    shutil.copytree(REPO / "examples" / "quantumblog", root / "examples" / "quantumblog")
    (root / "qrm.yaml").write_text("# the served example\nname: served-example\n")
    qrm(root, env, "secrets", "set", "BLOG_DB_PASSWORD", "--project", "quantumblog", "--env", "prod",
        input=CANARY + "\n")
    qrm(root, env, "apply", "--yes", "--no-refresh", "--no-tests")
    return {name: qrm(root, env, "token", "create", name, *[a for s in scopes for a in ("--scope", s)]).strip()
            for name, scopes in TOKENS.items()}
