"""The desired state: every manifest read, checked and cross-checked (`qrm validate`), cached
while neither the manifests, secrets.enc nor the code that reads them changed.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import replace
from pathlib import Path

from reconciler.core import crosscheck, models, render, secret_scope, state
from reconciler.core.crosscheck import build_desired
from reconciler.core.errors import (
    ManifestError,
    Problem,
    SecretsError,
)
from reconciler.core.plan import digest
from reconciler.core.state import DesiredState
from reconciler.edges import manifest_files, sops, state_cache
from reconciler.flows.workspace import Workspace

log = logging.getLogger(__name__)

SECRETS_FILE = "secrets.enc"


_STATE_CODE = state_cache.code_fingerprint([models, crosscheck, state, manifest_files, sops, secret_scope, render])


def validate(ws: Workspace) -> tuple[DesiredState, list[Problem]]:
    """The desired state and every problem with the manifests (none when the state is usable)."""
    files, secrets_text, key = _inputs(ws)
    secret = state_cache.machine_key()  # signs both caches: a planted cache file is a miss
    cached = state_cache.read(ws.state_cache_file, key, secret)
    if isinstance(cached, DesiredState):
        log.debug("desired state from cache: %d manifest files, %d services, %d secret names",
                  len(files), len(cached.instances), len(cached.secrets))
        return cached, []
    loaded = manifest_files.load_manifests(ws.root, ws.manifests, ws.cache_file, secret)
    secret_problems: list[Problem] = []
    fingerprints: dict[str, str] | None = None
    value_ids: dict[str, str] = {}
    if secrets_text is not None:
        try:
            encrypted = sops.read_encrypted(secrets_text.decode("utf-8", "replace"), SECRETS_FILE)
            fingerprints = encrypted.fingerprints()
            value_ids = encrypted.value_ids()
        except SecretsError as exc:
            secret_problems.append(_secrets_problem(exc))
    desired, problems = build_desired(loaded.documents, fingerprints, secrets_readable=not secret_problems)
    problems = secret_problems + problems
    log.debug("read %d manifest files: %d documents, %d services, %d secret names, %d problems",
              len(loaded.files), len(loaded.documents), len(desired.instances), len(desired.secrets), len(problems))
    desired = replace(desired, digest=digest(sorted(loaded.files.items())), secret_ids=value_ids)
    located = manifest_files.locate(ws.root, loaded.problems + problems)
    if not located and loaded.files == files:
        state_cache.write(ws.state_cache_file, key, desired, secret)
    return desired, located


def state_key(ws: Workspace) -> str:
    """A key that changes whenever the desired state `validate` gives may change: the digests of the manifests
    and secrets.enc, and of the code that reads them (~3 ms for 10,000 services in 10 files)."""
    return _inputs(ws)[2]


def _inputs(ws: Workspace) -> tuple[dict[str, str], bytes | None, str]:
    files = manifest_files.manifest_digests(ws.root, ws.manifests)
    secrets_text = _read_bytes(ws.secrets_file)
    secrets_digest = hashlib.sha256(secrets_text).hexdigest() if secrets_text is not None else "none"
    return files, secrets_text, f"{digest(sorted(files.items()))}-{secrets_digest}-{_STATE_CODE}"


def _secrets_problem(exc: SecretsError) -> Problem:
    """A SecretsError about secrets.enc as a problem of that file: at the line of the entry it names (which
    locating finds), else at the line the message names (once)."""
    message = str(exc)
    if exc.entry is not None:
        message = message.removeprefix(f"{SECRETS_FILE}: ")
        return Problem(SECRETS_FILE, None, None, message.removeprefix(f"{exc.entry}: "), path=(exc.entry,))
    found = re.match(rf"{re.escape(SECRETS_FILE)}(?::(\d+))?: ", message)
    if found is None:
        return Problem(SECRETS_FILE, None, None, message)
    line = int(found.group(1)) if found.group(1) else None
    return Problem(SECRETS_FILE, line, None, message[found.end():])


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def load_desired(ws: Workspace) -> DesiredState:
    desired, problems = validate(ws)
    if problems:
        raise ManifestError(problems)
    return with_policies(ws, desired)


def with_policies(ws: Workspace, desired: DesiredState) -> DesiredState:
    """A validated desired state as apply needs it: with qrm.yaml's policies for generated files."""
    return replace(desired, file_policies={str(k): str(v) for k, v in ws.settings.generated_policy.items()})
