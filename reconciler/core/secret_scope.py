"""Scoped secret names and how `secret:NAME` resolves (pure).

A secret lives at one of three scopes, as a key of secrets.enc: `NAME` (global),
`project/NAME`, or `project/env/NAME`. A reference `secret:NAME` made by a project's
environment resolves environment first, then project, then global.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

REF_PREFIX = "secret:"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCOPE = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")  # project and environment names (models.Name)
UNENCRYPTED_SUFFIX = "_unencrypted"  # SOPS leaves keys with this suffix unencrypted


def scoped_name(name: str, project: str | None = None, environment: str | None = None) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a secret name (letters, digits and _, not starting with a digit)")
    if name.endswith(UNENCRYPTED_SUFFIX):
        raise ValueError(f"{name!r} is not a secret name: SOPS leaves keys ending in {UNENCRYPTED_SUFFIX} "
                         "unencrypted")
    if environment is not None and project is None:
        raise ValueError("an environment scope needs its project (--project P --env E)")
    for kind, scope in (("project", project), ("environment", environment)):
        if scope is not None and not _SCOPE.match(scope):
            raise ValueError(f"{scope!r} is not a {kind} name, so {name!r} in it is not a secret name "
                             "(lower-case letters, digits, . _ -)")
    return "/".join(part for part in (project, environment, name) if part)


def split_scoped(key: str) -> tuple[str | None, str | None, str]:
    """(project, environment, name) of a secrets.enc key."""
    parts = key.split("/")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return parts[0], None, parts[1]
    return None, None, key


def scope_label(key: str) -> str:
    project, environment, _ = split_scoped(key)
    if environment:
        return f"environment {project}/{environment}"
    if project:
        return f"project {project}"
    return "global"


def lookup_order(name: str, project: str | None, environment: str | None) -> list[str]:
    order = []
    if project and environment:
        order.append(f"{project}/{environment}/{name}")
    if project:
        order.append(f"{project}/{name}")
    order.append(name)
    return order


def resolve(name: str, project: str | None, environment: str | None, available: Collection[str]) -> str | None:
    """The secrets.enc key that `secret:NAME` means for this project and environment, if any."""
    for key in lookup_order(name, project, environment):
        if key in available:
            return key
    return None


def reference_name(value: str) -> str | None:
    """NAME of a `secret:NAME` value, else None."""
    return value[len(REF_PREFIX):] if value.startswith(REF_PREFIX) else None


def undeclared_scope(project: str | None, environment: str | None,
                     declared: Mapping[str, Collection[str]]) -> str | None:
    """Why a --project/--env scope names nothing the manifests declare (`declared`: project ->
    its environments), or None when it is declared (or global)."""
    if project is None:
        return None
    if project not in declared:
        return (f"project {project!r} is not declared in the manifests; known projects: "
                f"{', '.join(sorted(declared)) or '(none)'}")
    if environment is not None and environment not in declared[project]:
        return (f"project {project!r} has no environment {environment!r}; its environments: "
                f"{', '.join(sorted(declared[project])) or '(none)'}")
    return None
