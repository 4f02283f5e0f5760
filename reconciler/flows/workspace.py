"""The paths of one workspace and its settings."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from reconciler.core.errors import QrmError
from reconciler.core.models import Settings
from reconciler.edges import files, git_repo, manifest_files

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
            return expand_environment(self.settings.registry, "qrm.yaml: registry")
        return sqlite_url(self.state_dir / "registry.db")


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file. The path is percent-quoted (SQLAlchemy unquotes it): a folder
    named with `?`, `#` or `%41` would otherwise end the path early or decode to another one, and the
    registry would be opened outside the workspace."""
    return f"sqlite:///{quote(path.as_posix(), safe='/')}"


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:/// URL (as sqlite_url writes it), None for any other URL."""
    prefix = "sqlite:///"
    return Path(unquote(url.split("?", 1)[0][len(prefix):])) if url.startswith(prefix) else None


def expand_environment(text: str, where: str) -> str:
    """${NAME} replaced by the environment variable (quoted for a URL), so qrm.yaml can name a
    password without holding it: registry: postgresql+psycopg://qrm:${QRM_DB_PASSWORD}@db/qrm"""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise QrmError(f"{where}: environment variable {name} is not set")
        return quote(os.environ[name], safe="")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value, text)


def workspace_root(directory: Path) -> Path:
    """The folder of a workspace: one with qrm.yaml or manifests/. Anything else (a typo in -C, /tmp)
    is refused before a command reads or creates anything there."""
    root = directory.resolve()
    if not root.is_dir():
        raise QrmError(f"workspace folder {directory} does not exist")
    if not (root / "qrm.yaml").is_file() and not (root / "manifests").is_dir():
        raise QrmError(f"{directory} is not a qrm workspace (it has neither qrm.yaml nor manifests/): "
                       f"run qrm init {directory} to make one, or name a workspace with -C DIR")
    return root


def check_state_dir(root: Path) -> None:
    """.qrm/ holds the registry, the locks and the caches that every command may write: neither it,
    its cache folder nor anything in them may be a symlink (one would take those writes out of the
    workspace). Checked once when a workspace is opened; the files under reports/ and generated/ are
    checked at each write (edges/files)."""
    state_dir = root / QRM_DIR
    files.check_inside(root, state_dir)
    for folder in (state_dir, state_dir / "cache"):
        if folder.is_dir() and not folder.is_symlink():
            files.check_all_inside(root, sorted(folder.iterdir()))


def open_workspace(directory: Path, registry: str | None = None) -> Workspace:
    root = workspace_root(directory)
    check_state_dir(root)
    settings = manifest_files.load_settings(root)
    # The identity that owns rows in a shared registry: qrm.yaml name, else the git remote, else the folder.
    identity = settings.name or git_repo.remote_identity(root) or root.name
    return Workspace(root=root, settings=settings, registry_override=registry, identity=identity[:200])
