"""File-change events for `qrm watch` (the watchfiles edge).

watchfiles (inotify through Rust's notify) reports a write within a few milliseconds
(PERF-NOTES: 2.5 ms with debounce=50, step=1; polling missed 8 of 20 writes, so it is not used).
Which paths matter is the caller's decision: `relevant(path)` gets each changed path relative to
the root and says whether it should wake the watcher.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

# Folders whose events never matter and that can hold many files (git's own writes included).
IGNORED_DIRS = frozenset({".git", ".qrm", ".venv", "node_modules", "__pycache__", ".mypy_cache",
                          ".pytest_cache", ".hypothesis", ".ruff_cache"})


def changes(root: Path, relevant: Callable[[str], bool], stop: threading.Event, *, tick_ms: int = 1000,
            debounce_ms: int = 100) -> Iterator[list[str]]:
    """Yield the sorted relevant paths changed since the last yield, or [] at least every `tick_ms`
    so the caller can do timed work; ends when `stop` is set. Changes made while the caller works
    between two yields are kept by the watcher and come with the next one."""
    from watchfiles import watch

    root = root.resolve()

    def wanted(_change: object, path: str) -> bool:
        try:
            relative = Path(path).relative_to(root)
        except ValueError:
            return False
        if any(part in IGNORED_DIRS for part in relative.parts):
            return False
        return relevant(relative.as_posix())

    for batch in watch(root, watch_filter=wanted, debounce=debounce_ms, step=10, stop_event=stop,
                       rust_timeout=tick_ms, yield_on_timeout=True, raise_interrupt=False):
        if stop.is_set():
            return
        yield sorted({Path(path).relative_to(root).as_posix() for _, path in batch})
