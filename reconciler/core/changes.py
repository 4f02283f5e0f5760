"""A plan as a value: the changes apply would make (create, update, delete, repair), with the
conflicts, errors and warnings that block or qualify them. make_plan (core.plan) builds one;
report renders one; a saved plan reads back into one."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from reconciler.core.allocate import Conflict

Action = Literal["create", "update", "delete", "repair"]
SYMBOLS: dict[str, str] = {"create": "+", "update": "~", "delete": "-", "repair": "!"}
ACTIONS: tuple[Action, ...] = ("create", "update", "delete", "repair")


@dataclass(frozen=True)
class Change:
    action: Action
    address: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    reason: str = ""

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.action]

    def changed_fields(self) -> list[str]:
        if self.before is None or self.after is None:
            return []
        return sorted(k for k in set(self.before) | set(self.after) if self.before.get(k) != self.after.get(k))

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "symbol": self.symbol,
            "address": self.address,
            "reason": self.reason,
            "changed": self.changed_fields(),
            "before": self.before,
            "after": self.after,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Change:
        action = data["action"]
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        return Change(action=action, address=str(data["address"]), before=data.get("before"),
                      after=data.get("after"), reason=str(data.get("reason", "")))


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    conflicts: tuple[Conflict, ...] = ()
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    desired_digest: str = ""
    recorded_digest: str = ""
    refreshed: bool = True
    services: int = 0
    filters: dict[str, list[str]] = field(default_factory=dict)
    recorded_from: str = "registry"  # RecordedState.origin: registry | lockfile | reports

    @property
    def blocked(self) -> bool:
        return bool(self.conflicts or self.errors)

    @property
    def empty(self) -> bool:
        return not self.changes

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(ACTIONS, 0)
        for change in self.changes:
            counts[change.action] += 1
        return counts

    def service_changes(self) -> list[Change]:
        return [c for c in self.changes if c.address.startswith("service.")]

    def filtered(self, targets: Iterable[str] = (), excludes: Iterable[str] = ()) -> Plan:
        """Only the changes whose address matches a --target pattern and no --exclude pattern.

        A bare name matches its service ("quantum-admin" is service.quantum-admin); globs work.
        """
        targets, excludes = list(targets), list(excludes)
        if not targets and not excludes:
            return self

        def matches(address: str, patterns: list[str]) -> bool:
            return any(fnmatch.fnmatchcase(address, p) or fnmatch.fnmatchcase(address, f"service.{p}")
                       for p in patterns)

        kept = tuple(c for c in self.changes
                     if (not targets or matches(c.address, targets)) and not matches(c.address, excludes))
        return replace(self, changes=kept, filters={"target": targets, "exclude": excludes})
