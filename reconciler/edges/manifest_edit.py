"""Edits of manifest files that keep everything else of the file: a document appended, or one removed.

The writes of `qrm ports allocate` / `release` (and the API behind them) change one document of a file a
person may also edit, so the rest of the file stays byte for byte: comments, quoting, key order and
blank lines. The file is cut at its `---` lines; only the document asked for is added or dropped, and
the new document is written by PyYAML, the YAML 1.1 library that reads the manifests (so `yes`,
`on` or `1_000` as a name is quoted: a YAML 1.2 writer such as ruamel.yaml leaves them bare, and they
would read back as a boolean or a number).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from reconciler.core.errors import QrmError

_SEPARATOR = re.compile(r"^---(?=[ \t]|$)", re.MULTILINE)


@dataclass(frozen=True)
class DocumentSpan:
    """One document of a file: its text is text[start:end], from its `---` line to the next one (so comments
    just above a `---` go with the document before); `data` is what it holds (None for a comment-only part)."""

    start: int
    end: int
    data: Any


def render_document(mapping: dict[str, Any]) -> str:
    """One YAML document (block style, keys in the given order), ending in a newline."""
    import yaml

    return yaml.safe_dump(mapping, sort_keys=False, default_flow_style=False, allow_unicode=True)


def appended(text: str, document: str) -> str:
    """`text` with `document` added as its last document: the existing bytes unchanged, then `---`."""
    if not text.strip():
        return document
    return text + ("" if text.endswith("\n") else "\n") + "---\n" + document


def documents(text: str, where: str) -> list[DocumentSpan]:
    """The documents of a multi-document file, each with where its text starts and ends."""
    import yaml

    cuts = [0] + [m.start() for m in _SEPARATOR.finditer(text) if m.start() > 0] + [len(text)]
    spans = []
    for start, end in itertools.pairwise(cuts):
        part = text[start:end]
        try:
            data = yaml.load(_SEPARATOR.sub("", part, count=1) if part.startswith("---") else part,
                             Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            raise QrmError(f"{where}: cannot be edited: invalid YAML ({str(exc).splitlines()[0]})") from None
        spans.append(DocumentSpan(start, end, data))
    return spans


def without(text: str, span: DocumentSpan) -> str:
    """`text` with one document cut out; "" when nothing but comments and separators would remain."""
    rest = text[:span.start] + text[span.end:]
    meaningful = [line for line in rest.splitlines() if line.strip() and not line.lstrip().startswith("#")
                  and not _SEPARATOR.match(line)]
    return rest if meaningful else ""
