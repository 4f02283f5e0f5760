"""`qrm init`, `qrm secrets setup-git` and `qrm schema`: scaffold a workspace in a git repository,
set up a clone for secrets.enc (.gitattributes and the merge driver and textconv in its git config),
and keep schemas/ current."""

from __future__ import annotations

from pathlib import Path

from reconciler.core.errors import QrmError
from reconciler.core.schema import MODELINE, json_schemas
from reconciler.edges import files, git_repo

EXAMPLE_MANIFEST = f"""{MODELINE}
# Every document under manifests/ has a kind: Host, PortRange, Reservation, Service, Project, TestSuite.
kind: Service
name: hello
host: localhost
type: app            # picks the port range: app 8000-8999 unless a PortRange says otherwise
protocol: http
health: {{path: /health, interval: 30s, timeout: 5s}}
tags: [example]
"""


GITIGNORE = """# qrm: local registry, cache and lock (the committed lock file is reports/allocations.yaml)
.qrm/
# generated .env files hold secrets in plaintext
generated/**/.env
# temp files of an interrupted write
.*.tmp
"""


GITATTRIBUTES_LINE = "secrets.enc merge=qrm-secrets diff=qrm-secrets"
# git config is per clone (never committed), so every clone runs `qrm secrets setup-git` once; git runs
# these commands itself, so `qrm` must be on the PATH of whoever runs git.
GIT_CONFIG = {
    "merge.qrm-secrets.name": "qrm secrets.enc merge",
    "merge.qrm-secrets.driver": "qrm secrets merge-driver %O %A %B",
    "diff.qrm-secrets.textconv": "qrm secrets textconv",
}


def setup_git(root: Path, *, create: bool = False) -> list[str]:
    """Make `root`'s clone merge and diff secrets.enc with qrm: `.gitattributes` names the driver, and
    this clone's git config defines it. `create`: `git init` when `root` is in no repository (else that
    is an error). Idempotent; returns what it did, one line each (nothing when all was in place)."""
    done = []
    if create:
        top, made = git_repo.ensure_repository(root)
        if made:
            done.append(f"created a git repository in {top}")
    elif git_repo.toplevel(root) is None:
        raise QrmError(f"{root} is not in a git repository; clone it, or run `git init` first")
    attributes = root / ".gitattributes"
    existing = files.read_text_or_none(attributes) or ""
    if GITATTRIBUTES_LINE not in existing.splitlines():
        files.write_atomic(attributes, existing + ("\n" if existing and not existing.endswith("\n") else "")
                           + GITATTRIBUTES_LINE + "\n", root=root)
        done.append(f"{'updated' if existing else 'created'} {attributes} ({GITATTRIBUTES_LINE})")
    changed = git_repo.set_config(root, GIT_CONFIG)
    if changed:
        done.append(f"configured git's qrm-secrets merge driver and textconv in this clone ({', '.join(changed)})")
    return done


def write_schemas(root: Path) -> list[Path]:
    changed = []
    for name, content in json_schemas().items():
        path = root / "schemas" / name
        if files.write_atomic(path, content, root=root):
            changed.append(path)
    return changed


def stale_schemas(root: Path) -> list[str]:
    """The names of the files under root/schemas/ that are missing or differ from what write_schemas writes."""
    return [name for name, content in json_schemas().items()
            if not (root / "schemas" / name).is_file() or (root / "schemas" / name).read_text() != content]


def init_workspace(directory: Path) -> list[Path]:
    root = directory.resolve()
    manifests = root / "manifests"
    if manifests.is_dir() and any(manifests.iterdir()):
        raise QrmError(f"{manifests} already has manifests; qrm init only scaffolds a new workspace")
    root.mkdir(parents=True, exist_ok=True)
    created = []
    scaffold = {
        root / "qrm.yaml": f"# qrm settings; every key is optional.\nname: {_workspace_name(root)}\n"
                           "# registry: postgresql://qrm@db.example/qrm   # default: sqlite at .qrm/registry.db\n"
                           "# lock_timeout: 0                             # seconds apply waits for another apply\n"
                           "# commit_author: qrm <qrm@example.com>        # author of report commits\n",
        manifests / "services.yaml": EXAMPLE_MANIFEST,
    }
    for path, content in scaffold.items():
        if not path.exists():
            files.write_atomic(path, content, root=root)
            created.append(path)
    gitignore = root / ".gitignore"
    existing = files.read_text_or_none(gitignore) or ""
    if ".qrm/" not in existing:
        files.write_atomic(gitignore, existing + ("\n" if existing and not existing.endswith("\n") else "") + GITIGNORE,
                           root=root)
        created.append(gitignore)
    created.extend(write_schemas(root))
    return created


def _workspace_name(root: Path) -> str:
    import re

    name = re.sub(r"[^a-z0-9._-]+", "-", root.name.lower()).strip("-._")
    return name or "workspace"
