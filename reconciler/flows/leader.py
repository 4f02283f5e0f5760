"""Several replicas of one workspace (`qrm serve --watch` in clones of one origin, one registry): which of
them reconciles. The one holding the registry's leader lease (edges/registry LeaderLease) applies; the
others serve, pull, and try the lease again on each watch interval, so when the leader dies another
takes over within an interval.

A replica asks `check()` before each reconcile step. It keeps the lease for its life once it has it, and
checks on each step that it still holds it (a PostgreSQL session that ended has lost its lock). Every
change of role is one line through `emit`; so is a registry that cannot be reached (once per reason).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.core.errors import QrmError, unexpected_error
from reconciler.flows.workspace import Workspace

if TYPE_CHECKING:
    from reconciler.edges.registry import LeaderLease, Registry

DEBUG_HINT = "--log-level debug shows the traceback"


def replica_name(port: int | None = None) -> str:
    """How this replica names itself to the others: host, pid and (a server's) port."""
    return f"{socket.gethostname()[:30]} pid {os.getpid()}" + (f" port {port}" if port else "")


@dataclass(frozen=True)
class LeaderState:
    leader: bool
    holder: str | None  # who leads (this replica's name when it does), None when nobody or not known
    lease: str  # what the lease is: the advisory lock and its database, or the lock file


class Leadership:
    """This replica's role among the replicas of `workspace` (thread-safe: the watch loop and the hooks'
    worker both ask)."""

    def __init__(self, workspace: Callable[[], Workspace], emit: Callable[[str], None], name: str) -> None:
        self.workspace = workspace
        self.emit = emit
        self.name = name
        self._lock = threading.Lock()
        self._registry: Registry | None = None
        self._lease: LeaderLease | None = None
        self._leading = False
        self._said: str | None = None  # the last role or problem line, so each is said once

    def check(self) -> bool:
        """Whether this replica leads now: it still holds the lease, or it has just taken it."""
        with self._lock:
            try:
                lease = self._open()
                if self._leading and lease.still_held():
                    return True
                if self._leading:
                    self._leading = False
                    self._say(f"leader lease lost ({lease.describe()}): this replica stops reconciling and "
                              "tries again on each interval")
                self._leading = lease.try_acquire()
                if self._leading:
                    self._say(f"leader: this replica ({self.name}) holds the leader lease ({lease.describe()}) "
                              "and reconciles")
                else:
                    holder = lease.holder()
                    self._say(f"follower: {('replica ' + holder) if holder else 'another replica'} holds the "
                              f"leader lease ({lease.describe()}); this one serves and pulls, and does not apply")
            except Exception as exc:  # a registry that cannot be reached: no lease, retried on the next ask
                self._leading = False
                self._forget()
                reason = str(exc) if isinstance(exc, QrmError) else unexpected_error(exc, DEBUG_HINT)
                self._say(f"follower: the leader lease cannot be taken: {reason}; retrying on the next interval")
            return self._leading

    def state(self) -> LeaderState:
        """This replica's role as the last check left it, and who leads (asked of the registry)."""
        with self._lock:
            try:
                lease = self._open()
            except Exception as exc:
                reason = str(exc) if isinstance(exc, QrmError) else unexpected_error(exc, DEBUG_HINT)
                return LeaderState(False, None, f"cannot be opened: {reason}")
            try:
                holder = lease.holder()
            except Exception:  # the registry is away: who leads is not known from here
                holder = None
            return LeaderState(self._leading, holder, lease.describe())

    def close(self) -> None:
        """Let go of the lease (a replica that stops cleanly hands over at once)."""
        with self._lock:
            self._leading = False
            self._forget()

    def _open(self) -> LeaderLease:
        if self._lease is None:
            from reconciler.flows.recorded import open_registry

            ws = self.workspace()
            registry = open_registry(ws, create=True)
            if registry is None:  # create=True always opens one
                raise QrmError(f"no registry at {ws.registry_url()}")
            self._registry = registry
            self._lease = registry.leader_lease(ws.name, self.name)
        return self._lease

    def _forget(self) -> None:
        if self._lease is not None:
            self._lease.release()
        if self._registry is not None:
            self._registry.close()
        self._lease = self._registry = None

    def _say(self, line: str) -> None:
        if line != self._said:
            self._said = line
            self.emit(line)
