"""JSON Schemas of the manifest kinds: generated from the models, committed in schemas/, usable by editors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from reconciler.core.schema import MANIFEST_SCHEMA, json_schemas
from tests.support.paths import REPO
from tests.support.workspace import Workspace

GENERATED = json_schemas()


def test_the_committed_schemas_are_what_the_models_generate() -> None:
    committed = {p.name: p.read_text() for p in (REPO / "schemas").glob("*.json")}
    stale = sorted(name for name in GENERATED if committed.get(name) != GENERATED[name])
    extra = sorted(set(committed) - set(GENERATED))
    assert not stale and not extra, (
        f"schemas/ is stale (changed or missing: {stale}; no longer generated: {extra}): run `qrm schema` "
        "and commit schemas/")


def test_there_is_a_schema_for_every_kind_for_any_manifest_and_for_qrm_yaml() -> None:
    assert sorted(GENERATED) == [
        "alert.schema.json", "host.schema.json", "manifest.schema.json", "notifier.schema.json",
        "portrange.schema.json", "project.schema.json", "qrm.schema.json", "reservation.schema.json",
        "service.schema.json", "testsuite.schema.json",
    ]
    for content in GENERATED.values():
        jsonschema.Draft202012Validator.check_schema(json.loads(content))


def test_qrm_schema_writes_the_schemas_and_then_is_current(workspace: Workspace) -> None:
    written = workspace.qrm("schema")
    assert written.exit_code == 0, written.output
    assert "Wrote 10 schema file(s)" in written.output
    assert {p.name: p.read_text() for p in (workspace.root / "schemas").iterdir()} == GENERATED
    assert workspace.qrm("schema", "--check").exit_code == 0
    again = workspace.qrm("schema")
    assert again.exit_code == 0
    assert "schemas/ is current." in again.output


def edit(path: Path) -> None:
    path.write_text(path.read_text().replace('"title": "Service"', '"title": "Servise"'))


def delete(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize("damage", [edit, delete], ids=["edited", "deleted"])
def test_qrm_schema_check_fails_when_a_schema_file_is_stale(workspace: Workspace, damage: Any) -> None:
    assert workspace.qrm("schema").exit_code == 0
    target = workspace.root / "schemas" / "service.schema.json"
    damage(target)
    assert not target.exists() or target.read_text() != GENERATED["service.schema.json"]
    check = workspace.qrm("schema", "--check")
    assert check.exit_code == 1
    assert check.stderr.splitlines() == ["stale: schemas/service.schema.json"]
    assert workspace.qrm("schema").exit_code == 0
    assert workspace.qrm("schema", "--check").exit_code == 0


def test_qrm_schema_check_fails_in_a_workspace_without_schemas(workspace: Workspace) -> None:
    check = workspace.qrm("schema", "--check")
    assert check.exit_code == 1
    assert len(check.stderr.splitlines()) == len(GENERATED)


# --- the schema accepts what qrm accepts and rejects what it rejects -------------------------------

MANIFEST_VALIDATOR = jsonschema.Draft202012Validator(json.loads(GENERATED[MANIFEST_SCHEMA]))
EXAMPLE_DOCUMENTS = [
    pytest.param(doc, id=f"{path.name}#{index + 1}")
    for path in sorted((REPO / "manifests").glob("*.yaml"))
    for index, doc in enumerate(yaml.safe_load_all(path.read_text()))
    if doc is not None
]


def test_the_bundled_example_has_documents_of_several_kinds() -> None:
    kinds = {param.values[0]["kind"] for param in EXAMPLE_DOCUMENTS}
    assert {"PortRange", "Reservation", "Service", "Project"} <= kinds


@pytest.mark.parametrize("document", EXAMPLE_DOCUMENTS)
def test_every_document_of_the_bundled_example_fits_the_manifest_schema(document: dict[str, Any]) -> None:
    errors = [error.message for error in MANIFEST_VALIDATOR.iter_errors(document)]
    assert errors == []


SERVICE = {"kind": "Service", "name": "quantum-admin", "type": "app", "port": 8001,
           "health": {"path": "/health", "interval": "30s"}}
NOT_MANIFESTS = {
    "unknown top-level field": {**SERVICE, "prot": 8001},
    "unknown field in health": {**SERVICE, "health": {"path": "/health", "retries": 3}},
    "unknown kind": {**SERVICE, "kind": "Servise"},
    "missing kind": {key: value for key, value in SERVICE.items() if key != "kind"},
    "port out of range": {**SERVICE, "port": 70000},
    "port not a number": {**SERVICE, "port": "eighty"},
    "bad duration": {**SERVICE, "health": {"path": "/health", "interval": "30 seconds"}},
    "plain password": {"kind": "Project", "name": "quantumblog", "environments": {"dev": {}},
                       "services": {"db": {"type": "database"}},
                       "datasources": {"db": {"driver": "postgresql", "service": "db", "database": "blog",
                                              "password": "hunter2"}}},
}


def test_the_service_the_invalid_documents_are_made_from_is_valid() -> None:
    assert MANIFEST_VALIDATOR.is_valid(SERVICE)


@pytest.mark.parametrize("document", NOT_MANIFESTS.values(), ids=NOT_MANIFESTS.keys())
def test_the_manifest_schema_rejects_a_document_qrm_rejects(document: dict[str, Any]) -> None:
    assert not MANIFEST_VALIDATOR.is_valid(document)
