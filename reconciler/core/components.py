"""What a Quantum component (.q file) contains, as plain values (pure).

edges/q_components.py (the lxml edge) fills these in from a file; the scan report, the plan and the test
generator read them. Everything is a frozen dataclass of tuples, so a component compares by value
and its dictionary form is deterministic.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

# What the .q reader reads of a file. Bump it when the reader learns to read more (accept, maxsize,
# enctype; every q:import form): rows of an older reader are parsed again once, even unchanged.
READER_VERSION = 2


@dataclass(frozen=True)
class Param:
    name: str
    type: str = "string"  # string email url integer decimal boolean
    required: bool = False
    min_length: int | None = None
    max_length: int | None = None
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    enum: tuple[str, ...] = ()
    source: str = "param"  # "param" (q:param) or "validate" (q:validate)
    accept: str | None = None  # uploads (type file): the media types or extensions allowed, as written
    max_size: int | None = None  # uploads: the largest file in bytes (maxsize="5MB")


@dataclass(frozen=True)
class Redirect:
    url: str
    flash: str | None = None


@dataclass(frozen=True)
class Query:
    name: str
    datasource: str | None = None
    type: str | None = None  # select insert update delete execute, as written
    sql: str = ""
    params: tuple[str, ...] = ()
    writes: bool = False
    line: int | None = None


@dataclass(frozen=True)
class Action:
    name: str
    method: str = "POST"
    params: tuple[Param, ...] = ()
    redirects: tuple[Redirect, ...] = ()
    queries: tuple[Query, ...] = ()
    writes: bool = False  # any of its queries writes data
    line: int | None = None


@dataclass(frozen=True)
class FormField:
    name: str
    type: str = "text"
    required: bool = False
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    hidden: bool = False
    value: str | None = None
    accept: str | None = None  # <input type="file" accept="image/*">


@dataclass(frozen=True)
class Form:
    id: str | None
    method: str = "GET"
    action: str | None = None  # the URL it posts to, as written
    fields: tuple[FormField, ...] = ()
    enctype: str | None = None  # multipart/form-data for a form that uploads files
    line: int | None = None


@dataclass(frozen=True)
class Function:
    name: str
    endpoint: str | None = None
    method: str = "GET"
    line: int | None = None


@dataclass(frozen=True)
class Component:
    path: str  # relative to the project's source folder, e.g. components/shared/header.q
    name: str
    type: str | None = None  # page partial pure microservice
    route: str | None = None  # the URL the server serves it at (with base_path); None for non-pages and not served
    # Why the server does not serve this file (it lies outside the served folder, paths.components); None when
    # it is served. A string rather than a flag so that served components' report lines do not change.
    not_served: str | None = None
    require_auth: bool = False
    require_role: str | None = None
    actions: tuple[Action, ...] = ()
    queries: tuple[Query, ...] = ()  # queries outside actions
    forms: tuple[Form, ...] = ()
    includes: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    functions: tuple[Function, ...] = ()
    conditionals: int = 0
    lines: int = 0
    complexity: int = 1
    sha256: str = ""
    # How it was read: "xml" (parsed as it is), "repaired" (parsed after fixing quirks), "fallback"
    # (could not be parsed; what a line-based reader found), "skipped" (too large, binary, unreadable).
    parse: str = "xml"
    problems: tuple[str, ...] = field(default=())  # "line N: reason", for every quirk repaired or failure

    @property
    def served(self) -> bool:
        return self.not_served is None

    def to_dict(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = _clean(asdict(self))
        return cleaned


def _clean(value: Any) -> Any:
    """Tuples as lists, None and empty values dropped: a compact, stable report form."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v not in (None, (), [], {})}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


DEFAULT_SERVED = "components"  # paths.components of a Quantum app without quantum.config.yaml


@dataclass(frozen=True)
class Serving:
    """Which files of an app a Quantum server serves and at which URLs: only the files under `folder`
    (its paths.components, relative to the app's folder, POSIX, "" for the app's folder itself), at
    URLs relative to it, behind `base_path`."""

    base_path: str = ""
    folder: str = DEFAULT_SERVED

    def not_served(self, path: str) -> str | None:
        """Why `path` (relative to the app's folder) is not served, or None when it is."""
        if not self.folder or path.startswith(self.folder + "/"):
            return None
        return f"outside the served folder {self.folder}/ (paths.components)"

    def route(self, path: str) -> str | None:
        """The URL of `path`, or None when it is not served."""
        return route_for(path, self.base_path, self.folder) if self.not_served(path) is None else None


def route_for(path: str, base_path: str = "", folder: str = DEFAULT_SERVED) -> str:
    """The URL a Quantum server serves <folder>/<path>.q at: index.q is its folder's URL."""
    relative = (path.removeprefix(folder + "/") if folder else path).removesuffix(".q")
    if relative == "index":
        url = "/"
    elif relative.endswith("/index"):
        url = "/" + relative.removesuffix("/index")
    else:
        url = "/" + relative
    return (base_path.rstrip("/") + url) if base_path else url


def page_path(route: str, base_path: str) -> str:
    """A route without the project's base_path: the request path of a test case (the runner adds base_path)."""
    prefix = base_path.rstrip("/")
    if prefix and (route == prefix or route.startswith(prefix + "/")):
        return route[len(prefix):] or "/"
    return route


# The attributes of <q:import> that name what is imported, in the order they are looked for. Quantum's own
# parser knows component=, behavior=, prefab= and tilemap= (each with an optional from=, a folder); file= and
# src= are the forms of older files.
IMPORT_NAMES = ("component", "file", "src", "behavior", "prefab", "tilemap")


def import_target(attrs: dict[str, str]) -> str | None:
    """What one <q:import> imports, as one string: the name, or from/name when it has a from= folder
    (`<q:import behavior="PlayerBehavior" from="./behaviors"/>` -> "./behaviors/PlayerBehavior").
    attrs are the element's attributes, names in lower case. None when it names nothing."""
    name = next((attrs[key].strip() for key in IMPORT_NAMES if attrs.get(key, "").strip()), None)
    if name is None:
        return None
    folder = attrs.get("from", "").strip().rstrip("/")
    return f"{folder}/{name}" if folder else name


WRITING_QUERY_TYPES = frozenset({"insert", "update", "delete", "execute"})
WRITING_SQL_PREFIXES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE", "CREATE", "DROP", "ALTER", "TRUNCATE")


def query_writes(query_type: str | None, sql: str) -> bool:
    """A query writes data when its type says so or its SQL starts with a writing statement."""
    if query_type and query_type.lower() in WRITING_QUERY_TYPES:
        return True
    return sql.lstrip().upper().startswith(WRITING_SQL_PREFIXES)


def totals(components: list[Component]) -> dict[str, int]:
    return {
        "components": len(components),
        "actions": sum(len(c.actions) for c in components),
        "forms": sum(len(c.forms) for c in components),
        "queries": sum(len(c.queries) + sum(len(a.queries) for a in c.actions) for c in components),
        "unparsed": sum(1 for c in components if c.parse in ("fallback", "skipped")),
        "not_served": sum(1 for c in components if not c.served),
    }


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]?)i?b?", re.I)  # on the stripped text: two \s* around optional parts
# were quadratic on a long run of spaces
_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def size_in_bytes(text: str | None) -> int | None:
    """A size as Quantum writes it (`5MB`, `500kb`, `1.5 MB`, `2048`) in bytes (1 KB = 1024); None if not one."""
    match = _SIZE.fullmatch((text or "").strip())
    if match is None:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
