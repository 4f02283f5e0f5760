"""Writing files so that a reader never sees half of one (the filesystem edge)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, content: str, mode: int = 0o644) -> bool:
    """Write `content` to `path` via a temp file, fsync and rename; False when it already held it.

    A crash at any point leaves either the old file or the new one, never a torn one.
    """
    data = content.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        _remove_stale_temps(path, keep=tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return True


def _remove_stale_temps(path: Path, keep: str) -> None:
    """Temp files of this path left by a writer that was killed mid-write (writers hold the workspace lock)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if str(stale) != keep:
            with contextlib.suppress(OSError):
                stale.unlink()


def read_text_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
