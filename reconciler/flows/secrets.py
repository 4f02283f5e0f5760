"""Use cases of `qrm secrets`: set, get, list, rm, rotate, updatekeys, merge-driver, textconv.

Every write re-reads secrets.enc under a lock, decrypts it (the MAC is checked first), and
writes the whole file atomically; values that did not change keep their ciphertext. A value
never reaches an exception, a log line or any output except `get` (and textconv, which git
asks for explicitly).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.core import secret_scope
from reconciler.core.errors import SecretsError
from reconciler.edges import files, sops
from reconciler.edges.locks import workspace_lock
from reconciler.flows.workspace import Workspace

LABEL = "secrets.enc"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SecretInfo:
    key: str
    name: str
    scope: str
    changed_at: str | None


def _scoped(name: str, project: str | None, environment: str | None) -> str:
    try:
        return secret_scope.scoped_name(name, project, environment)
    except ValueError as exc:
        raise SecretsError(f"{LABEL}: {exc}") from None


def _open(ws: Workspace) -> tuple[sops.EncryptedSecrets | None, dict[str, str], bytes | None, list[Any]]:
    """The file as read, its plaintext, its data key and the identities (all empty for a new file)."""
    current = sops.read_file(ws.secrets_file, LABEL)
    if current is None:
        return None, {}, None, []
    try:
        identities = sops.load_identities()
    except SecretsError as exc:  # no key, or a key file that is missing or damaged: say which file it was for
        raise SecretsError(f"{LABEL}: {exc}") from None
    log.debug("secrets.enc: %d name(s); %d age identit(ies) loaded", len(current.tree), len(identities))
    current.flat_values()  # an entry qrm refuses is named before the MAC check could only say "tampered"
    data_key = sops.unwrap_data_key(current, identities)
    plain = sops.decrypt_tree(current, data_key)
    plain.pop(sops.QRM_META_KEY, None)
    return current, {k: sops.plain_text(v) for k, v in plain.items()}, data_key, identities


def _write(ws: Workspace, values: Mapping[str, str], *, current: sops.EncryptedSecrets | None,
           previous_plain: Mapping[str, str], data_key: bytes | None, rotated: bool = False) -> None:
    """Write `values`. The data key and its wrapping stay (recipients change only by updatekeys);
    a new file, or a rotation, gets a new data key wrapped for the recipients in .sops.yaml."""
    if current is not None and data_key is not None and not rotated:
        key, wrapped = data_key, list(current.metadata.get("age") or [])
    else:
        key = sops.new_data_key()
        wrapped = sops.wrap_data_key(key, sops.recipients_from_config(ws.root))
    keep = current is not None and key == data_key
    text = sops.render(
        values,
        data_key=key,
        wrapped=wrapped,
        previous=current if keep else None,
        previous_plain=previous_plain if current is not None else None,
        changed_at=current.changed_at() if current is not None else None,
        rotated_at=sops.utc_now() if rotated else current.rotated_at() if current is not None else None,
        keep_ivs=current.ivs() if rotated and current is not None else None,
    )
    files.write_atomic(ws.secrets_file, text, root=ws.root)
    log.debug("wrote secrets.enc: %d secret(s), data key %s", len(values), "kept" if keep else "new")


def set_secret(ws: Workspace, name: str, project: str | None, environment: str | None, value: str) -> str:
    key = _scoped(name, project, environment)
    if value == "":  # an empty pipe or file, or Enter at the prompt: never what a password should be
        raise SecretsError(f"the value of {key} is empty (an empty stdin, or only a newline); an empty secret is "
                           "refused; secrets.enc was not changed")
    check_scope(ws, project, environment)
    with workspace_lock(ws.state_dir / "sops.lock", timeout=30, what="secrets write"):
        current, plain, data_key, _ = _open(ws)
        _write(ws, {**plain, key: value}, current=current, previous_plain=plain, data_key=data_key)
    return key


def plaintext_values(ws: Workspace) -> list[str] | None:
    """Every secret value, to make sure none is about to be committed; None when there is no key
    (then only the file names guard commits: .env files are never committed)."""
    try:
        _, plain, _, _ = _open(ws)
    except SecretsError:
        return None
    return sorted(set(plain.values()))


def get_secret(ws: Workspace, name: str, project: str | None, environment: str | None) -> str:
    key = _scoped(name, project, environment)
    current, plain, _, _ = _open(ws)
    if current is None:
        raise SecretsError(f"{LABEL} does not exist; set a secret first with: qrm secrets set {name}")
    if key not in plain:
        raise SecretsError(f"{LABEL} has no secret {key}")
    return plain[key]


def list_secrets(ws: Workspace) -> tuple[list[SecretInfo], str | None]:
    """Names, scopes and when each was last set; no key needed, no value shown."""
    current = sops.read_file(ws.secrets_file, LABEL)
    if current is None:
        return [], None
    changed = current.changed_at()
    infos = []
    for key in sorted(current.flat_values()):
        _, _, name = secret_scope.split_scoped(key)
        infos.append(SecretInfo(key, name, secret_scope.scope_label(key), changed.get(key)))
    return infos, current.rotated_at()


def remove_secret(ws: Workspace, name: str, project: str | None, environment: str | None) -> str:
    return remove_checked(ws, name, project, environment).key


def rotate(ws: Workspace) -> int:
    """A new data key for the recipients in .sops.yaml; every value re-encrypted."""
    with workspace_lock(ws.state_dir / "sops.lock", timeout=30, what="secrets write"):
        current, plain, _, _ = _open(ws)
        if current is None:
            raise SecretsError(f"{LABEL} does not exist; nothing to rotate")
        _write(ws, plain, current=current, previous_plain=plain, data_key=None, rotated=True)
    return len(plain)


def update_keys(ws: Workspace) -> list[str]:
    """Re-wrap the same data key for the recipients now in .sops.yaml; every ciphertext is kept."""
    with workspace_lock(ws.state_dir / "sops.lock", timeout=30, what="secrets write"):
        current, plain, data_key, _ = _open(ws)
        if current is None or data_key is None:
            raise SecretsError(f"{LABEL} does not exist; nothing to re-wrap")
        recipients = sops.recipients_from_config(ws.root)
        text = sops.render(plain, data_key=data_key, wrapped=sops.wrap_data_key(data_key, recipients),
                              previous=current, previous_plain=plain, changed_at=current.changed_at(),
                              rotated_at=current.rotated_at())
        files.write_atomic(ws.secrets_file, text, root=ws.root)
    return recipients


# --- guardrails: declared scopes, references, resolution and readers -----------------------------------

def declared_scopes(ws: Workspace) -> tuple[dict[str, list[str]], int]:
    """Project -> its environments, as the manifests declare them, and how many problems the manifests
    have (a project whose manifest does not validate is not declared)."""
    from reconciler.flows.desired import validate

    desired, problems = validate(ws)
    return {name: sorted(project.environments) for name, project in desired.projects.items()}, len(problems)


def check_scope(ws: Workspace, project: str | None, environment: str | None) -> None:
    """Refuse a --project/--env scope the manifests do not declare: a secret there would never be read."""
    if project is None:
        return
    declared, problems = declared_scopes(ws)
    why = secret_scope.undeclared_scope(project, environment, declared)
    if why is not None:
        hint = f" (the manifests have {problems} problem(s): qrm validate)" if problems else ""
        raise SecretsError(f"{why}{hint}; secrets.enc was not changed")


@dataclass(frozen=True)
class Reference:
    """A `secret:NAME` in a manifest that resolved to a removed key for one environment."""

    file: str
    line: int | None
    project: str
    environment: str
    datasource: str
    now: str | None  # the key it resolves to after the removal (a wider scope), or None: not set at all

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


def references_to(ws: Workspace, key: str, before: Collection[str], after: Collection[str]) -> list[Reference]:
    """Every manifest reference that resolved to `key` among the keys `before` (by environment), with
    what it resolves to among the keys `after`, located file:line (manifests that do not load are skipped)."""
    from reconciler.core.errors import Problem
    from reconciler.edges import manifest_files
    from reconciler.flows.desired import validate

    desired, _ = validate(ws)
    name = secret_scope.split_scoped(key)[2]
    found: list[tuple[Problem, str, str, str, str | None]] = []
    for project_name in sorted(desired.projects):
        project = desired.projects[project_name]
        source = desired.sources.get(f"Project/{project_name}")
        if source is None:
            continue
        for ds_name in sorted(project.datasources):
            if secret_scope.reference_name(project.datasources[ds_name].password or "") != name:
                continue
            for env in sorted(project.environments):
                if secret_scope.resolve(name, project_name, env, before) == key:
                    at = Problem(source.file, document=source.document, path=("datasources", ds_name, "password"))
                    found.append((at, project_name, env, ds_name,
                                  secret_scope.resolve(name, project_name, env, after)))
    located = manifest_files.locate(ws.root, [at for at, *_ in found]) if found else []
    lines = {(p.file, p.document, p.path): p.line for p in located}
    return [Reference(at.file, lines.get((at.file, at.document, at.path)), project, env, ds, now)
            for at, project, env, ds, now in found]


@dataclass(frozen=True)
class Removal:
    key: str
    references: list[Reference]  # still referenced when it was removed (a warning, not an error)


def remove_checked(ws: Workspace, name: str, project: str | None, environment: str | None) -> Removal:
    """Remove a secret, and say which manifest references resolved to it."""
    key = _scoped(name, project, environment)
    with workspace_lock(ws.state_dir / "sops.lock", timeout=30, what="secrets write"):
        current, plain, data_key, _ = _open(ws)
        if key not in plain:
            raise SecretsError(f"{LABEL} has no secret {key}")
        values = {k: v for k, v in plain.items() if k != key}
        # looked up first: a manifest that cannot be read fails the command before anything is removed
        references = references_to(ws, key, plain.keys(), values.keys())
        _write(ws, values, current=current, previous_plain=plain, data_key=data_key)
    return Removal(key, references)


def resolve_secret(ws: Workspace, name: str, project: str | None, environment: str | None) -> tuple[str, str]:
    """(the key that answers `secret:NAME` for this project and environment, its value)."""
    _scoped(name, project, environment)
    check_scope(ws, project, environment)
    current, plain, _, _ = _open(ws)
    if current is None:
        raise SecretsError(f"{LABEL} does not exist; set a secret first with: qrm secrets set {name}")
    key = secret_scope.resolve(name, project, environment, plain)
    if key is None:
        where = "/".join(part for part in (project, environment) if part) or "the global scope"
        raise SecretsError(f"secret:{name} resolves nowhere for {where}: {LABEL} has none of "
                           f"{', '.join(secret_scope.lookup_order(name, project, environment))}")
    return key, plain[key]


@dataclass(frozen=True)
class Rewrapped:
    recipients: list[str]
    removed: list[str]  # readers the data key was wrapped for before and no longer is


def update_readers(ws: Workspace) -> Rewrapped:
    """updatekeys, telling which readers were removed (they still know the data key and every value)."""
    current = sops.read_file(ws.secrets_file, LABEL)
    stanzas = current.metadata.get("age") if current is not None else None
    before = [str(s.get("recipient")) for s in stanzas if isinstance(s, dict)] if isinstance(stanzas, list) else []
    recipients = update_keys(ws)
    return Rewrapped(recipients, [r for r in before if r not in recipients])


# --- git integration ---------------------------------------------------------------------------------

def _decrypt_path(path: Path, identities: list[Any]) -> tuple[sops.EncryptedSecrets | None, dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, {}
    if not text.strip():
        return None, {}  # git passes an empty file for a side that has none
    current = sops.read_encrypted(text, str(path))
    return current, sops.decrypt(current, identities)


def merge(base: Path, ours: Path, theirs: Path) -> list[str]:
    """git merge driver: a three-way merge of the decrypted trees by key, written to `ours`.

    The data key and its readers merge three-way too: a rotation, or a recipient added or removed
    by updatekeys, on either side is kept (a reader removed on one branch never comes back).
    Returns the keys in conflict (changed differently on both sides). The file is written all the
    same, with our value for each of those, so the other branch's other changes are not lost while
    the conflict is resolved (git marks the merge as conflicted when the driver exits 1).
    """
    identities = sops.load_identities()
    base_file, base_plain = _decrypt_path(base, identities)
    ours_file, ours_plain = _decrypt_path(ours, identities)
    theirs_file, theirs_plain = _decrypt_path(theirs, identities)
    merged: dict[str, str] = {}
    conflicts = []
    for key in sorted(set(base_plain) | set(ours_plain) | set(theirs_plain)):
        b, o, t = base_plain.get(key), ours_plain.get(key), theirs_plain.get(key)
        if o == t:
            result = o
        elif o == b:
            result = t
        elif t == b:
            result = o
        else:
            conflicts.append(key)
            result = o
        if result is not None:
            merged[key] = result
    if ours_file is None and theirs_file is None:
        data_key = sops.new_data_key()
        wrapped = sops.wrap_data_key(data_key, sops.recipients_from_config(ours.parent))
        text = sops.render(merged, data_key=data_key, wrapped=wrapped)
        files.write_atomic(ours, text, root=None)  # a temp file git names
        return conflicts
    base_key, base_readers = _keying(base_file, identities)
    ours_key, ours_readers = _keying(ours_file, identities)
    theirs_key, theirs_readers = _keying(theirs_file, identities)
    # The data key of the side that rotated it (ours when both did, or neither did).
    if theirs_file is not None and theirs_key is not None and (ours_file is None or ours_key == base_key != theirs_key):
        keyed, keyed_plain, data_key = theirs_file, theirs_plain, theirs_key
    elif ours_file is not None and ours_key is not None:
        keyed, keyed_plain, data_key = ours_file, ours_plain, ours_key
    else:  # unreachable: a side that exists has a data key (else _keying raised)
        raise SecretsError(f"{LABEL}: no data key on either side of the merge")
    # Each recipient three-way: as theirs has it when ours did not change it, else as ours has it.
    readers = [r for r in dict.fromkeys([*ours_readers, *theirs_readers])
               if ((r in theirs_readers) if (r in ours_readers) == (r in base_readers) else (r in ours_readers))]
    keyed_stanzas = list(keyed.metadata.get("age") or [])
    if {str(s.get("recipient")) for s in keyed_stanzas} == set(readers):
        wrapped = keyed_stanzas  # unchanged readers keep their wrapped key: no diff there
    else:
        wrapped = sops.wrap_data_key(data_key, readers)
    changed = {**(theirs_file.changed_at() if theirs_file else {}), **(ours_file.changed_at() if ours_file else {})}
    text = sops.render(merged, data_key=data_key, wrapped=wrapped, previous=keyed, previous_plain=keyed_plain,
                          changed_at=changed, rotated_at=keyed.rotated_at())
    files.write_atomic(ours, text, root=None)  # a temp file git names
    return conflicts


def _keying(file: sops.EncryptedSecrets | None, identities: list[Any]) -> tuple[bytes | None, list[str]]:
    """A file's data key and the recipients it is wrapped for, in file order."""
    if file is None:
        return None, []
    return (sops.unwrap_data_key(file, identities),
            [str(stanza.get("recipient")) for stanza in file.metadata.get("age") or []])


def textconv(path: Path) -> str:
    """What `git diff` shows for secrets.enc: `KEY: value` lines when a key is at hand, else
    `KEY: <encrypted …fingerprint>` so a diff still names what changed."""
    current = sops.read_file(path, str(path))
    if current is None:
        return ""
    try:
        identities = sops.load_identities()
    except SecretsError:  # no key here: a diff of names and fingerprints
        return "".join(f"{key}: <encrypted {fp}>\n" for key, fp in sorted(current.fingerprints().items()))
    try:
        plain = sops.decrypt(current, identities)
    except SecretsError as exc:  # a damaged or tampered side must show in the diff, not hide in it
        return f"# does not decrypt: {exc}\n" + "".join(
            f"{key}: <encrypted {fp}>\n" for key, fp in sorted(current.fingerprints().items()))
    return "".join(f"{key}: {value!r}\n" for key, value in sorted(plain.items()))


# --- keys for a new workspace ------------------------------------------------------------------------

def ensure_key(root: Path, env: Mapping[str, str] | None = None) -> tuple[Path, str, bool]:
    """An age key for this user (SOPS_AGE_KEY_FILE, else SOPS's default key file) and .sops.yaml
    naming its recipient. Returns (key file, recipient, whether a key was created)."""
    env = os.environ if env is None else env
    key_file = Path(env["SOPS_AGE_KEY_FILE"]) if env.get("SOPS_AGE_KEY_FILE") else sops.default_key_file(env)
    created = False
    # Only this file counts: a key found elsewhere (SOPS's default file when SOPS_AGE_KEY_FILE is set) is
    # not where SOPS looks, and a damaged file is reported rather than appended to.
    try:
        existing = key_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        existing = ""
    except (OSError, UnicodeDecodeError):
        raise SecretsError(f"cannot read age key file {key_file}") from None
    identities = sops.parse_identities(existing, str(key_file))
    if identities:
        recipient = str(identities[0].to_public())
    else:
        secret_key, recipient = sops.generate_identity()
        key_file.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomic(key_file, existing + f"# created by qrm init\n# public key: {recipient}\n{secret_key}\n",
                           mode=0o600, root=None)  # the user's key file, outside any workspace
        created = True
    sops_yaml = root / ".sops.yaml"
    if not sops_yaml.exists():
        files.write_atomic(sops_yaml, "# Who can read secrets.enc (SOPS creation rules; `qrm secrets updatekeys` after "
                           "editing)\ncreation_rules:\n  - path_regex: secrets\\.enc$\n"
                           f"    age: {recipient}\n", root=root)
    return key_file, recipient, created
