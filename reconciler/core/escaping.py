"""Text that others wrote (file names, manifest keys, what a server answers) made safe for each place qrm
writes it: a log line or one-line error, Markdown (a PR comment, summary.md), XML 1.0 (JUnit).

A `.q` file may be named `x\n```\nPlan: nothing to change` (Linux allows any byte but `/` and NUL), and a
server may answer with control characters: written raw, the first ends a code fence and forges a PR
comment, the second makes a JUnit file no XML parser accepts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Characters that break a line or a terminal: C0 controls (tab included: it misaligns columns), DEL, C1
# controls, the Unicode line and paragraph separators, and lone surrogates (undecodable file-name bytes).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# CommonMark's backslash escapes for the characters that open or close markup inside a line: emphasis,
# code spans, links and images, raw HTML and comments, entities, table cells, strikethrough. (What only
# matters at the start of a line, `#`, `-`, `1.`, never comes first: callers put a prefix before.)
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|~&])")
_BACKTICKS = re.compile(r"`+")
_ORDERED = re.compile(r"(\d{1,9})[.)]")
# Not allowed in XML 1.0 (https://www.w3.org/TR/xml/#charsets): C0 controls but tab, LF and CR; surrogates;
# U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _escaped(char: str) -> str:
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def encodable(text: str) -> str:
    """`text` with its lone surrogates (bytes that were not UTF-8, decoded with surrogateescape, as aiohttp
    decodes headers) shown as `\\udcff`: every file, database and terminal can then take it as UTF-8."""
    return _SURROGATE.sub(lambda m: _escaped(m.group()), text)


def one_line(text: str) -> str:
    """`text` on one line, its control characters shown as Python's repr shows them (`\\n`, `\\x1b`,
    `\\u2028`): a log line, an error, a table cell. Printable text, backslashes included, is left as it is."""
    return _CONTROL.sub(lambda m: _escaped(m.group()), text)


def markdown_inline(text: str) -> str:
    """`text` as literal Markdown in a line after a prefix (a list item's `- `, a table cell): one line, every
    character that could open markup (a code span, `<!--`, a link, `|` of a table) backslash-escaped, and
    what would start a block there (`#`, `-`, `+`, `=`, `1.`, leading spaces) made plain text."""
    escaped = _MARKDOWN.sub(r"\\\1", one_line(text))
    body = escaped.lstrip(" ")
    lead = "&#32;" * (len(escaped) - len(body))  # spaces that would indent into a code block
    if body[:1] in ("#", "-", "+", "="):
        body = "\\" + body
    elif (number := _ORDERED.match(body)) is not None:  # `1.` or `1)` starts an ordered list
        body = f"{number.group(1)}\\{body[len(number.group(1)):]}"
    return lead + body


def code_span(text: str) -> str:
    """`text` as an inline code span on one line: its delimiter is longer than any backtick run inside (and
    padded with a space when the text starts or ends with one), so the text cannot end it; HTML and
    emphasis are literal inside. Not for a table cell (GFM splits a cell at `|` even in code)."""
    text = one_line(text)
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    marker = "`" * (longest + 1)
    # CommonMark strips one space from each side when both are there (and the text is not all spaces)
    padded = text.startswith("`") or text.endswith("`") or (text[:1] == text[-1:] == " " and text.strip(" "))
    pad = " " if padded else ""
    return f"{marker}{pad}{text}{pad}{marker}"


def fence(lines: list[str], info: str = "") -> list[str]:
    """A fenced code block around `lines` (each already one line): its fence is longer than any run of
    backticks inside, so no line can close it (CommonMark: a closing fence is at least as long)."""
    longest = max((len(run) for line in lines for run in _BACKTICKS.findall(line)), default=0)
    marker = "`" * max(3, longest + 1)
    return [f"{marker}{info}", *lines, marker]


def xml_text(text: str) -> str:
    """`text` with the characters XML 1.0 forbids (NUL, ESC and the other C0 controls but tab, LF and CR;
    lone surrogates; U+FFFE, U+FFFF) shown as `\\x1b`-style escapes: ElementTree writes them raw, and
    then no parser reads the file."""
    return _NOT_XML.sub(lambda m: _escaped(m.group()), text)


MASK = "***"


def masked(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by ***, the longest first (so a secret inside another is not left half
    shown); empty secrets are ignored."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
