"""A workspace whose services answer for real, served by `qrm serve`, for the dashboard's Services page:
`api` and `admin` are HTTP services on servers of tests/support/healthservers (each with a Switch a test
turns to 500 to break it), `db` a TCP service on a listening socket, and `cache` a TCP service nothing
listens on (connection refused). Each is pinned to a free port; the servers start on them before `qrm serve`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.edges.registry import Registry
from tests.support import api_server
from tests.support.healthservers import Switch, running

TOKENS = {"reader": ["read"], "writer": ["write"], "everything": ["read", "write", "secrets"]}
SERVICES = {"api": ("app", "http", "path: /health, "), "admin": ("app", "http", "path: /health, "),
            "db": ("database", "tcp", ""), "cache": ("cache", "tcp", "")}


def fleet(ports: dict[str, int]) -> str:
    """The services, each pinned to a port free now (never the ranges' fixed first ports: others' servers on
    this machine may hold those)."""
    return "---\n".join(f"kind: Service\nname: {name}\ntype: {type_}\nprotocol: {protocol}\nport: {ports[name]}\n"
                        f"health: {{{path}timeout: 2s}}\n" for name, (type_, protocol, path) in SERVICES.items())


@dataclass
class Fleet:
    server: api_server.Server
    ports: dict[str, int]
    switches: dict[str, Switch] = field(default_factory=dict)  # the HTTP services' answers, by service


def applied(root: Path, env: dict[str, str], manifest: str) -> dict[str, str]:
    """A workspace in `root` with `manifest` applied and TOKENS; returns name -> token."""
    (root / "manifests").mkdir(parents=True)
    (root / "manifests" / "fleet.yaml").write_text(manifest)
    (root / "qrm.yaml").write_text("name: health-fleet\n")
    tokens = {name: api_server.qrm(root, env, "token", "create", name,
                                   *[a for s in scopes for a in ("--scope", s)]).strip()
              for name, scopes in TOKENS.items()}
    api_server.qrm(root, env, "apply", "--yes")
    return tokens


@contextmanager
def many(base: Path, count: int) -> Iterator[api_server.Server]:
    """`count` app services svc-000, svc-001, ... (never checked: nothing needs to listen) served by `qrm serve`."""
    env = api_server.environment(base / "home")
    manifest = "---\n".join(f"kind: Service\nname: svc-{i:03d}\ntype: app\n" for i in range(count))
    tokens = applied(base / "ws", env, manifest)
    with api_server.serving(base / "ws", env, tokens) as server:
        yield server


@contextmanager
def served(base: Path) -> Iterator[Fleet]:
    env = api_server.environment(base / "home")
    root = base / "ws"
    tokens = applied(root, env, fleet({name: api_server.free_port() for name in SERVICES}))
    registry = Registry(f"sqlite:///{root / '.qrm' / 'registry.db'}")
    try:
        ports = {name: s.port for name, s in registry.recorded_services().items()}
    finally:
        registry.close()
    with running() as servers:
        switches = {"api": Switch(200), "admin": Switch(200)}
        for name, switch in switches.items():
            servers.status(switch, port=ports[name])
        servers.listener(port=ports["db"])
        server = api_server.start(root, env)
        server.tokens = tokens
        try:
            yield Fleet(server, ports, switches)
        finally:
            server.stop()
