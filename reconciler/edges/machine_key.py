"""This machine's secret key for qrm: 32 random bytes kept outside every workspace.

The key lives in `$XDG_CONFIG_HOME/qrm/machine.key` (`~/.config/qrm/machine.key`), mode 0600 in a
0700 folder, written once as 64 hex digits. It keys what qrm records about files that hold secrets
(the registry's hash of each written `.env`, see core/generated.py), so that a reader of the registry,
which a shared PostgreSQL registry makes every workspace, cannot test password guesses against it. It
is outside the workspace because the workspace is what other people write: a key a PR could commit
(`git add -f .qrm/…`) would be a key the attacker knows.

Reading never creates the key (plan and other read-only commands); `ensure_key` (apply) creates it
when there is none, atomically: of two processes creating it at once, one writes it and both use it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from reconciler.core.errors import QrmError

KEY_BYTES = 32
_KEY_TEXT = re.compile(r"[0-9a-f]{64}\n?")


def key_file(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "qrm" / "machine.key"


def read_key(env: Mapping[str, str] | None = None) -> bytes | None:
    """The machine key; None when this machine has none yet."""
    path = key_file(env)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise QrmError(f"cannot read qrm's machine key {path}: {getattr(exc, 'strerror', None) or 'not text'}"
                       ) from None
    if not _KEY_TEXT.fullmatch(text):
        raise QrmError(f"{path}: not a qrm machine key (64 hex digits); move it away: qrm apply makes a new one")
    return bytes.fromhex(text.strip())


def ensure_key(env: Mapping[str, str] | None = None) -> bytes:
    """The machine key, created when there is none."""
    found = read_key(env)
    if found is not None:
        return found
    path = key_file(env)
    key = os.urandom(KEY_BYTES)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(key.hex() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # never replaces a key another process wrote meanwhile
            os.link(temp, path)
    except OSError as exc:
        raise QrmError(f"cannot write qrm's machine key {path}: {exc.strerror}; nothing was written") from None
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()
    found = read_key(env)
    assert found is not None  # written or linked above
    return found
