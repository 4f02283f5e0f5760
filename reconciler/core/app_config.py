"""A Quantum app's quantum.config.yaml as qrm reads it (pure): the folder it serves, the datasources it declares.

A Quantum app is a folder with a quantum.config.yaml. Its `paths.components` (default ./components) is the only
folder the server serves, and routes are relative to it; its `datasources:` declare connections by name. qrm
reads these two keys and nothing else (the rest of the file is the server's business and is not checked).
edges/manifest_files.load_app_config reads the file (YAML) and hands the data to `app_config`, which gives the
value and the problems, each with its field path (the edge adds line and column).

Values may be written `${VAR}` or `${VAR:default}` (`${VAR:-default}`): Quantum expands them from the
server's environment, which qrm cannot see, so qrm takes the default when there is one and treats the value
as unknown otherwise (a datasource with an unknown host or port cannot be connected to by the query tests).

A password is never read from the file, whatever it holds: the query tests take it from secrets.enc only.
The secret is VAR when the file says `password: ${VAR}` (also with a default, which is ignored), else
DATASOURCE_<NAME>_PASSWORD (the name .env gives a datasource variable); a plaintext password in the file
gives a note that names the secret to set, never the value.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.components import DEFAULT_SERVED
from reconciler.core.errors import Problem
from reconciler.core.render import datasource_variable

FILE_NAME = "quantum.config.yaml"
_REFERENCE = re.compile(r"\$\{([A-Za-z_]\w*)(?::-?([^}]*))?\}")
# Quantum's driver names, as its own loader accepts them, and the one qrm uses for each.
DRIVERS = {"postgresql": "postgresql", "postgres": "postgresql", "pg": "postgresql", "sqlite": "sqlite",
           "sqlite3": "sqlite", "mysql": "mysql", "mariadb": "mysql"}


@dataclass(frozen=True)
class AppDatasource:
    """One datasource of quantum.config.yaml, as far as qrm can know it (None: not given, or unknown)."""

    name: str
    driver: str | None = None  # postgresql, sqlite, mysql (Quantum's aliases normalised), or as written
    database: str | None = None  # for sqlite a path, relative to the app's folder
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password_secret: str = ""  # the secrets.enc name its password is taken from
    password_set: bool = False  # the file sets a password (a ${VAR} reference or a value; never read)

    def missing(self) -> list[str]:
        """The connection details a query test needs and the file does not give (or gives as ${VAR} only)."""
        needed = ["driver", "database"]
        if self.driver != "sqlite":
            needed += ["host", "port"]
        return [name for name in needed if getattr(self, name) is None]


@dataclass(frozen=True)
class AppConfig:
    """What qrm takes from an app's quantum.config.yaml; the defaults when the app has none."""

    file: str | None = None  # the file as the workspace names it (source/quantum.config.yaml); None: there is none
    components: str = DEFAULT_SERVED  # paths.components, relative to the app's folder, POSIX; "" is the folder itself
    datasources: dict[str, AppDatasource] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # things a user should know (a password in the file that is ignored)

    def summary(self) -> dict[str, Any]:
        """For scan's JSON and reports: no connection detail, no secret."""
        return {"file": self.file, "served": self.components or ".", "datasources": sorted(self.datasources),
                "notes": list(self.notes)}


def _resolve(raw: str) -> str | None:
    """A value with ${VAR} / ${VAR:default} references as the server would see it by default; None when a
    reference has no default (its value is in an environment qrm cannot see)."""
    unknown = False

    def default(match: re.Match[str]) -> str:
        nonlocal unknown
        if match.group(2) is None:
            unknown = True
            return ""
        return match.group(2)

    # Only up to the last "}": a "${NAME:" with no "}" after it was searched to the end of the value from each of
    # them (quadratic); before the last "}", every one finds its "}".
    last = raw.rfind("}") + 1
    value = _REFERENCE.sub(default, raw[:last]) + raw[last:]
    return None if unknown else value


class _Reader:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def problem(self, path: tuple[str | int, ...], message: str) -> None:
        self.problems.append(Problem(self.file, None, None, message, 0, path))

    def mapping(self, value: Any, path: tuple[str | int, ...], what: str) -> dict[Any, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping of {what}, not {_kind(value)}")
            return {}
        return value

    def text(self, data: dict[Any, Any], key: str, path: tuple[str | int, ...]) -> str | None:
        """A scalar as text with its ${...} references resolved; None when absent, empty or unknown."""
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, (dict, list)):
            self.problem((*path, key), f"must be a single value, not {_kind(value)}")
            return None
        resolved = _resolve(value) if isinstance(value, str) else str(value)
        if resolved is None or not resolved.strip():
            return None
        return resolved.strip()

    def port(self, data: dict[Any, Any], path: tuple[str | int, ...]) -> int | None:
        value = data.get("port")
        if value is None:
            return None
        if isinstance(value, str):
            resolved = _resolve(value)
            if resolved is None:
                return None  # ${DB_PORT}: the server's environment decides
            value = int(resolved.strip()) if resolved.strip().isdigit() else value
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            self.problem((*path, "port"), f"must be a port number (1-65535), not {value!r}")
            return None
        return value


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _components(reader: _Reader, paths: dict[Any, Any]) -> str:
    value = paths.get("components")
    where = ("paths", "components")
    if value is None:
        return DEFAULT_SERVED
    if not isinstance(value, str) or not value.strip():
        reader.problem(where, f"must be a folder of the app, like ./components, not {_kind(value)}")
        return DEFAULT_SERVED
    written = value.strip().replace("\\", "/")
    folder = posixpath.normpath(written)
    if written.startswith("/") or folder == ".." or folder.startswith("../"):
        reader.problem(where, f"{value!r} is not inside the app's folder; qrm scans the project's source: folder, "
                              "so the served folder must be in it (a relative path like ./components)")
        return DEFAULT_SERVED
    return "" if folder == "." else folder


def _datasource(reader: _Reader, name: str, data: dict[Any, Any], project: str) -> tuple[AppDatasource, str | None]:
    path: tuple[str | int, ...] = ("datasources", name)
    written = reader.text(data, "driver", path) or reader.text(data, "type", path)
    driver = DRIVERS.get(written.lower(), written.lower()) if written else None
    database = reader.text(data, "database", path)
    if driver == "sqlite":
        database = reader.text(data, "sqlite_path", path) or database
    raw = data.get("password")
    reference = _REFERENCE.search(raw, 0, raw.rfind("}") + 1) if isinstance(raw, str) else None  # see _resolve
    secret = reference.group(1) if reference else datasource_variable(name, "PASSWORD")
    given = raw is not None and str(raw) != ""
    note = None
    if given and (reference is None or reference.group(2) is not None):
        note = (f"datasources.{name}.password: ignored (qrm never reads a password from {FILE_NAME}); the query "
                f"tests take it from the secret {secret}: qrm secrets set {secret} --project {project}")
    source = AppDatasource(name=name, driver=driver, database=database, host=reader.text(data, "host", path),
                           port=reader.port(data, path),
                           username=reader.text(data, "username", path) or reader.text(data, "user", path),
                           password_secret=secret, password_set=given)
    return source, note


def app_config(data: Any, file: str, project: str) -> tuple[AppConfig, list[Problem]]:
    """The AppConfig of a parsed quantum.config.yaml (data: what YAML gave; file: its name for messages;
    project: the qrm project, named in the notes) and the problems found, each with its field path."""
    reader = _Reader(file)
    if data is None:
        return AppConfig(file=file), []
    if not isinstance(data, dict):
        reader.problem((), f"{FILE_NAME} must be a mapping (server:, paths:, datasources:, ...), not {_kind(data)}")
        return AppConfig(file=file), reader.problems
    components = _components(reader, reader.mapping(data.get("paths"), ("paths",), "folders"))
    datasources: dict[str, AppDatasource] = {}
    notes: list[str] = []
    for key, value in reader.mapping(data.get("datasources"), ("datasources",), "datasource names").items():
        name = str(key)
        entry = reader.mapping(value, ("datasources", name), "driver, database, host, port, username")
        datasources[name], note = _datasource(reader, name, entry, project)
        if note:
            notes.append(note)
    return AppConfig(file=file, components=components, datasources=datasources, notes=tuple(notes)), reader.problems
