"""What a long-running process (`qrm serve`) reads again and again, kept between requests: the registry kept
open, the desired state, and finished answers. Each is reused only while a mark that changes with its data is
the same, and the marks are read on every request, so a write (by the server itself, the CLI, a watch loop or
another replica) shows in the very next read; a burst of reads between two writes costs one load.

The marks: the registry's revision (the newest apply of any workspace: every change of services and
allocations records one), its health revision (for the health the service list shows), the state key of the
manifests and secrets.enc (flows.desired), and the size, time and inode of the committed reports read when the
registry holds no record of this workspace.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler.core.errors import ManifestError
from reconciler.core.report import LOCKFILE_PATH, STATE_PATH
from reconciler.core.state import DesiredState
from reconciler.flows.desired import state_key, validate, with_policies
from reconciler.flows.recorded import open_registry
from reconciler.flows.workspace import Workspace, sqlite_path

if TYPE_CHECKING:
    from reconciler.edges.registry import Registry

T = TypeVar("T")
ANSWERS = 256  # answers kept (pages of 100 ports are ~17 KB; a whole 10,000-service list ~3 MB)
ANSWER_BYTES = 64 * 1024 * 1024  # and at most this many bytes of them


@dataclass(frozen=True)
class _Opened:
    identity: tuple[str, str, bool, tuple[int, int] | None]  # URL, owner, shared, SQLite file's device and inode
    registry: Registry


class Reads:
    """The server's cache of reads (one per app). Thread-safe: FastAPI runs the handlers in a thread pool."""

    def __init__(self, answers: int = ANSWERS, answer_bytes: int = ANSWER_BYTES) -> None:
        self._lock = threading.Lock()
        self._opened: _Opened | None = None
        self._desired: tuple[str, DesiredState, list[Any]] | None = None
        self._answers: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._limits = (answers, answer_bytes)
        self._loading: dict[Hashable, Future[Any]] = {}
        self.loads = 0  # answers computed (not taken from the cache): what the tests count

    def registry(self, ws: Workspace) -> Registry | None:
        """The workspace's registry, opened once and kept (None while there is none: plan and the reads never
        make one). A SQLite file that is no longer the one at its path (deleted, rebuilt) is opened again: its
        device and inode tell, since a file a kept connection holds open cannot lend its inode to a new one."""
        url = ws.registry_url()
        path = sqlite_path(url)
        identity = (url, ws.name, not ws.private_registry, _file_id(path) if path is not None else None)
        with self._lock:
            opened = self._opened
            if opened is not None and opened.identity == identity:
                return opened.registry
            self._opened = None
        if opened is not None:
            opened.registry.close()
        if path is not None and identity[3] is None:
            return None  # no file (yet): reads never make one
        registry = open_registry(ws, create=False)
        if registry is not None:
            with self._lock:
                self._opened = _Opened(identity, registry)
        return registry

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, None
        if opened is not None:
            opened.registry.close()

    def desired(self, ws: Workspace) -> DesiredState:
        """load_desired's answer, read again only when the manifests or secrets.enc changed (their state key)."""
        key = state_key(ws)
        cached = self._desired
        if cached is None or cached[0] != key:
            desired, problems = validate(ws)
            cached = self._desired = (key, desired, problems)
        if cached[2]:
            raise ManifestError(cached[2])
        return with_policies(ws, cached[1])

    def mark(self, ws: Workspace, registry: Registry | None, *, health: bool = False) -> tuple[Hashable, ...]:
        """What the recorded state read now depends on: the registry's revision (and health revision), and the
        committed reports it falls back on."""
        reports = tuple(file_mark(ws.root / path) for path in (LOCKFILE_PATH, STATE_PATH))
        if registry is None:
            return ("no registry", ws.name, *reports)
        return (registry.url, ws.name, registry.revision(), registry.health_revision() if health else "", *reports)

    def answer(self, key: Hashable, compute: Callable[[], T], size: Callable[[T], int] = lambda _: 0) -> T:
        """The answer kept under `key`, else `compute()`'s, kept (the least recently used go first). Requests
        that ask for a key being computed wait for that one computation instead of starting their own."""
        with self._lock:
            if key in self._answers:
                self._answers.move_to_end(key)
                kept: T = self._answers[key][0]
                return kept
            loading = self._loading.get(key)
            if loading is None:
                future: Future[Any] = Future()
                self._loading[key] = future
        if loading is not None:
            waited: T = loading.result()
            return waited
        try:
            value = compute()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._loading.pop(key, None)
        future.set_result(value)
        with self._lock:
            self.loads += 1
            taken = size(value)
            self._answers[key] = (value, taken)
            self._bytes += taken
            while self._answers and (len(self._answers) > self._limits[0] or self._bytes > self._limits[1]):
                _, (_, freed) = self._answers.popitem(last=False)
                self._bytes -= freed
        return value


def _file_id(path: os.PathLike[str]) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def file_mark(path: os.PathLike[str]) -> tuple[int, int, int, int] | None:
    """(inode, size, mtime, ctime) of a file, None when it is missing: a rewrite changes it."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns
