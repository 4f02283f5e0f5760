"""A git hook that holds a write in flight until the test lets it go: the real way to catch `qrm serve` in
the middle of a commit or a push (tests/server/test_write_interrupts.py).

`Gate.install(repo, hook)` writes the hook: `reference-transaction` in a working clone stops a commit after
its objects are written and before its branch moves (git runs it even with --no-verify, which qrm's commits
use); `pre-receive` in a bare origin stops a push before the origin takes it. An armed gate stops the
next run of its hook once: it touches `reached`, then waits for `open` (at most WAIT seconds, so a test
that fails never leaves git waiting forever).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

WAIT = 120  # seconds the hook waits for `open` before letting the write go on by itself

HOOK = """#!/bin/sh
# Written by tests/support/git_gate.py: holds one git operation until the test opens the gate.
{only}
[ -e "{gate}/armed" ] || exit 0
rm -f "{gate}/armed"
: > "{gate}/reached"
i=0
while [ ! -e "{gate}/open" ] && [ $i -lt {ticks} ]; do sleep 0.05; i=$((i + 1)); done
exit 0
"""


@dataclass
class Gate:
    folder: Path

    @classmethod
    def install(cls, repo: Path, hook: str, folder: Path) -> Gate:
        """The gate in `folder`, as `repo`'s hook `hook` (`repo` a working clone or a bare repository)."""
        folder.mkdir(parents=True, exist_ok=True)
        hooks = repo / "hooks" if (repo / "HEAD").is_file() else repo / ".git" / "hooks"
        hooks.mkdir(parents=True, exist_ok=True)
        # reference-transaction runs three times a commit (prepared, committed); hold it at "prepared" only
        only = '[ "$1" = prepared ] || exit 0' if hook == "reference-transaction" else ""
        script = hooks / hook
        script.write_text(HOOK.format(only=only, gate=folder, ticks=WAIT * 20))
        script.chmod(0o755)
        return cls(folder)

    def arm(self) -> None:
        (self.folder / "armed").touch()

    def wait_until_reached(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not (self.folder / "reached").exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"no git operation reached the gate in {self.folder} within {timeout} s")
            time.sleep(0.02)

    def open(self) -> None:
        (self.folder / "open").touch()
