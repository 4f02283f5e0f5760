"""The registries a long-running process (`qrm serve`) keeps open for its small, frequent reads and writes: a
webhook's delivery id, a test run's row and lease, an Idempotency-Key. Opening a registry costs an engine and
a schema check (~25 ms on SQLite: a webhook's whole answer took 2 ms before its delivery id went to the
registry); an open one costs a pooled connection. One per registry URL and workspace identity; one that
fails (a damaged file, a server gone) is closed and opened afresh by the next use.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from reconciler.core.errors import QrmError
from reconciler.flows.recorded import open_registry
from reconciler.flows.workspace import Workspace

if TYPE_CHECKING:
    from reconciler.edges.registry import Registry

_open: dict[tuple[str, str, bool], Registry] = {}
_lock = threading.Lock()


@contextmanager
def kept_registry(ws: Workspace) -> Iterator[Registry]:
    """The workspace's registry (created when missing), open for the life of the process."""
    key = (ws.registry_url(), ws.name, ws.private_registry)
    with _lock:
        registry = _open.get(key)
        if registry is None:
            opened = open_registry(ws, create=True)
            assert opened is not None
            registry = _open[key] = opened
    try:
        yield registry
    except QrmError:
        with _lock:
            if _open.get(key) is registry:
                del _open[key]
        registry.close()
        raise


def close_all() -> None:
    """Close every kept registry (a server that stops)."""
    with _lock:
        kept = list(_open.values())
        _open.clear()
    for registry in kept:
        registry.close()
