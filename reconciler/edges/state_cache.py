"""A cache of the validated desired state, keyed by the manifests' content (the pickle edge).

Reading 10,000 manifests means parsing YAML, validating with pydantic and cross-checking,
about half a second even from the parsed-document cache; an unchanged workspace (every
`plan` in a loop, `watch`, PR checks re-run) can skip all of it. The key covers every
manifest's sha256 plus the code that turns manifests into state, so a change to either
misses. The file lives in .qrm/ (private to the workspace, written only by qrm), and a
file that cannot be read is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

_FORMAT = b"qrm-state-cache-1\n"


def code_fingerprint(modules: list[Any]) -> str:
    """Changes when the source of any of the given modules does."""
    parts = []
    for module in modules:
        stat = os.stat(module.__file__)
        parts.append(f"{module.__name__}:{stat.st_mtime_ns}:{stat.st_size}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def read(path: Path, key: str) -> Any | None:
    try:
        with path.open("rb") as handle:
            if handle.readline() != _FORMAT or handle.readline().strip().decode() != key:
                return None
            return pickle.load(handle)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, TypeError):
        return None


def write(path: Path, key: str, value: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as handle:
            handle.write(_FORMAT)
            handle.write(key.encode() + b"\n")
            pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only checkout works without the cache
