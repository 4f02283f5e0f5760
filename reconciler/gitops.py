"""What git knows about the workspace (the git edge)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def head_revision(root: Path) -> str | None:
    """The commit the workspace is at, with "+dirty" when manifests differ from it; None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    revision = head.stdout.strip()
    status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "manifests", "qrm.yaml"],
                            capture_output=True, text=True, timeout=30, check=False)
    return revision + ("+dirty" if status.stdout.strip() else "")
