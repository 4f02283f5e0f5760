"""A running `qrm watch` as a user runs it (a real process, its output collected line by line), and
what the watch tests look at: the repositories' log and files. Waits are generous deadlines; nothing
asserts how fast anything happened."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.git_repos import git

DEADLINE = 40.0


class Watcher:
    """A running `qrm watch`, its output collected line by line."""

    def __init__(self, root: Path, *args: str) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen([sys.executable, "-m", "reconciler", "-C", str(root), "watch", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ})
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=DEADLINE)
        finally:
            self.reader.join(timeout=5)


def wait_for(what: str, condition: Callable[[], bool], watcher: Watcher, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        if watcher.process.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; watch said:\n{watcher.output}")


def shown(repo: Path, path: str, revision: str = "main") -> str:
    done = subprocess.run(["git", "-C", str(repo), "show", f"{revision}:{path}"], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


def head(repo: Path, revision: str = "main") -> str:
    return git(repo, "rev-parse", revision).strip()


def is_report(repo: Path, revision: str = "main") -> bool:
    return "Qrm-Report: true" in git(repo, "log", "-1", "--format=%B", revision)
