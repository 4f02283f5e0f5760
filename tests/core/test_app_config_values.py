"""An app's quantum.config.yaml as data -> what qrm takes from it (core.app_config): the served folder, the
datasources with ${VAR:default} values, the secret of each password (never the password), and the problems."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.app_config import AppConfig, AppDatasource, _resolve, app_config

FILE = "../app/quantum.config.yaml"


def read(data: Any) -> AppConfig:
    config, problems = app_config(data, FILE, "blog")
    assert problems == []
    return config


def problems_of(data: Any) -> list[tuple[str, str]]:
    """(field, message) of each problem; every one names the file."""
    _, problems = app_config(data, FILE, "blog")
    assert all(p.file == FILE for p in problems)
    return [(p.field_name, p.message) for p in problems]


@pytest.mark.parametrize(("data", "served"), [
    (None, "components"),
    ({}, "components"),
    ({"server": {"port": 8080}}, "components"),
    ({"paths": None}, "components"),
    ({"paths": {"static": "./static"}}, "components"),
    ({"paths": {"components": "./components"}}, "components"),
    ({"paths": {"components": "./src/components/"}}, "src/components"),
    ({"paths": {"components": "src//components"}}, "src/components"),
    ({"paths": {"components": "./app/../components"}}, "components"),
    ({"paths": {"components": "."}}, ""),
    ({"paths": {"components": "./"}}, ""),
])
def test_the_served_folder(data: Any, served: str) -> None:
    assert read(data).components == served


@pytest.mark.parametrize(("data", "field", "message"), [
    ([1, 2], "", "quantum.config.yaml must be a mapping (server:, paths:, datasources:, ...), not a list"),
    ("text", "", "quantum.config.yaml must be a mapping (server:, paths:, datasources:, ...), not str 'text'"),
    ({"paths": ["components"]}, "paths", "must be a mapping of folders, not a list"),
    ({"paths": {"components": 5}}, "paths.components", "must be a folder of the app, like ./components, not int 5"),
    ({"paths": {"components": ""}}, "paths.components", "must be a folder of the app, like ./components, not str ''"),
    ({"paths": {"components": "../shared"}}, "paths.components",
     "'../shared' is not inside the app's folder; qrm scans the project's source: folder, so the served folder "
     "must be in it (a relative path like ./components)"),
    ({"paths": {"components": "/srv/app/components"}}, "paths.components",
     "'/srv/app/components' is not inside the app's folder; qrm scans the project's source: folder, so the served "
     "folder must be in it (a relative path like ./components)"),
    ({"datasources": ["db"]}, "datasources", "must be a mapping of datasource names, not a list"),
    ({"datasources": {"db": "sqlite"}}, "datasources.db",
     "must be a mapping of driver, database, host, port, username, not str 'sqlite'"),
    ({"datasources": {"db": {"driver": "postgresql", "port": "fifty"}}}, "datasources.db.port",
     "must be a port number (1-65535), not 'fifty'"),
    ({"datasources": {"db": {"driver": "postgresql", "port": 70000}}}, "datasources.db.port",
     "must be a port number (1-65535), not 70000"),
    ({"datasources": {"db": {"driver": "postgresql", "port": True}}}, "datasources.db.port",
     "must be a port number (1-65535), not True"),
    ({"datasources": {"db": {"driver": ["postgresql"]}}}, "datasources.db.driver",
     "must be a single value, not a list"),
])
def test_problems_name_the_field(data: Any, field: str, message: str) -> None:
    assert problems_of(data) == [(field, message)]


def datasource(entry: dict[str, Any], name: str = "db") -> tuple[AppDatasource, tuple[str, ...]]:
    config = read({"datasources": {name: entry}})
    return config.datasources[name], config.notes


@pytest.mark.parametrize(("entry", "expected"), [
    ({"driver": "sqlite", "database": "./data/app.db"},
     AppDatasource("db", driver="sqlite", database="./data/app.db", password_secret="DATASOURCE_DB_PASSWORD")),
    ({"driver": "sqlite3", "database": "a.db"},
     AppDatasource("db", driver="sqlite", database="a.db", password_secret="DATASOURCE_DB_PASSWORD")),
    # upstream's projects/blog shape: every value an environment reference with a default
    ({"driver": "${DB_DRIVER:sqlite}", "host": "${DB_HOST:localhost}", "port": "${DB_PORT:5432}",
      "database": "${DB_NAME:quantum_blog}", "username": "${DB_USER:quantum}", "sqlite_path": "./data/blog.db"},
     AppDatasource("db", driver="sqlite", database="./data/blog.db", host="localhost", port=5432,
                   username="quantum", password_secret="DATASOURCE_DB_PASSWORD")),
    ({"driver": "postgres", "host": "db.internal", "port": 5432, "database": "shop", "user": "app",
      "password": "${SHOP_DB_PASSWORD}"},
     AppDatasource("db", driver="postgresql", database="shop", host="db.internal", port=5432, username="app",
                   password_secret="SHOP_DB_PASSWORD", password_set=True)),
    ({"driver": "postgresql", "host": "${DB_HOST}", "port": "${DB_PORT}", "database": "shop"},
     AppDatasource("db", driver="postgresql", database="shop", password_secret="DATASOURCE_DB_PASSWORD")),
    ({"driver": "mariadb", "host": "h", "port": "3306", "database": "d"},
     AppDatasource("db", driver="mysql", database="d", host="h", port=3306, password_secret="DATASOURCE_DB_PASSWORD")),
    ({"type": "postgresql", "host": "h", "port": 1, "database": "d"},
     AppDatasource("db", driver="postgresql", database="d", host="h", port=1,
                   password_secret="DATASOURCE_DB_PASSWORD")),
    ({"driver": "oracle", "database": "d"},
     AppDatasource("db", driver="oracle", database="d", password_secret="DATASOURCE_DB_PASSWORD")),
    ({}, AppDatasource("db", password_secret="DATASOURCE_DB_PASSWORD")),
])
def test_a_datasource(entry: dict[str, Any], expected: AppDatasource) -> None:
    assert datasource(entry) == (expected, ())


@pytest.mark.parametrize(("password", "secret", "noted"), [
    ("${DB_PASSWORD}", "DB_PASSWORD", False),
    ("${DB_PASSWORD:quantum123}", "DB_PASSWORD", True),  # the default is a plaintext password: ignored
    ("hunter2", "DATASOURCE_BLOG_DB_PASSWORD", True),
    (12345, "DATASOURCE_BLOG_DB_PASSWORD", True),
    ("", "DATASOURCE_BLOG_DB_PASSWORD", False),
    (None, "DATASOURCE_BLOG_DB_PASSWORD", False),
])
def test_a_password_is_never_read_only_the_secret_to_use(password: Any, secret: str, noted: bool) -> None:
    found, notes = datasource({"driver": "postgresql", "password": password}, name="blog-db")
    assert found.password_secret == secret
    assert "quantum123" not in repr(found) and "hunter2" not in repr(found) and "12345" not in repr(found)
    assert found.password_set == (password not in ("", None))
    if noted:
        assert notes == (f"datasources.blog-db.password: ignored (qrm never reads a password from "
                         f"quantum.config.yaml); the query tests take it from the secret {secret}: "
                         f"qrm secrets set {secret} --project blog",)
        assert "hunter2" not in notes[0] and "quantum123" not in notes[0]
    else:
        assert notes == ()


@pytest.mark.parametrize(("entry", "missing"), [
    ({"driver": "sqlite", "database": "a.db"}, []),
    ({"driver": "sqlite"}, ["database"]),
    ({"driver": "postgresql", "database": "d", "host": "h", "port": 5432}, []),
    ({"driver": "postgresql", "database": "d", "host": "${DB_HOST}", "port": 5432}, ["host"]),
    ({"driver": "postgresql", "database": "d"}, ["host", "port"]),
    ({"database": "d"}, ["driver", "host", "port"]),
])
def test_what_a_query_test_still_needs(entry: dict[str, Any], missing: list[str]) -> None:
    assert datasource(entry)[0].missing() == missing


def test_the_summary_holds_names_only() -> None:
    config = read({"paths": {"components": "./src/components"},
                   "datasources": {"b": {"driver": "postgresql", "password": "hunter2"}, "a": {}}})
    assert config.summary()["served"] == "src/components"
    assert config.summary()["datasources"] == ["a", "b"]
    assert "hunter2" not in repr(config)


@pytest.mark.parametrize(("raw", "resolved"), [
    ("${A:x}", "x"), ("${A:-x}", "x"), ("${A:}", ""), ("${A}", None), ("pre-${A:x}-post", "pre-x-post"),
    ("${A:x}${B}", None), ("$A", "$A"), ("${1A:x}", "${1A:x}"),
])
def test_environment_references(raw: str, resolved: str | None) -> None:
    assert _resolve(raw) == resolved


@given(st.text().filter(lambda t: "${" not in t))
def test_text_without_references_is_itself(text: str) -> None:
    assert _resolve(text) == text
