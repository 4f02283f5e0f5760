"""Writing and deleting files: never half a file, never outside the workspace (the filesystem edge).

Every write goes to a temp file beside the target, is fsynced and renamed over it, so a crash or a
full disk leaves the old file (or none), never a torn one; the failure is one line naming the file.
A workspace comes from git, and git stores symlinks: a committed `generated -> /etc` or
`reports/tests -> ~` would take qrm's writes (the plaintext `.env`) and deletes out of the
workspace. So a write or delete under a workspace root refuses any symlink on the way, from the
root's first folder down to the file itself, before it touches anything.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from reconciler.core.errors import QrmError

T = TypeVar("T")


class OutsideWorkspaceError(QrmError):
    """A path qrm would write or delete leads out of the workspace (a symlink on the way, or `..`)."""


class WriteFailedError(QrmError):
    """The file system refused a write (a full disk, a read-only mount); the old file is kept."""


def _printable(text: str) -> str:
    """A path or link target for a one-line message (a name may hold a newline)."""
    return text if text.isprintable() else repr(text)


def shown(path: Path, root: Path | None) -> str:
    """The path as a message names it: relative to the workspace when inside it."""
    if root is not None:
        with contextlib.suppress(ValueError):
            return _printable(path.relative_to(root).as_posix())
    return _printable(str(path))


def check_inside(root: Path, path: Path, action: str = "write", verified: set[Path] | None = None) -> None:
    """Raise OutsideWorkspaceError unless `path` is under `root` with no symlink from root's first
    folder down to `path` itself (a part that does not exist yet is created as a real folder).
    `verified`: folders already found real in this round (check_all_inside), not looked at again."""
    path = path.absolute()  # a path the user named relative to the current folder
    try:
        relative = path.relative_to(root)
    except ValueError:
        raise OutsideWorkspaceError(f"{_printable(str(path))} is outside the workspace {root}; qrm will not "
                                    f"{action} it") from None
    if ".." in relative.parts:
        raise OutsideWorkspaceError(f"{shown(path, root)} leads out of the workspace (..); qrm will not {action} it")
    current = root
    for part in relative.parts:
        current = current / part
        if verified is not None and current in verified:
            continue
        try:
            mode = os.lstat(current).st_mode
        except OSError:
            return  # missing (created as a real folder), or not a folder: the write itself names the problem
        if stat.S_ISLNK(mode):
            target = _printable(os.readlink(current))
            what = "" if current == path else f"; it would {action} {shown(path, root)} through it"
            done = "deleted" if action == "delete" else "written"
            raise OutsideWorkspaceError(
                f"{shown(current, root)} is a symlink (to {target}): qrm writes and deletes only inside the "
                f"workspace, so it refuses to {action} there{what}; replace the symlink with a real "
                f"{'file' if current == path else 'folder'}; nothing was {done}")
        if verified is not None and current != path and stat.S_ISDIR(mode):
            verified.add(current)


def within(root: Path, path: Path) -> Path | None:
    """`root` when a path the user named lies in the workspace (so it is checked as the workspace's
    own files are), None when it lies elsewhere (the user chose that place)."""
    return root if path.absolute().is_relative_to(root) else None


def check_all_inside(root: Path, paths: Iterable[Path], action: str = "write") -> None:
    """check_inside for each path, before the first of them is touched (nothing half-done); each
    folder is looked at once."""
    verified: set[Path] = set()
    for path in paths:
        check_inside(root, path, action, verified)


def write_atomic(path: Path, content: str, mode: int = 0o644, *, root: Path | None) -> bool:
    """Write `content` to `path` via a temp file, fsync and rename; False when it already held it
    with `mode` (a file that held it with another mode only gets its mode set).

    `root`: the workspace the file belongs to (check_inside), or None for a path the user named or
    one outside any workspace (the age key). A crash at any point leaves either the old file or the
    new one, never a torn one; a failing write (a full disk) is a WriteFailedError naming the file.
    """
    return write_bytes_atomic(path, content.encode("utf-8"), mode, root=root)


def write_bytes_atomic(path: Path, data: bytes, mode: int = 0o644, *, root: Path | None) -> bool:
    """write_atomic for bytes."""
    if root is not None:
        path = path.absolute()
        check_inside(root, path)
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            if stat.S_IMODE(os.lstat(path).st_mode) == mode:
                return False
            _failing_write(path, root, lambda: os.chmod(path, mode))
            return True
    _failing_write(path, root, lambda: path.parent.mkdir(parents=True, exist_ok=True))
    fd, tmp = _failing_write(path, root, lambda: tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                                                 dir=path.parent))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        _remove_stale_temps(path, keep=tmp)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_failed(path, root, exc) from None
        raise
    _fsync_dir(path.parent)
    return True


def remove(path: Path, *, root: Path) -> bool:
    """Delete a file of the workspace (check_inside first); False when it was not there."""
    check_inside(root, path, "delete")
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise WriteFailedError(f"cannot delete {shown(path, root)}: {exc.strerror or exc}") from None
    return True


Snapshot = dict[Path, tuple[bytes, int] | None]


def snapshot(paths: Iterable[Path], *, root: Path) -> Snapshot:
    """What each path holds now (bytes and mode; None when missing), for restore() after a failure."""
    out: Snapshot = {}
    for path in paths:
        try:
            out[path] = (path.read_bytes(), stat.S_IMODE(os.lstat(path).st_mode))
        except FileNotFoundError:
            out[path] = None
        except OSError as exc:
            raise WriteFailedError(f"cannot read {shown(path, root)}: {exc.strerror or exc}; nothing was "
                                   "written") from None
    return out


def restore(saved: Snapshot, *, root: Path) -> list[str]:
    """Put each path back as snapshot() found it; one line per path that could not be (best effort:
    the caller is already failing and reports its own error)."""
    problems = []
    for path, before in saved.items():
        try:
            if before is None:
                remove(path, root=root)
            else:
                write_bytes_atomic(path, before[0], before[1], root=root)
        except QrmError as exc:
            problems.append(str(exc))
    return problems


def _failing_write(path: Path, root: Path | None, step: Callable[[], T]) -> T:
    try:
        return step()
    except OSError as exc:
        raise _write_failed(path, root, exc) from None


def _write_failed(path: Path, root: Path | None, exc: OSError) -> WriteFailedError:
    kept = "the old file is kept" if path.exists() else "nothing was written"
    return WriteFailedError(f"cannot write {shown(path, root)}: {exc.strerror or exc}; {kept}")


def remove_stale_temps(path: Path, *, root: Path) -> None:
    """The temp files a writer killed while writing `path` left beside it (the next write_atomic of `path`
    removes them too)."""
    check_inside(root, path, "delete")
    _remove_stale_temps(path, keep="")


def _remove_stale_temps(path: Path, keep: str) -> None:
    """Temp files of this path left by a writer that was killed mid-write (writers hold the workspace lock)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if str(stale) != keep:
            with contextlib.suppress(OSError):
                stale.unlink()


def mode_or_none(path: Path) -> int | None:
    """The permission bits of a file (0o644); None when it is missing or not a regular file."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None


def read_text_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):  # no file there (a folder in its place: writing it fails)
        return None


def read_inside_or_none(root: Path, path: Path, verified: set[Path] | None = None) -> str | None:
    """read_text_or_none of a workspace file; None also when a symlink leads there (check_inside)."""
    try:
        check_inside(root, path, "read", verified)
    except OutsideWorkspaceError:
        return None
    return read_text_or_none(path)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
