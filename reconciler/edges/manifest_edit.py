"""Edits of manifest files that keep everything else of the file: a document appended, or one removed.

The writes of `qrm ports allocate` / `release` (and the API behind them) change one document of a file a
person may also edit, so the rest of the file stays byte for byte: comments, quoting, key order and
blank lines. The file is cut at its `---` lines; only the document asked for is added or dropped, and
the new document is written by ruamel.yaml (which quotes any value that would otherwise read as
something else).
"""

from __future__ import annotations

import io
import itertools
import re
from dataclasses import dataclass
from typing import Any

from reconciler.core.errors import QrmError

_SEPARATOR = re.compile(r"^---(?=[ \t]|$)", re.MULTILINE)


@dataclass(frozen=True)
class DocumentSpan:
    """One document of a file: its text is text[start:end] (its `---` line and the comments above it
    down to the previous document included); `data` is what it holds (None for an empty or comment-only part)."""

    start: int
    end: int
    data: Any


def render_document(mapping: dict[str, Any]) -> str:
    """One YAML document (block style, keys in the given order), ending in a newline."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt", pure=True)
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(mapping, out)
    return out.getvalue()


def appended(text: str, document: str) -> str:
    """`text` with `document` added as its last document: the existing bytes unchanged, then `---`."""
    if not text.strip():
        return document
    return text + ("" if text.endswith("\n") else "\n") + "---\n" + document


def documents(text: str, where: str) -> list[DocumentSpan]:
    """The documents of a multi-document file, each with where its text starts and ends."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    cuts = [0] + [m.start() for m in _SEPARATOR.finditer(text) if m.start() > 0] + [len(text)]
    yaml = YAML(typ="safe")
    spans = []
    for start, end in itertools.pairwise(cuts):
        part = text[start:end]
        try:
            data = yaml.load(_SEPARATOR.sub("", part, count=1) if part.startswith("---") else part)
        except YAMLError as exc:
            raise QrmError(f"{where}: cannot be edited: invalid YAML ({str(exc).splitlines()[0]})") from None
        spans.append(DocumentSpan(start, end, data))
    return spans


def without(text: str, span: DocumentSpan) -> str:
    """`text` with one document cut out; "" when nothing but comments and separators would remain."""
    rest = text[:span.start] + text[span.end:]
    meaningful = [line for line in rest.splitlines() if line.strip() and not line.lstrip().startswith("#")
                  and not _SEPARATOR.match(line)]
    return rest if meaningful else ""
