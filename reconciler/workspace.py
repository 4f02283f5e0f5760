"""The paths of one workspace and its settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reconciler.models import Settings

QRM_DIR = ".qrm"


@dataclass(frozen=True)
class Workspace:
    root: Path
    settings: Settings
    registry_override: str | None = None

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def state_dir(self) -> Path:
        return self.root / QRM_DIR

    @property
    def cache_file(self) -> Path:
        return self.state_dir / "cache" / "manifests.json"

    @property
    def state_cache_file(self) -> Path:
        return self.state_dir / "cache" / "desired.pickle"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "apply.lock"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.enc"

    @property
    def sops_config(self) -> Path:
        return self.root / ".sops.yaml"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def schemas(self) -> Path:
        return self.root / "schemas"

    # The workspace's identity in a shared registry: qrm.yaml `name`, else its git remote, else the folder.
    identity: str = ""

    @property
    def name(self) -> str:
        return self.settings.name or self.identity or self.root.name

    @property
    def private_registry(self) -> bool:
        """The default .qrm/registry.db: only this workspace uses it, so every row in it is its own."""
        return not (self.registry_override or self.settings.registry)

    def registry_url(self) -> str:
        if self.registry_override:
            return self.registry_override
        if self.settings.registry:
            return self.settings.registry
        return f"sqlite:///{self.state_dir / 'registry.db'}"
