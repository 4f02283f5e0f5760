"""Generated files in the plan (pure): what generated/<project>/<env>/ should hold, compared without a key.

Plan renders every file with secret placeholders (`<secret KEY FINGERPRINT>`) instead of values,
so it needs no key, its diffs never hold a secret, and a changed secret still changes `.env`.
The registry keeps that masked text of each file and a digest of what apply wrote (with the
values): a file on disk whose digest differs was edited by hand (drift). For `.env`, the one file
that holds secret values, that digest is keyed (HMAC-SHA256 with this machine's key, which no
registry reader has): a plain sha256 would let anyone who reads the registry test password guesses
against it. The other files are written as their masked text, so their sha256 tells nothing new.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from reconciler.core import render
from reconciler.core.changes import Change
from reconciler.core.state import DesiredState, RecordedFile, RecordedService

GENERATED_DIR = "generated"
FILE_PREFIX = "file."
GENERATED_PREFIX = f"{FILE_PREFIX}{GENERATED_DIR}/"  # the plan addresses of generated files
Policy = Literal["overwrite", "warn"]
SECRET_FILE_MODE = 0o600  # .env holds secret values: its owner only
FILE_MODE = 0o644


def file_mode(name: str) -> int:
    """The mode apply writes a generated file with (and plan expects it to keep)."""
    return SECRET_FILE_MODE if name == ".env" else FILE_MODE


@dataclass(frozen=True)
class DesiredFile:
    path: str
    project: str
    environment: str
    name: str  # one of render.GENERATED_FILES
    masked: str
    host: str  # the environment's host: the machine the file is for


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


KEYED_PREFIX = "hmac:"  # a keyed digest: hmac:KEY_ID:MAC (57 characters; a plain one is 64 hex digits)


def holds_secrets(path: str) -> bool:
    """Whether a generated file's written bytes hold secret values (only .env does)."""
    return path.rsplit("/", 1)[-1] == ".env"


def key_id(key: bytes) -> str:
    """Which machine key made a keyed digest (tells nothing about the key)."""
    return hashlib.sha256(b"qrm machine key id\0" + key).hexdigest()[:8]


def keyed_digest(text: str, key: bytes) -> str:
    mac = hmac.new(key, b"qrm generated file\0" + text.encode("utf-8"), hashlib.sha256).digest()
    return f"{KEYED_PREFIX}{key_id(key)}:{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def is_keyed(digest: str) -> bool:
    return digest.startswith(KEYED_PREFIX)


def keyed_with(digest: str, key: bytes | None) -> bool:
    """Whether `digest` was made with `key` (so a file's digest with it can be compared)."""
    return key is not None and digest.startswith(f"{KEYED_PREFIX}{key_id(key)}:")


def written_digest(path: str, text: str, key: bytes) -> str:
    """What the registry records of a generated file as written: keyed for one that holds secrets."""
    return keyed_digest(text, key) if holds_secrets(path) else sha256(text)


def unkeyed_secret_files(recorded: Mapping[str, RecordedFile]) -> list[str]:
    """Recorded files that hold secrets and whose digest is a plain sha256 (an older qrm wrote it)."""
    return sorted(path for path, f in recorded.items()
                  if holds_secrets(path) and f.written_sha and not is_keyed(f.written_sha))


def file_path(project: str, environment: str, name: str) -> str:
    return f"{GENERATED_DIR}/{project}/{environment}/{name}"


def environment_ports(services: Mapping[str, RecordedService], project: str, environment: str) -> dict[str, int]:
    return {name: s.port for name, s in services.items() if s.project == project and s.environment == environment}


def masked_secrets(desired: DesiredState, project: str, environment: str) -> dict[str, render.SecretValue]:
    refs = render.secret_references(desired, project, environment)
    return {var: render.SecretValue(key, desired.secrets.get(key, ""), None) for var, key in refs.items()}


def file_host(desired: DesiredState, path: str) -> str | None:
    """The host (manifest name) whose machine a generated file is for: its environment's host;
    None when its project or environment is gone."""
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != GENERATED_DIR:
        return None
    project = desired.projects.get(parts[1])
    environment = project.environments.get(parts[2]) if project is not None else None
    return environment.host if environment is not None else None


def files_by_host(desired: DesiredState) -> dict[str, str]:
    """path -> host (manifest name) of every generated file the manifests ask for, by path."""
    out = {}
    for project_name, project in desired.projects.items():
        for env_name, environment in project.environments.items():
            for name in render.GENERATED_FILES:
                out[file_path(project_name, env_name, name)] = environment.host
    return dict(sorted(out.items()))


def desired_files(desired: DesiredState, services: Mapping[str, RecordedService],
                  only: set[tuple[str, str]] | None = None) -> dict[str, DesiredFile]:
    """Every generated file the manifests ask for, rendered with the allocations in `services`
    (`only`: just these (project, environment))."""
    out: dict[str, DesiredFile] = {}
    for project_name in sorted(desired.projects):
        project = desired.projects[project_name]
        for env_name in sorted(project.environments):
            if only is not None and (project_name, env_name) not in only:
                continue
            ports = environment_ports(services, project_name, env_name)
            texts = render.render_environment(desired, project_name, env_name, ports,
                                              masked_secrets(desired, project_name, env_name))
            for name in sorted(texts):
                path = file_path(project_name, env_name, name)
                out[path] = DesiredFile(path, project_name, env_name, name, texts[name],
                                        project.environments[env_name].host)
    return out


def _diff(before: str, after: str, path: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        fromfile=f"a/{path}", tofile=f"b/{path}", n=2))


def shown_disk_text(name: str, disk: str, masked: str) -> str:
    """The text of a file on disk as plan may show it: in `.env`, which holds secret values, a
    variable the rendering masks shows its masked line, and one the rendering does not write (a
    hand-added line) shows no value; every other file holds no secret value and is shown as is."""
    if name != ".env":
        return disk
    known = {line.split("=", 1)[0]: line for line in masked.splitlines() if "=" in line and not line.startswith("#")}
    out = []
    for line in disk.splitlines(keepends=True):
        variable = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else None
        if variable is None:
            out.append(line)
        elif variable not in known:
            out.append(f"{variable}=<value not shown>\n")
        elif '"<secret ' in known[variable]:
            out.append(known[variable] + "\n")
        else:
            out.append(line)
    return "".join(out)


def file_changes(
    wanted: Mapping[str, DesiredFile],
    recorded: Mapping[str, RecordedFile],
    on_disk: Mapping[str, str | None],
    policies: Mapping[str, Policy],
    disk_texts: Mapping[str, str] | None = None,
    disk_modes: Mapping[str, int | None] | None = None,
) -> tuple[list[Change], list[str]]:
    """Changes to generated files, and warnings for hand edits that policy `warn` keeps.

    `on_disk`: sha256 of each recorded file as it is now (None when missing).
    `policies`: file name (".env", "nginx.conf", ... or "*") -> overwrite | warn.
    `disk_texts`: the text of each hand-edited file, so that its diff shows what apply reverts
    (without it, the diff is from what apply last wrote).
    `disk_modes`: the permission bits of each recorded file now; one that differs from file_mode
    (a `.env` readable by others) is drift that apply repairs, whatever the file's policy.
    """

    texts = disk_texts or {}
    changes: list[Change] = []
    warnings: list[str] = []
    for path in sorted(set(wanted) | set(recorded)):
        new, old = wanted.get(path), recorded.get(path)
        address = f"{FILE_PREFIX}{path}"
        if new is None and old is not None:
            changes.append(Change("delete", address, {"path": path, "sha": sha256(old.masked)}, None,
                                  "its project or environment is gone"))
            continue
        assert new is not None
        # `host`: whose machine the file is for (plan shows it; `qrm apply --host` writes only its own)
        after = {"path": path, "host": new.host, "sha": sha256(new.masked),
                 "diff": _diff(old.masked if old else "", new.masked, path)}
        if old is None:
            changes.append(Change("create", address, None, after, "new"))
            continue
        disk = on_disk.get(path)
        edited = disk is not None and disk != old.written_sha
        policy = policies.get(new.name) or policies.get("*") or "overwrite"
        # What apply would replace: the hand-edited text when there is one, else what apply wrote.
        before_text = shown_disk_text(new.name, texts[path], new.masked) if edited and path in texts else old.masked
        if old.masked != new.masked:
            if edited and policy == "warn":
                warnings.append(f"{path} was edited by hand since the last apply and the manifests change it too: "
                                "writing it would lose the hand edit; its policy is warn, so apply keeps the file "
                                "(move the edit into the manifests, or delete the file to have it written)")
                continue
            reason = "content; the hand edit since the last apply is lost" if edited else "content"
            changes.append(Change("update", address, {"path": path, "sha": sha256(old.masked)},
                                  {**after, "diff": _diff(before_text, new.masked, path)}, reason))
            continue
        if disk == old.written_sha:
            mode_now, mode_wanted = (disk_modes or {}).get(path), file_mode(new.name)
            if mode_now is not None and mode_now != mode_wanted:
                holds = " (it holds secret values)" if new.name == ".env" else ""
                changes.append(Change("repair", address, {"path": path, "sha": disk, "mode": f"{mode_now:04o}"},
                                      {**after, "diff": "", "mode": f"{mode_wanted:04o}"},
                                      f"mode {mode_now:04o}, not {mode_wanted:04o}{holds}; apply restores the mode"))
            continue
        why = "missing" if disk is None else "edited by hand since the last apply"
        if policy == "warn" and disk is not None:
            warnings.append(f"{path} was {why}; its policy is warn, so apply keeps the edit")
            continue
        diff = _diff(before_text, new.masked, path) if edited and path in texts else ""
        changes.append(Change("repair", address, {"path": path, "sha": disk}, {**after, "diff": diff},
                              f"{why}; apply rewrites it"))
    return changes, warnings


def only_host(changes: Iterable[Change], desired: DesiredState, host: str) -> tuple[Change, ...]:
    """The changes that `--host HOST` applies on HOST's own machine: its services, the generated
    files of its environments (and the deletion of files whose environment is gone, a no-op where
    they were never written), and the records every machine shares (secrets, registry, lock file)."""
    kept = []
    for change in changes:
        if change.address.startswith("service."):
            if host not in {side["host"] for side in (change.before, change.after) if side}:
                continue
        elif change.address.startswith(GENERATED_PREFIX):
            owner = file_host(desired, change.address.removeprefix(FILE_PREFIX))
            if owner is not None and owner != host:
                continue
        kept.append(change)
    return tuple(kept)
