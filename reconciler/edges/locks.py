"""One apply at a time per workspace: an advisory lock file that names its holder.

flock is released by the kernel when the holder dies, so a killed apply never leaves a
stale lock behind; the pid written inside only serves the "locked by pid N" message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reconciler.core.errors import LockedError, QrmError


@contextmanager
def workspace_lock(path: Path, timeout: float = 0.0, what: str = "apply") -> Iterator[None]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        # .qrm/ is a file, or the workspace is on a read-only file system: one line, not a traceback.
        cause = f"{exc.filename} is a file, not a folder" if isinstance(exc, FileExistsError) else (
            f"{exc.strerror} ({exc.filename})")
        raise QrmError(f"cannot create the {what} lock {path}: {cause}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _holder(path)
                    waited = f" after waiting {timeout:g}s" if timeout else ""
                    raise LockedError(
                        f"workspace is locked by pid {holder} ({path}){waited}; another qrm {what} is running. "
                        "Wait for it, or pass --lock-timeout SECONDS to wait") from None
                time.sleep(0.05)
        # The pid only names the holder in "locked by pid N": on a full disk the lock (flock) holds
        # without it, and the command's own writes report the full disk, naming their file.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # no stale pid for the next reader
    finally:
        os.close(fd)  # closing releases the flock


def _holder(path: Path) -> str:
    # The holder writes its pid just after taking the lock: give it a moment when the file is empty.
    for _ in range(20):
        try:
            return path.read_text().split()[0]
        except (OSError, IndexError):
            time.sleep(0.01)
    return "?"
