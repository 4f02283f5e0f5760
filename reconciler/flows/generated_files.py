"""Apply's part for generated files: render them with secret values and write them.

Plan compares masked renderings (no key needed); apply renders the same files with the real
values, which needs the age key only when a file that must be written holds a secret. Every
value is read before anything is written, so a missing key changes nothing. `.env` is written
with mode 0600 (generated.file_mode); files of a removed project or environment are deleted.

Every path is checked before the first write (no symlink may lead a write or a delete out of the
workspace: files.check_inside), and what the files held before is kept (an AppliedFiles) so that
apply can put them back when a later step fails (a write here, or the registry's commit).

What is recorded of a written `.env` is its HMAC with this machine's key (edges/machine_key), never a
plain hash: the registry may be shared. A file on disk is compared in the scheme of its record (a plain
sha256 from an older qrm, this machine's key, or, for another machine's key, as far as can be told
without it); `rekeyed` replaces plain records of `.env` files with keyed ones (apply's migration).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core import generated, render
from reconciler.core.changes import Change
from reconciler.core.errors import SecretsError
from reconciler.core.state import DesiredState, RecordedFile, RecordedService
from reconciler.edges import files, machine_key, sops
from reconciler.flows.committed_reports import env_matches

log = logging.getLogger(__name__)


@dataclass
class AppliedFiles:
    """What apply_files did: paths removed, records of paths written, and what they held before."""

    removed: list[str] = field(default_factory=list)
    written: list[RecordedFile] = field(default_factory=list)
    before: files.Snapshot = field(default_factory=dict)

    def undo(self, root: Path) -> None:
        """Put every file back as it was before apply_files (apply failed after writing them)."""
        problems = files.restore(self.before, root=root)
        for problem in problems:
            log.error("could not restore a generated file after the failed apply: %s", problem)
        if self.before and not problems:
            log.info("the failed apply put %d generated file(s) back as they were", len(self.before))


def _values_for(desired: DesiredState, secrets_file: Path, keys: set[str]) -> dict[str, str]:
    if not keys:
        return {}
    encrypted = sops.read_file(secrets_file, "secrets.enc")
    if encrypted is None:
        raise SecretsError("secrets.enc does not exist, but generated files need " + ", ".join(sorted(keys)))
    try:
        plain = sops.decrypt(encrypted, sops.load_identities())
    except SecretsError as exc:
        raise SecretsError(f"{exc} (apply needs the key to write generated files with secrets; nothing was "
                           "written)") from None
    return {key: plain[key] for key in keys if key in plain}


def apply_files(
    root: Path,
    desired: DesiredState,
    services: Mapping[str, RecordedService],
    changes: Iterable[Change],
    secrets_file: Path,
) -> AppliedFiles:
    """Write or delete the generated files the plan changes. A failing write puts back what was written
    before it and raises; AppliedFiles.undo does the same after a later failure."""
    # Only generated files: the lock file's own repair (file.reports/…) is written by apply itself.
    file_changes = [c for c in changes if c.address.startswith(generated.GENERATED_PREFIX)]
    if not file_changes:
        return AppliedFiles()
    # Only the environments written: under `--host`, another host's new services have no port yet.
    paths = [c.address.removeprefix(generated.FILE_PREFIX) for c in file_changes if c.action != "delete"]
    environments_written = {(path.split("/")[1], path.split("/")[2]) for path in paths}
    wanted = generated.desired_files(desired, services, only=environments_written)
    to_write = [wanted[path] for path in paths]
    environments = sorted({(f.project, f.environment) for f in to_write})
    references = {env: render.secret_references(desired, *env) for env in environments}
    # Only .env holds secret values (the other files refer to its variables).
    needed = {key for f in to_write if f.name == ".env" for key in references[(f.project, f.environment)].values()}
    values = _values_for(desired, secrets_file, needed)
    digest_key = machine_key.ensure_key()  # before anything is written, as the values are

    rendered: dict[tuple[str, str], dict[str, str]] = {}
    for project, environment in environments:
        secret_values = {
            var: render.SecretValue(key, desired.secrets.get(key, ""), values.get(key))
            for var, key in references[(project, environment)].items()
        }
        rendered[(project, environment)] = render.render_environment(
            desired, project, environment, generated.environment_ports(services, project, environment),
            secret_values)

    deleted = [c.address.removeprefix(generated.FILE_PREFIX) for c in file_changes if c.action == "delete"]
    files.check_all_inside(root, [root / path for path in deleted], "delete")
    files.check_all_inside(root, [root / f.path for f in to_write])
    done = AppliedFiles(before=files.snapshot([root / path for path in deleted] + [root / f.path for f in to_write],
                                              root=root))
    try:
        for path in deleted:
            files.remove(root / path, root=root)
            done.removed.append(path)
        for wanted_file in to_write:
            text = rendered[(wanted_file.project, wanted_file.environment)][wanted_file.name]
            files.write_atomic(root / wanted_file.path, text, mode=generated.file_mode(wanted_file.name), root=root)
            done.written.append(RecordedFile(wanted_file.path, wanted_file.masked,
                                             generated.written_digest(wanted_file.path, text, digest_key)))
    except BaseException:
        done.undo(root)
        raise
    return done


EDITED = "edited"  # the digest of a file that differs from its record and that this machine cannot key


def disk_digests(root: Path, recorded: Mapping[str, RecordedFile], key: bytes | None) -> dict[str, str | None]:
    """Each recorded file as it is now, as a digest in its record's scheme: equal to the record when the
    file is as apply wrote it; None when it is missing. A file that differs never gets a plain hash here
    (plan shows it): a keyed one, else EDITED."""
    out: dict[str, str | None] = {}
    verified: set[Path] = set()
    for path, record in recorded.items():
        # None also when reached through a symlink: plan never reads, and never diffs, a file outside the
        # workspace (apply then refuses the symlink, naming it).
        text = files.read_inside_or_none(root, root / path, verified)
        out[path] = None if text is None else _digest_like(text, record, key)
    return out


def _digest_like(text: str, record: RecordedFile, key: bytes | None) -> str:
    written = record.written_sha
    if generated.keyed_with(written, key):
        assert key is not None
        return generated.keyed_digest(text, key)
    if generated.is_keyed(written):
        # Another machine's key (a shared registry), or this machine's is gone: compare what can be
        # compared without it (every line but the values of secrets).
        same = env_matches(text, record.masked) if generated.holds_secrets(record.path) else text == record.masked
    else:  # a plain sha256 (a file without secrets, or a .env recorded by an older qrm)
        same = generated.sha256(text) == written
    if same:
        return written
    return generated.keyed_digest(text, key) if key is not None else EDITED


def rekeyed(root: Path, recorded: Mapping[str, RecordedFile], skip: Iterable[str]) -> list[RecordedFile]:
    """Keyed records for the .env files recorded with a plain sha256 (by an older qrm), but for `skip`
    (the files this apply writes or deletes). A file as recorded gets the digest of its text; one that
    differs (a hand edit that policy `warn` keeps) gets the digest of its masked text, which is not
    what is on disk, so it stays a hand edit."""
    skipped = set(skip)
    paths = [p for p in generated.unkeyed_secret_files(recorded) if p not in skipped]
    if not paths:
        return []
    key = machine_key.ensure_key()
    out = []
    for path in paths:
        record = recorded[path]
        text = files.read_inside_or_none(root, root / path)
        as_written = text if text is not None and generated.sha256(text) == record.written_sha else record.masked
        out.append(RecordedFile(path, record.masked, generated.keyed_digest(as_written, key)))
    return out


def disk_modes(root: Path, paths: Iterable[str]) -> dict[str, int | None]:
    """The permission bits of each file as it is now; None when it is missing."""
    return {path: files.mode_or_none(root / path) for path in paths}


def edited_texts(root: Path, recorded: Mapping[str, RecordedFile], shas: Mapping[str, str | None]) -> dict[str, str]:
    """The text of each recorded file that is on disk but not as apply wrote it (a hand edit)."""
    out: dict[str, str] = {}
    for path, record in recorded.items():
        if shas.get(path) not in (None, record.written_sha):
            text = files.read_inside_or_none(root, root / path)
            if text is not None:
                out[path] = text
    return out
