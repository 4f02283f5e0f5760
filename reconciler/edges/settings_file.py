"""Edits of qrm.yaml that keep its comments and formatting (ruamel.yaml round trip): the `tokens:`
entries of `qrm token create` and `revoke`. Text in, text out; the flow writes it atomically."""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from reconciler.core.errors import QrmError


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long line the user wrote
    return yaml


def _load(text: str) -> tuple[YAML, CommentedMap]:
    yaml = _yaml()
    data = yaml.load(text) if text.strip() else None
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise QrmError("qrm.yaml must be a mapping of settings")
    return yaml, data


def _dump(yaml: YAML, data: CommentedMap) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def with_token(text: str, entry: dict[str, Any]) -> str:
    """qrm.yaml's text with `entry` added at the end of `tokens:` (made when missing), as one flow
    mapping on one line, so each token is one line of a diff."""
    yaml, data = _load(text)
    tokens = data.get("tokens")
    if tokens is None:
        tokens = CommentedSeq()
        data["tokens"] = tokens
    if not isinstance(tokens, CommentedSeq):
        raise QrmError("qrm.yaml: tokens must be a list")
    item = CommentedMap(entry)
    item["scopes"] = CommentedSeq(entry["scopes"])
    item["scopes"].fa.set_flow_style()
    item.fa.set_flow_style()
    tokens.append(item)
    return _dump(yaml, data)


def without_token(text: str, name: str) -> str:
    """qrm.yaml's text without the token `name` (the caller knows it is there); the rest as it was."""
    yaml, data = _load(text)
    tokens = data.get("tokens")
    if not isinstance(tokens, CommentedSeq):
        raise QrmError("qrm.yaml: tokens must be a list")
    for index, item in enumerate(tokens):
        if isinstance(item, CommentedMap) and item.get("name") == name:
            del tokens[index]
            break
    return _dump(yaml, data)
