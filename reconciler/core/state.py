"""Desired, recorded and live state: the three inputs of make_plan, as plain immutable values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler.core.models import Alert, Host, Notifier, PortRange, Project, Reservation, TestSuite


@dataclass(frozen=True)
class SourceRef:
    """Where a manifest came from: a file (relative to the workspace) and its document index."""

    file: str
    document: int = 0


def instance_name(project: str, environment: str, service: str) -> str:
    """The name of a project service's instance in one environment: quantumblog-prod-web."""
    return f"{project}-{environment}-{service}"


@dataclass(frozen=True)
class ServiceInstance:
    """One service that must have a port: a standalone Service, or a project service in one environment."""

    name: str
    host: str
    type: str
    protocol: str
    pinned: int | None = None
    preferred: int | None = None
    health: dict[str, Any] | None = None  # the HealthCheck as plain data, as the registry keeps it
    tags: tuple[str, ...] = ()  # sorted
    project: str | None = None
    environment: str | None = None
    source: SourceRef = SourceRef("")
    # Field path of the pin inside its document, for error messages.
    pin_path: tuple[str | int, ...] = ("port",)


@dataclass(frozen=True)
class DesiredState:
    hosts: dict[str, Host]
    ranges: tuple[PortRange, ...]
    reservations: tuple[Reservation, ...]
    instances: dict[str, ServiceInstance]
    projects: dict[str, Project] = field(default_factory=dict)
    suites: dict[str, TestSuite] = field(default_factory=dict)
    notifiers: dict[str, Notifier] = field(default_factory=dict)
    alerts: dict[str, Alert] = field(default_factory=dict)
    sources: dict[str, SourceRef] = field(default_factory=dict)
    # Fingerprint of the manifests this state came from (set by the loader from file hashes);
    # a saved plan records it to tell when the manifests changed under it.
    digest: str = ""
    # secrets.enc names with a fingerprint of each ciphertext (read without a key)
    secrets: dict[str, str] = field(default_factory=dict)
    # secrets.enc names with an id of each value (a digest of its IV: a new value gets a new one, a key
    # rotation keeps it), so plan tells a rotation from a value change without a key
    secret_ids: dict[str, str] = field(default_factory=dict)
    # qrm.yaml's policy for hand-edited generated files, by file name or "*": overwrite | warn
    file_policies: dict[str, str] = field(default_factory=dict)
    _ranges_by_key: dict[tuple[str, str], list[PortRange]] = field(
        default_factory=dict, init=False, compare=False, repr=False)

    def host_names(self) -> list[str]:
        return sorted(self.hosts)

    def reserved_ports(self) -> dict[str, dict[int, str]]:
        """host -> port -> reason."""
        reserved: dict[str, dict[int, str]] = {}
        for reservation in self.reservations:
            ports = reserved.setdefault(reservation.host, {})
            for port in reservation.port_numbers():
                ports.setdefault(port, reservation.reason)
        return reserved

    def ranges_for(self, host: str, port_type: str) -> list[PortRange]:
        """The ranges of a type on a host: host-specific ones win over those for every host (memoized)."""
        key = (host, port_type)
        found = self._ranges_by_key.get(key)
        if found is None:
            own = [r for r in self.ranges if r.port_type == port_type and r.host == host]
            if not own:
                own = [r for r in self.ranges if r.port_type == port_type and r.host == "*"]
            found = self._ranges_by_key[key] = sorted(own, key=lambda r: r.start)
        return found

    def port_types(self) -> list[str]:
        return sorted({r.port_type for r in self.ranges})


@dataclass(frozen=True)
class RecordedService:
    """A service as the registry (or, in a fresh clone, the committed lock file) has it."""

    name: str
    host: str
    port: int
    type: str
    protocol: str = "http"
    health: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    project: str | None = None
    environment: str | None = None
    pinned: bool = False


@dataclass(frozen=True)
class RecordedFile:
    """A generated file as the last apply wrote it."""

    path: str  # relative to the workspace: generated/<project>/<env>/<file>
    masked: str  # the rendering with secret placeholders (what plan compares and diffs)
    written_sha: str  # sha256 of the bytes apply wrote (with secret values), to tell hand edits


@dataclass(frozen=True)
class RecordedState:
    services: dict[str, RecordedService]
    secrets: dict[str, str] = field(default_factory=dict)  # name -> ciphertext fingerprint at the last apply
    files: dict[str, RecordedFile] = field(default_factory=dict)  # generated files by path
    # Where it was read: "registry" normally; "lockfile" when the registry exists but is empty and the
    # committed reports (allocations.yaml, state.yaml) seeded it (apply restores it from them); "reports"
    # when there is no registry at all (a fresh clone, a PR check): the committed reports are the record.
    origin: str = "registry"
    # Other workspaces' allocations in a shared registry: never planned, released or pruned here, but
    # their ports are taken and their service names are theirs.
    foreign: tuple[ForeignAllocation, ...] = ()


@dataclass(frozen=True)
class ForeignAllocation:
    host: str
    port: int
    service: str
    owner: str
    type: str = ""


@dataclass(frozen=True)
class ReportedFile:
    """A generated file as reports/state.yaml has it: never a secret value, nor a hash of one."""

    path: str
    sha256: str  # of the masked text (for files other than .env, that is also the text apply wrote)
    masked: str | None = None  # .env only: the masked text itself (placeholders), so a fresh clone can diff it


@dataclass(frozen=True)
class ReportedState:
    """reports/state.yaml: the secrets and generated files of the last apply, as committed."""

    secrets: dict[str, str] = field(default_factory=dict)  # name -> ciphertext fingerprint
    files: dict[str, ReportedFile] = field(default_factory=dict)  # by path


@dataclass(frozen=True)
class LiveState:
    """What the machines say right now: listening ports per host, the kernel's ephemeral range."""

    listeners: dict[str, frozenset[int]] = field(default_factory=dict)
    ephemeral: tuple[int, int] | None = None
    refreshed: bool = True
    # The file that reports/allocations.yaml should hold vs what it holds (None when absent).
    lockfile_text: str | None = None
    # sha256 of each recorded generated file as it is on disk now (None when missing).
    file_shas: dict[str, str | None] = field(default_factory=dict)
    # The text of each generated file whose sha256 differs from what apply wrote (a hand edit).
    file_texts: dict[str, str] = field(default_factory=dict)
    # The permission bits of each recorded generated file on disk now (None when missing).
    file_modes: dict[str, int | None] = field(default_factory=dict)
    # What reports/state.yaml holds now (None when absent).
    state_text: str | None = None


def service_to_dict(service: RecordedService) -> dict[str, Any]:
    """The stable dictionary form of a service: plan JSON, saved plans and the lock file use it."""
    return {
        "name": service.name,
        "host": service.host,
        "port": service.port,
        "type": service.type,
        "protocol": service.protocol,
        "pinned": service.pinned,
        "health": service.health,  # shared, sorted by key where it is made; never mutated
        "tags": list(service.tags),
        "project": service.project,
        "environment": service.environment,
    }


def service_from_dict(data: dict[str, Any]) -> RecordedService:
    return RecordedService(
        name=str(data["name"]),
        host=str(data["host"]),
        port=int(data["port"]),
        type=str(data["type"]),
        protocol=str(data.get("protocol", "http")),
        pinned=bool(data.get("pinned", False)),
        health=data.get("health"),
        tags=tuple(data.get("tags") or ()),
        project=data.get("project"),
        environment=data.get("environment"),
    )
