"""Reading an app's quantum.config.yaml from disk (edges.manifest_files.load_app_config): the defaults without
one, and every malformed file a ManifestError naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.app_config import AppConfig
from reconciler.core.errors import ManifestError
from reconciler.edges.manifest_files import load_app_config


def load(tmp_path: Path, content: str | bytes | None) -> AppConfig:
    root, folder = tmp_path / "ws", tmp_path / "app"
    root.mkdir(exist_ok=True)
    folder.mkdir(exist_ok=True)
    if isinstance(content, bytes):
        (folder / "quantum.config.yaml").write_bytes(content)
    elif content is not None:
        (folder / "quantum.config.yaml").write_text(content)
    return load_app_config(root, folder, "../app", "blog")


def test_no_file_means_the_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, None) == AppConfig(file=None, components="components", datasources={})


def test_an_empty_file_means_the_defaults_and_is_named(tmp_path: Path) -> None:
    assert load(tmp_path, "# nothing yet\n") == AppConfig(file="../app/quantum.config.yaml")


def test_a_full_file(tmp_path: Path) -> None:
    config = load(tmp_path, """\
server:
  port: 8080
paths:
  components: ./src/components
  static: ./static
datasources:
  app-db:
    driver: ${DB_DRIVER:sqlite}
    database: ./data/app.db
  main: {driver: postgresql, host: db, port: 5432, database: shop, password: "${SHOP_PW}"}
llm: {default_model: phi3}
""")
    assert config.file == "../app/quantum.config.yaml"
    assert config.components == "src/components"
    assert sorted(config.datasources) == ["app-db", "main"]
    assert config.datasources["main"].password_secret == "SHOP_PW"


@pytest.mark.parametrize(("content", "error"), [
    ("paths:\n  components: [a, b]\n",
     "../app/quantum.config.yaml:2:3: paths.components: must be a folder of the app, like ./components, not a list"),
    ("server: {port: 8080}\npaths:\n  static: ./static\n  components: ../elsewhere\n",
     "../app/quantum.config.yaml:4:3: paths.components: '../elsewhere' is not inside the app's folder; qrm scans "
     "the project's source: folder, so the served folder must be in it (a relative path like ./components)"),
    ("datasources:\n  db:\n    driver: postgresql\n    port: lots\n",
     "../app/quantum.config.yaml:4:5: datasources.db.port: must be a port number (1-65535), not 'lots'"),
    ("datasources: [db]\n",
     "../app/quantum.config.yaml:1:1: datasources: must be a mapping of datasource names, not a list"),
    ("paths:\n  components: ./a\n  components: ./b\n",
     "../app/quantum.config.yaml:3:3: invalid YAML: found duplicate key 'components' (while reading a mapping "
     "that starts on line 2, column 3)"),
    ("paths:\n  components: ./a\n bad: indent\n",
     "../app/quantum.config.yaml:3:2: invalid YAML: did not find expected key (while parsing a block mapping that "
     "starts on line 1, column 1)"),
    ("- a\n- b\n",
     "../app/quantum.config.yaml:1:1: quantum.config.yaml must be a mapping (server:, paths:, datasources:, ...), "
     "not a list"),
    ("paths: {}\n---\npaths: {}\n", "../app/quantum.config.yaml:3:1: quantum.config.yaml must be one YAML "
                                    "document, not 2"),
    (b"paths:\n  components: caf\xe9\n", "../app/quantum.config.yaml:2: not UTF-8 text: invalid continuation byte"),
])
def test_a_malformed_file_names_file_line_and_field(tmp_path: Path, content: str | bytes, error: str) -> None:
    with pytest.raises(ManifestError) as raised:
        load(tmp_path, content)
    assert [str(p) for p in raised.value.problems] == [error]
