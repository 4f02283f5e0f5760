"""Quantum's `{expression}` templates in flash and redirect texts: filled when cases are generated, matched
as wildcards when a case is run (pure).

A component writes `flash="Email sent to {recipientEmail}!"` and `url="{application.basePath}/admin"`; a
Quantum server sends them filled in (`Email sent to a@b.co!`, `/blog/admin`). The generator fills what it
knows (`fill`: the values its case sends, the project's base_path) and leaves the rest; an expectation
that still holds `{...}` matches any text there (`search`).

The grammar, shared by both: `{...}` (no brace inside) is an expression; `{{` and `}}` are a literal `{` and
`}`; any other brace is itself. A filled value is escaped (`{` -> `{{`), so it is always matched literally.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

BASE_PATH = "application.basePath"

Part = tuple[bool, str]  # (is an expression, its text: the expression without braces, or literal text)


def parts(template: str) -> list[Part]:
    """The template as literal runs and expressions, in order (adjacent literals joined)."""
    out: list[Part] = []
    literal: list[str] = []
    i, n = 0, len(template)
    while i < n:
        if template.startswith("{{", i) or template.startswith("}}", i):
            literal.append(template[i])
            i += 2
            continue
        if template[i] == "{":
            end = template.find("}", i + 1)
            if end != -1 and "{" not in template[i + 1:end]:
                if literal:
                    out.append((False, "".join(literal)))
                    literal = []
                out.append((True, template[i + 1:end]))
                i = end + 1
                continue
        literal.append(template[i])
        i += 1
    if literal:
        out.append((False, "".join(literal)))
    return out


def escape(text: str) -> str:
    """Literal text as a template that matches exactly it."""
    return text.replace("{", "{{").replace("}", "}}")


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def fill(template: str, values: Mapping[str, object], base_path: str = "") -> str:
    """`{name}` and `{form.name}` of a value in `values` -> that value, `{application.basePath}` -> base_path;
    every other expression is left as it is (a wildcard when matched)."""
    out: list[str] = []
    for expression, text in parts(template):
        if not expression:
            out.append(escape(text))
            continue
        name = text.strip()
        key = name.removeprefix("form.")
        if name == BASE_PATH:
            out.append(escape(base_path))
        elif name in values:
            out.append(escape(_shown(values[name])))
        elif key in values:
            out.append(escape(_shown(values[key])))
        else:
            out.append("{" + text + "}")
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def _pattern(template: str, suffix: bool) -> re.Pattern[str]:
    body = "".join(".*?" if expression else re.escape(text) for expression, text in parts(template))
    return re.compile(f"(?:{body})\\Z" if suffix else body, re.S)


def search(template: str, text: str) -> bool:
    """`text` contains the template, each `{...}` standing for any text (empty included)."""
    return _pattern(template, False).search(text) is not None


def ends_with(template: str, text: str) -> bool:
    """`text` ends with the template (or is it), each `{...}` standing for any text."""
    return _pattern(template, True).search(text) is not None
