"""Make the text of a .q file well-formed enough for an XML parser (pure): one pass that fixes each
quirk of QUANTUM.md (bare &, HTML entities, raw < in text and SQL, unquoted or valueless attributes,
${…} inside tags, unclosed and stray tags, -- in comments) and lists each as "line N: reason".
Every newline stays where it was, so the parser's line numbers are the file's.

More than MAX_REPAIRS repairs means the file is not XML-like: TooBroken, and the caller reads it
line by line instead; the report keeps the first MAX_PROBLEMS problems and a count of the rest.
"""

from __future__ import annotations

import html.entities
import re
from bisect import bisect_right
from collections.abc import Callable

# The repair pass: tokens that may follow a "<".
_COMMENT = re.compile(r"<!--(.*?)(?:-->|\Z)", re.S)


_CDATA = re.compile(r"<!\[CDATA\[.*?(?:\]\]>|\Z)", re.S)


_PI = re.compile(r"<\?.*?(?:\?>|\Z)", re.S)


_CLOSE = re.compile(r"</([A-Za-z_][\w:.-]*)\s*>")


# No part may run over a "<" outside quotes, and a name is never given back character by character (the possessive
# ++: a ${ inside a long name was otherwise tried at each of its characters), so that a hostile file cannot make
# the repair quadratic.
_ATTR_PART = r"""(?:\s*\$\{[^}<]*\}|\s+[^\s=>/"'<]++(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s<>"']++))?)"""


_OPEN = re.compile(r"<([A-Za-z_][\w:.-]*)(" + _ATTR_PART + r"*)\s*(/?)>")


_ATTR = re.compile(r"""\s*(?:(\$\{[^}<]*\})|([^\s=>/"'<]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s<>"']+))?)""")


_ENTITY = re.compile(r"&(?:#[0-9]+|#x[0-9a-fA-F]+|([A-Za-z][A-Za-z0-9]*));")


_MARKUP = re.compile(r"[<&]")


_MARKUP_STARTS = frozenset("/!?_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


_XML_ENTITIES = frozenset({"amp", "lt", "gt", "quot", "apos"})


VOID = frozenset({"br", "meta", "input", "hr", "img", "link", "area", "base", "col", "embed", "source", "wbr"})


MAX_REPAIRS = 5_000  # beyond this many repairs a file is not XML-like: the line-based reader takes over


MAX_PROBLEMS = 200  # a hostile file may have millions; the report keeps the first ones and a count


# lxml (without huge_tree) refuses elements nested deeper than 256, the wrapper element included: a deeper file is
# not XML-like, and the bound keeps the stack of open elements (searched at each closing tag) short.
MAX_DEPTH = 255


class TooBroken(Exception):
    """So many repairs are needed (or elements nested so deep) that the file is not XML-like: the line-based
    reader takes over. reason says why, for the file's problems."""

    def __init__(self, line: int, reason: str = f"more than {MAX_REPAIRS} repairs needed; repair given up") -> None:
        super().__init__(line)
        self.line = line
        self.reason = reason


class Lines:
    """Line number of an offset, computed only when a problem is reported."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._starts: list[int] | None = None

    def __call__(self, offset: int) -> int:
        if self._starts is None:
            self._starts = [m.end() for m in re.finditer("\n", self._text)]
        return bisect_right(self._starts, offset) + 1


def repair(text: str, problems: list[str]) -> str:
    """Fix every quirk that keeps lxml from reading the file, keeping every newline where it was."""
    line = Lines(text)
    out: list[str] = []
    stack: list[str] = []
    pos = 0
    length = len(text)
    while pos < length:
        if len(problems) >= MAX_PROBLEMS and len(problems) + getattr(problems, "dropped", 0) > MAX_REPAIRS:
            raise TooBroken(line(pos))
        found = _MARKUP.search(text, pos)
        if found is None:
            out.append(text[pos:])
            break
        start = found.start()
        out.append(text[pos:start])
        if text[start] == "&":
            out.append(_fix_amp(text, start, line, problems, "text"))
            pos = _entity_end(text, start)
            continue
        if start + 1 < length and text[start + 1] not in _MARKUP_STARTS:
            sql = "SQL " if stack and stack[-1] == "q:query" else ""
            problems.append(f"line {line(start)}: raw < in {sql}text escaped")
            out.append("&lt;")
            pos = start + 1
            continue
        pos = _repair_markup(text, start, out, stack, line, problems)
    for name in reversed(stack):
        if name.lower() != "q:else":
            problems.append(f"line {line(length)}: <{name}> never closed; closed at the end of the file")
        out.append(f"</{name}>")
    return "".join(out)


def _entity_end(text: str, start: int) -> int:
    match = _ENTITY.match(text, start)
    return match.end() if match else start + 1


def _fix_amp(text: str, start: int, line: Callable[[int], int], problems: list[str], where: str) -> str:
    match = _ENTITY.match(text, start)
    if match is None:
        problems.append(f"line {line(start)}: bare & in {where} escaped")
        return "&amp;"
    name = match.group(1)
    if name is None or name in _XML_ENTITIES:
        return match.group(0)
    codepoint = html.entities.name2codepoint.get(name)
    if codepoint is not None:
        problems.append(f"line {line(start)}: HTML entity &{name}; written as a character reference")
        return f"&#{codepoint};"
    problems.append(f"line {line(start)}: unknown entity &{name}; escaped")
    return "&amp;" + match.group(0)[1:]


def _repair_markup(text: str, start: int, out: list[str], stack: list[str], line: Lines,
                   problems: list[str]) -> int:
    """Repair the markup at text[start] == "<"; append the result to out; return where to go on."""
    in_sql = bool(stack) and stack[-1] == "q:query"
    if text.startswith("<!--", start):
        match = _COMMENT.match(text, start)
        assert match is not None
        body = match.group(1)
        if "--" in body or body.endswith("-"):
            problems.append(f"line {line(start)}: -- inside a comment")
            body = body.replace("--", "- -")
            if body.endswith("-"):
                body += " "
        out.append(f"<!--{body}-->")
        return match.end()
    if text.startswith("<![CDATA[", start):
        match = _CDATA.match(text, start)
        assert match is not None
        chunk = match.group(0)
        if not chunk.endswith("]]>"):
            problems.append(f"line {line(start)}: CDATA section never closed; closed at the end of the file")
            chunk += "]]>"
        out.append(chunk)
        return match.end()
    if text.startswith("<?", start):
        match = _PI.match(text, start)
        assert match is not None
        problems.append(f"line {line(start)}: processing instruction dropped")
        out.append("\n" * match.group(0).count("\n"))
        return match.end()
    close = _CLOSE.match(text, start)
    if close is not None and not (in_sql and close.group(1) != "q:query" and ":" not in close.group(1)):
        name = close.group(1)
        if name.lower() in VOID:
            problems.append(f"line {line(start)}: closing tag </{name}> of a void element dropped")
        elif name in stack:
            while stack[-1] != name:
                dangling = stack.pop()
                if dangling.lower() != "q:else":
                    problems.append(f"line {line(start)}: <{dangling}> never closed; closed before </{name}>")
                else:
                    problems.append(f"line {line(start)}: unclosed <q:else> closed before </{name}>")
                out.append(f"</{dangling}>")
            stack.pop()
            out.append(close.group(0))
        else:
            problems.append(f"line {line(start)}: stray closing tag </{name}> dropped")
        return close.end()
    opened = _OPEN.match(text, start)
    if opened is None or (in_sql and ":" not in opened.group(1)):
        problems.append(f"line {line(start)}: raw < in {'SQL ' if in_sql else ''}text escaped")
        out.append("&lt;")
        return start + 1
    name = opened.group(1)
    attributes = _repair_attributes(opened.group(2), opened.start(2), text, name, line, problems)
    self_closing = opened.group(3) == "/"
    if not self_closing and name.lower() in VOID:
        problems.append(f"line {line(start)}: unclosed void tag <{name}> closed")
        self_closing = True
    out.append(f"<{name}{attributes}{'/' if self_closing else ''}>")
    if not self_closing:
        stack.append(name)
        if len(stack) > MAX_DEPTH:
            raise TooBroken(line(start), f"elements nested more than {MAX_DEPTH} deep; repair given up")
    return opened.end()


def _repair_attributes(raw: str, offset: int, text: str, tag: str, line: Lines, problems: list[str]) -> str:
    parts: list[str] = []
    seen: set[str] = set()
    for match in _ATTR.finditer(raw):
        where = offset + match.start()
        if len(problems) + getattr(problems, "dropped", 0) > MAX_REPAIRS:
            raise TooBroken(line(where))
        if match.group(1) is not None:
            problems.append(f"line {line(where)}: ${{…}} inside <{tag}> dropped")
            parts.append("\n" * match.group(1).count("\n"))
            continue
        name = match.group(2)
        if name is None:
            continue
        newlines = "\n" * match.group(0).count("\n")
        separator = newlines or " "
        if name in seen:
            problems.append(f"line {line(where)}: duplicate attribute {name} in <{tag}>; the first is kept")
            parts.append(newlines)
            continue
        seen.add(name)
        value = match.group(3)
        if value is None:
            problems.append(f"line {line(where)}: valueless attribute {name} in <{tag}>")
            parts.append(f'{separator}{name}="{name}"')
            continue
        if value[0] in "\"'":
            quote, body = value[0], value[1:-1]
        else:
            problems.append(f"line {line(where)}: unquoted value of {name} in <{tag}>")
            quote, body = '"', value
        if "<" in body:
            problems.append(f"line {line(where)}: < inside the value of {name} in <{tag}>")
            body = body.replace("<", "&lt;")
        if "&" in body:
            body = _fix_attr_amps(body, where, text, line, problems, f"the value of {name}")
        parts.append(f"{separator}{name}={quote}{body}{quote}")
    return "".join(parts)


def _fix_attr_amps(body: str, where: int, text: str, line: Lines, problems: list[str], what: str) -> str:
    out: list[str] = []
    pos = 0
    while True:
        amp = body.find("&", pos)
        if amp < 0:
            out.append(body[pos:])
            return "".join(out)
        out.append(body[pos:amp])
        if len(problems) + getattr(problems, "dropped", 0) > MAX_REPAIRS:
            raise TooBroken(line(where))
        if body.startswith("&lt;", amp):
            out.append("&lt;")
            pos = amp + 4
            continue
        match = _ENTITY.match(body, amp)
        if match is None:
            problems.append(f"line {line(where)}: bare & in {what} escaped")
            out.append("&amp;")
            pos = amp + 1
        else:
            out.append(_fix_amp(body, amp, lambda _offset: line(where), problems, what))
            pos = match.end()


class Problems(list[str]):
    """A list that keeps the first MAX_PROBLEMS entries and counts the rest."""

    dropped = 0

    def append(self, item: str) -> None:
        if len(self) < MAX_PROBLEMS:
            super().append(item)
        else:
            self.dropped += 1


def final_problems(problems: list[str]) -> tuple[str, ...]:
    """The repairs (the first MAX_PROBLEMS, then a count of the others), then the verdicts."""
    dropped = problems.dropped if isinstance(problems, Problems) else max(0, len(problems) - MAX_PROBLEMS)
    if not dropped:
        return tuple(problems)
    head = problems[:MAX_PROBLEMS]
    tail = problems[MAX_PROBLEMS:] if isinstance(problems, Problems) else []
    return (*head, f"line 0: and {dropped} more problems", *tail)
