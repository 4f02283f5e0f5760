"""The committed reports as the recorded state: what a fresh clone (a PR check) knows of the last apply.

A workspace that was applied and committed holds reports/allocations.yaml (every allocation) and
reports/state.yaml (the secret fingerprints, and per generated file the sha256 of its masked
text; for .env, which is git-ignored, the masked text itself). Where there is no registry, they
are the record (origin "reports"): `qrm plan` needs neither the registry nor a key nor the hosts.
Where the registry exists but is empty (.qrm/ deleted), they seed it (origin "lockfile") and
apply restores the registry from them, rewriting only the generated files that differ.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.core.generated import keyed_digest, sha256
from reconciler.core.report import LOCKFILE_PATH, STATE_PATH
from reconciler.core.state import RecordedFile, RecordedState
from reconciler.edges import files, machine_key, manifest_files

_PLACEHOLDER = "<secret "


def recorded_from_reports(root: Path, origin: str) -> RecordedState | None:
    """The recorded state the committed reports give (origin "reports" or "lockfile"); None when they hold nothing."""
    services = manifest_files.load_lockfile(root / LOCKFILE_PATH, LOCKFILE_PATH) or []
    reported = manifest_files.load_state_report(root / STATE_PATH, STATE_PATH)
    if not services and (reported is None or not (reported.secrets or reported.files)):
        return None
    recorded_files: dict[str, RecordedFile] = {}
    for path, entry in (reported.files.items() if reported is not None else ()):
        if entry.masked is not None:  # .env: its written bytes hold secret values and were never hashed
            written = entry.sha256 if origin == "reports" else _env_written_sha(root / path, entry.masked)
            recorded_files[path] = RecordedFile(path, entry.masked, written)
        else:  # the other files are written exactly as masked: the file on disk is the recorded text
            recorded_files[path] = RecordedFile(path, files.read_text_or_none(root / path) or "", entry.sha256)
    return RecordedState({s.name: s for s in services}, dict(reported.secrets) if reported is not None else {},
                         recorded_files, origin)


def _env_written_sha(path: Path, masked: str) -> str:
    """The digest of the .env on disk when it is the recorded one as far as can be told without the key
    (every line equal, a line with a secret placeholder equal up to its `=`); else "" (apply rewrites it).
    Keyed with this machine's key (apply restores the registry with it); plain only where there is no
    such key yet, for plan to compare with (apply makes the key before it plans)."""
    text = files.read_text_or_none(path)
    if text is None or not env_matches(text, masked):
        return ""
    key = machine_key.read_key()
    return keyed_digest(text, key) if key is not None else sha256(text)


def env_matches(text: str, masked: str) -> bool:
    """Whether a written .env is the rendering `masked` describes, values of secrets aside."""
    written, expected = text.split("\n"), masked.split("\n")
    if len(written) != len(expected):
        return False
    for have, want in zip(written, expected, strict=True):
        if _PLACEHOLDER in want:
            name = want.split("=", 1)[0]
            if not have.startswith(f"{name}="):
                return False
        elif have != want:
            return False
    return True
