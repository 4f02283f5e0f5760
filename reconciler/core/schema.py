"""JSON Schemas of the manifest kinds and of qrm.yaml, generated from the models (pure)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from reconciler.core.models import MANIFEST_KINDS, Manifest, Settings

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
MANIFEST_SCHEMA = "manifest.schema.json"
MODELINE = f"# yaml-language-server: $schema=../schemas/{MANIFEST_SCHEMA}"


def _document(schema: dict[str, Any], title: str, description: str) -> str:
    schema = {"$schema": SCHEMA_DIALECT, **schema, "title": title, "description": description}
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def json_schemas() -> dict[str, str]:
    """File name -> content of every schema under schemas/."""
    files = {
        MANIFEST_SCHEMA: _document(
            TypeAdapter(Manifest).json_schema(), "qrm manifest",
            "Any document under manifests/: its `kind` picks one of the kinds."),
        "qrm.schema.json": _document(Settings.model_json_schema(), "qrm.yaml", "Settings of one qrm workspace."),
    }
    for kind, model in MANIFEST_KINDS.items():
        files[f"{kind.lower()}.schema.json"] = _document(model.model_json_schema(), kind, f"A qrm {kind} manifest.")
    return dict(sorted(files.items()))
