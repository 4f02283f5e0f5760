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
from collections.abc import Mapping

BASE_PATH = "application.basePath"

Part = tuple[bool, str]  # (is an expression, its text: the expression without braces, or literal text)


def parts(template: str) -> list[Part]:
    """The template as literal runs and expressions, in order (adjacent literals joined)."""
    out: list[Part] = []
    literal: list[str] = []
    i, n = 0, len(template)
    close = -2  # the first "}" after the last "{" seen, -1 when there is none (remembered: a run of "{" without "}"
    # searched to the end at each of them, which was quadratic); -2: not searched yet
    while i < n:
        if template.startswith("{{", i) or template.startswith("}}", i):
            literal.append(template[i])
            i += 2
            continue
        if template[i] == "{":
            if close != -1 and close < i + 1:
                close = template.find("}", i + 1)
            end = close
            if end != -1 and template.find("{", i + 1, end) == -1:
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
def _literals(template: str) -> tuple[tuple[str, ...], bool]:
    """The literal runs of a template in order, and whether it ends with an expression. Matching is by str.find
    from left to right (the leftmost place of each literal leaves the most room to the next), never a regular
    expression: `a.*?b.*?c` backtracked over a server's text in polynomial time (5 KB in two minutes)."""
    split = parts(template)
    return tuple(text for expression, text in split if not expression), bool(split) and split[-1][0]


def _in_order(literals: tuple[str, ...], text: str, end: int) -> bool:
    pos = 0
    for literal in literals:
        found = text.find(literal, pos, end)
        if found < 0:
            return False
        pos = found + len(literal)
    return True


def search(template: str, text: str) -> bool:
    """`text` contains the template, each `{...}` standing for any text (empty included)."""
    literals, _ = _literals(template)
    return _in_order(literals, text, len(text))


def ends_with(template: str, text: str) -> bool:
    """`text` ends with the template (or is it), each `{...}` standing for any text."""
    literals, open_end = _literals(template)
    if open_end or not literals:
        return _in_order(literals, text, len(text))
    last = literals[-1]
    return text.endswith(last) and _in_order(literals[:-1], text, len(text) - len(last))
