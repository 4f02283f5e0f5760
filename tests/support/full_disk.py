"""A real full disk for one workspace: a copy of it on a tiny tmpfs filled to the last byte.

Mounting a tmpfs needs root (CAP_SYS_ADMIN), which the CI container has; where `mount` is refused,
the same commands run with RLIMIT_FSIZE 0 and SIGXFSZ ignored instead, so every write that would
grow a file fails in the kernel with EFBIG (the same failing write(2) as ENOSPC, another errno), and
the test still runs (it never skips). Either way the kernel refuses the write: nothing is mocked.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class FullDisk:
    root: Path  # the workspace on the full disk
    mechanism: str  # "tmpfs" (ENOSPC) or "rlimit" (EFBIG)

    def qrm(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """qrm as a process in the workspace on the full disk."""
        limit = self.mechanism == "rlimit"
        return subprocess.run([sys.executable, "-m", "reconciler", "-C", str(self.root), *args], input=input,
                              capture_output=True, text=True, timeout=60, env={**os.environ},
                              preexec_fn=_no_file_growth if limit else None)


def _no_file_growth() -> None:
    _file_size_limit(0)


def _file_size_limit(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def qrm_with_file_size_limit(root: Path, limit: int, *args: str) -> subprocess.CompletedProcess[str]:
    """qrm as a process whose writes past `limit` bytes of any file fail (EFBIG): a disk that fills
    part-way through a command, at a point the test chooses by the sizes of the files written."""
    return subprocess.run([sys.executable, "-m", "reconciler", "-C", str(root), *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ}, preexec_fn=lambda: _file_size_limit(limit))


def _fill(folder: Path) -> None:
    """Write a filler file until the file system says it is full."""
    with contextlib.suppress(OSError), (folder / ".filler").open("wb") as handle:
        chunk = b"\0" * 4096
        while True:
            handle.write(chunk)
            handle.flush()
    with contextlib.suppress(OSError), (folder / ".filler-small").open("wb") as handle:
        while True:  # the last partial page
            handle.write(b"\0")
            handle.flush()


@contextlib.contextmanager
def full_disk(workspace: Path, scratch: Path) -> Iterator[FullDisk]:
    """The workspace copied onto a full tmpfs mounted in `scratch` (else the workspace itself under
    RLIMIT_FSIZE 0); the mount is removed afterwards."""
    mount_point = scratch / f"full-{uuid.uuid4().hex[:8]}"
    mount_point.mkdir(parents=True)
    size = sum(p.stat().st_size for p in workspace.rglob("*") if p.is_file() and not p.is_symlink())
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size + 512 * 1024}", "tmpfs", str(mount_point)],
                             capture_output=True).returncode == 0
    if not mounted:
        yield FullDisk(workspace, "rlimit")
        return
    try:
        root = mount_point / workspace.name
        shutil.copytree(workspace, root, symlinks=True)
        _fill(mount_point)
        yield FullDisk(root, "tmpfs")
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)
