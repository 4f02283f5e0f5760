"""The caches of .qrm/cache and the key that makes them trustworthy (the pickle edge).

Reading 10,000 manifests means parsing YAML, validating with pydantic and cross-checking,
about half a second even from the parsed-document cache; an unchanged workspace (every
`plan` in a loop, `watch`, PR checks re-run) can skip all of it with a pickle of the validated
desired state. The key covers every manifest's sha256 plus the code that turns manifests into
state, so a change to either misses.

A file in the workspace is not proof that qrm wrote it (a tarball, a shared folder, a restored CI
cache can carry .qrm/), and unpickling runs whatever the pickle says. So every cache file is signed
with an HMAC-SHA256 (core/signing) under a per-user key kept outside the workspace ($XDG_CACHE_HOME/qrm/cache-key,
else ~/.cache/qrm/cache-key, made on first use, 0600 in a 0700 folder), and nothing is unpickled or
believed before its signature verifies. Without a usable key there is no cache: slower, never wrong.
A file that cannot be read or does not verify is a miss, never an error.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import pickle
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.core.signing import sign, verified

log = logging.getLogger(__name__)

_FORMAT = b"qrm-state-cache-2\n"
_KEY_BYTES = 32


def code_fingerprint(modules: list[Any]) -> str:
    """Changes when the source of any of the given modules does."""
    parts = []
    for module in modules:
        st = os.stat(module.__file__)
        parts.append(f"{module.__name__}:{st.st_mtime_ns}:{st.st_size}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def key_file(env: Mapping[str, str] | None = None) -> Path:
    """Where the signing key lives: the user's cache folder, never a workspace."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "qrm" / "cache-key"


def machine_key(env: Mapping[str, str] | None = None) -> bytes | None:
    """This user's cache signing key, made on first use; None when it cannot be kept safely (no
    writable cache folder, or a key file that others could have written): then nothing is cached."""
    return _machine_key(key_file(env))


@functools.cache
def _machine_key(path: Path) -> bytes | None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            _create_key(path)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd) as handle:
            info = os.fstat(handle.fileno())
            text = handle.read().strip()
    except (OSError, ValueError) as exc:
        log.debug("no cache signing key at %s (%s): caches are off", path, exc)
        return None
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        log.debug("cache signing key %s is not this user's alone: caches are off", path)
        return None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < _KEY_BYTES:
        log.debug("cache signing key %s is damaged: caches are off (delete it to make a new one)", path)
        return None
    return key


def _create_key(path: Path) -> None:
    """A new key, whole or not at all: written to a private temporary file, then linked into place
    (link fails when another process made the key first; then that key is used)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(os.urandom(_KEY_BYTES).hex() + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read(path: Path, key: str, secret: bytes | None) -> Any | None:
    """The cached value for `key`, when the file holds it and this user's key signed it."""
    if secret is None:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head, sep, rest = data.partition(b"\n")
    if not sep or head + b"\n" != _FORMAT:
        return None
    stored_key, sep, rest = rest.partition(b"\n")
    signature, sep2, payload = rest.partition(b"\n")
    if not (sep and sep2) or stored_key != key.encode() or not verified(secret, signature, stored_key, payload):
        return None
    try:
        return pickle.loads(payload)  # signed by this user's key: qrm wrote it, on this machine
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, TypeError):
        return None


def write(path: Path, key: str, value: Any, secret: bytes | None) -> None:
    if secret is None:
        return
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    encoded = key.encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(_FORMAT + encoded + b"\n" + sign(secret, encoded, payload) + b"\n" + payload)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only checkout works without the cache
