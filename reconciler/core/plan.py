"""make_plan: what apply would change, as a pure function of desired, recorded and live state."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, cast

from reconciler.core import generated
from reconciler.core.allocate import allocate
from reconciler.core.changes import Action, Change, Plan
from reconciler.core.report import LOCKFILE_PATH, STATE_PATH, render_lockfile, render_state
from reconciler.core.state import (
    DesiredState,
    LiveState,
    RecordedService,
    RecordedState,
    service_from_dict,
    service_to_dict,
)

REGISTRY_ADDRESS = "registry"
LOCKFILE_ADDRESS = f"file.{LOCKFILE_PATH}"
STATE_ADDRESS = f"file.{STATE_PATH}"
SECRET_PREFIX = "secret."


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def desired_digest(desired: DesiredState) -> str:
    """The loader's fingerprint of the manifest files, else one computed from the state itself."""
    if desired.digest:
        return desired.digest
    return digest({
        "ranges": sorted(r.model_dump_json() for r in desired.ranges),
        "reservations": sorted(r.model_dump_json() for r in desired.reservations),
        "instances": [repr(i) for _, i in sorted(desired.instances.items())],
    })


def make_plan(desired: DesiredState, recorded: RecordedState, live: LiveState) -> Plan:
    allocation = allocate(desired, recorded.services, live, recorded.foreign)
    changes: list[Change] = []

    for name in sorted(desired.instances):
        inst = desired.instances[name]
        port = allocation.ports.get(name)
        if port is None:
            continue  # exhausted: reported in errors, and the plan is blocked
        target = RecordedService(
            name=name, host=inst.host, port=port, type=inst.type, protocol=inst.protocol, health=inst.health,
            tags=inst.tags, project=inst.project, environment=inst.environment, pinned=inst.pinned is not None,
        )
        before = recorded.services.get(name)
        if before is None:
            changes.append(Change("create", f"service.{name}", None, service_to_dict(target),
                                  allocation.reasons.get(name, "")))
        elif before != target:
            reason = allocation.reasons.get(name, "")
            if reason in ("kept", "pinned", "preferred", "lowest free") and before.port == port:
                reason = ""
            changes.append(Change("update", f"service.{name}", service_to_dict(before), service_to_dict(target),
                                  reason))

    for name in sorted(set(recorded.services) - set(desired.instances)):
        before = recorded.services[name]
        changes.append(Change("delete", f"service.{name}", service_to_dict(before), None,
                              f"releases {before.host}:{before.port}"))

    changes.extend(_secret_changes(desired.secrets, recorded.secrets, desired.secret_ids))

    warnings = list(allocation.warnings)
    if not allocation.errors and (desired.projects or recorded.files):
        final = services_after(recorded, changes)
        wanted = generated.desired_files(desired, final)
        policies = cast(dict[str, generated.Policy], desired.file_policies)
        file_changes, file_warnings = generated.file_changes(wanted, recorded.files, live.file_shas, policies,
                                                                   live.file_texts, live.file_modes)
        changes.extend(file_changes)
        warnings.extend(file_warnings)

    if recorded.origin == "lockfile" and (recorded.services or recorded.secrets or recorded.files):
        restored = {"restore": len(recorded.services)}
        reason = f"the registry is empty; {len(recorded.services)} allocations are restored from {LOCKFILE_PATH}"
        if recorded.secrets or recorded.files:
            restored |= {"secrets": len(recorded.secrets), "files": len(recorded.files)}
            reason += (f", {len(recorded.secrets)} secret fingerprints and {len(recorded.files)} generated files "
                       f"from {STATE_PATH}")
        changes.append(Change("repair", REGISTRY_ADDRESS, None, restored, reason))
    unkeyed = generated.unkeyed_secret_files(recorded.files) if recorded.origin == "registry" else []
    if unkeyed:
        changes.append(Change("repair", REGISTRY_ADDRESS, None, {"rekey": unkeyed},
                              f"an older qrm recorded a plain sha256 of {len(unkeyed)} .env "
                              f"file{'s' if len(unkeyed) != 1 else ''}, which lets registry readers test password "
                              "guesses; apply records keyed ones (HMAC with this machine's key), files unchanged"))
    # The lock file must hold exactly what render_lockfile gives; with no allocations at all an
    # absent file is fine too (a new workspace), and so is the `allocations: []` that apply
    # writes when the last service is removed.
    expected = render_lockfile(recorded.services.values())
    why = None
    if live.lockfile_text is None:
        if recorded.services:
            why = "missing"
    elif live.lockfile_text != expected:
        why = "edited since the last apply"
    if why is not None:
        changes.append(Change("repair", LOCKFILE_ADDRESS, None, None, f"{LOCKFILE_PATH} is {why}; it is rewritten"))
    # reports/state.yaml likewise, when the registry is the record (otherwise the file was the input);
    # absent is fine while nothing is recorded.
    if recorded.origin == "registry":
        expected_state = render_state(recorded.secrets, recorded.files.values())
        why = None
        if live.state_text is None:
            if recorded.secrets or recorded.files:
                why = "missing"
        elif live.state_text != expected_state:
            why = "edited since the last apply"
        if why is not None:
            changes.append(Change("repair", STATE_ADDRESS, None, None, f"{STATE_PATH} is {why}; it is rewritten"))

    return Plan(
        changes=tuple(changes),
        conflicts=tuple(allocation.conflicts),
        errors=tuple(allocation.errors),
        warnings=tuple(warnings),
        desired_digest=desired_digest(desired),
        # A plan saved where there is no registry ("reports") is applied where apply created an empty
        # one ("lockfile"): the same record.
        recorded_digest=digest(["lockfile" if recorded.origin == "reports" else recorded.origin, expected,
                                sorted(recorded.secrets.items()),
                                sorted((f.path, f.written_sha if recorded.origin == "registry" else "",
                                        generated.sha256(f.masked)) for f in recorded.files.values())]),
        refreshed=live.refreshed,
        services=len(desired.instances),
        recorded_from=recorded.origin,
    )


ROTATED_REASON = "re-encrypted: data key rotated; values unchanged"
_ID_SEPARATOR = "/"  # a recorded fingerprint is CIPHERTEXT_DIGEST or CIPHERTEXT_DIGEST/VALUE_ID


def secret_fingerprint(ciphertext: str, value_id: str | None) -> str:
    """What plan records of a secret: its ciphertext's digest and, when known, its value's id."""
    return f"{ciphertext}{_ID_SEPARATOR}{value_id}" if value_id else ciphertext


def _secret_changes(desired: dict[str, str], recorded: dict[str, str],
                    value_ids: dict[str, str] | None = None) -> list[Change]:
    """Secrets by name only: a value is compared through a fingerprint of its ciphertext, which
    stays the same while the value does (qrm keeps the ciphertext of unchanged values). A new
    ciphertext with the same value id is a key rotation, not a value change. A fingerprint recorded
    before value ids were (a bare ciphertext digest) is compared by its ciphertext alone."""
    ids = value_ids or {}
    changes = []
    for name in sorted(set(desired) | set(recorded)):
        before = recorded.get(name)
        after = None if name not in desired else secret_fingerprint(desired[name], ids.get(name))
        if before == after:
            continue
        old_cipher, _, old_id = (before or "").partition(_ID_SEPARATOR)
        new_cipher, _, new_id = (after or "").partition(_ID_SEPARATOR)
        if before is not None and after is not None and old_cipher == new_cipher and not old_id:
            continue  # recorded before value ids: the same ciphertext is the same value
        action: Action = "create" if before is None else "delete" if after is None else "update"
        reason = {"create": "secret added", "update": "secret changed", "delete": "secret removed"}[action]
        if action == "update" and old_id and old_id == new_id:
            reason = ROTATED_REASON
        changes.append(Change(action, f"{SECRET_PREFIX}{name}",
                              None if before is None else {"fingerprint": before},
                              None if after is None else {"fingerprint": after}, reason))
    return changes


def secrets_after(recorded: RecordedState, changes: Iterable[Change]) -> dict[str, str]:
    secrets = dict(recorded.secrets)
    for change in changes:
        if change.address.startswith(SECRET_PREFIX):
            name = change.address.removeprefix(SECRET_PREFIX)
            if change.after is None:
                secrets.pop(name, None)
            else:
                secrets[name] = str(change.after["fingerprint"])
    return secrets


def services_after(recorded: RecordedState, changes: Iterable[Change]) -> dict[str, RecordedService]:
    """The recorded services once the changes are applied (pure; apply and the property tests use it)."""
    services = dict(recorded.services)
    for change in changes:
        if not change.address.startswith("service."):
            continue
        name = change.address.removeprefix("service.")
        if change.action == "delete":
            services.pop(name, None)
        elif change.after is not None:
            services[name] = service_from_dict(change.after)
    return services
