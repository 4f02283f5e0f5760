"""Reading a flash message (pure, stdlib only): from a `session` cookie or from the markup of a page.

A Quantum server is a Flask app: its `session` cookie is Flask's signed (not encrypted) cookie made by
itsdangerous, either `base64url(JSON).timestamp.signature` or, when the JSON compresses well,
`.base64url(zlib(JSON)).timestamp.signature`. The signature is never checked (no key is needed to read
a signed cookie, and qrm has none). The flash in it is Quantum's `{"flash": {"message": ..., "type": ...}}`,
Flask's own `{"_flashes": [["category", "message"], ...]}` (each pair tagged `{" t": [...]}` by Flask's
serializer), or the older `{"flashes": [...]}` list; the plain `base64url(JSON).signature` and unsigned
`base64url(JSON)` values are read too.

A page shows its flash in markup of its own choosing: `flash_from_page` takes the text of the elements
whose class names a flash (`alert alert-success`, `flash flash-error`, `notice`, `messages`, ...) or
whose role is `alert` or `status`.

Hostile input (a zlib bomb, non-JSON, deeply nested JSON or HTML, broken HTML) gives None, never an
exception.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections.abc import Iterable
from html.parser import HTMLParser
from typing import Any

MAX_COOKIE_CHARS = 64 * 1024  # a browser keeps 4 KiB per cookie; anything far larger is not a session
MAX_DECOMPRESSED = 64 * 1024  # a zlib bomb stops here
MAX_PAGE_CHARS = 4 * 1024 * 1024  # the runner reads at most 1 MB of body
FLASH_KEYS = ("flash", "flashes", "_flashes")

# A class word that names a flash: the word, its plural, or word-TYPE / word_TYPE with a usual flash type.
FLASH_WORDS = frozenset({"flash", "alert", "notice", "message"})
FLASH_PLURALS = frozenset({"flashes", "alerts", "notices", "messages"})
FLASH_TYPES = frozenset({"success", "error", "danger", "warning", "info", "notice", "message", "primary",
                         "secondary", "dark", "light"})
FLASH_ROLES = frozenset({"alert", "status"})
# A page with no attribute like these has no flash element: it is not parsed (html.parser is pure Python).
# (Searched in the lowered page: a case-sensitive search is four times faster.)
_CANDIDATE_START = re.compile(r"(?:class|role)\s*=")
_CANDIDATE_WORDS = ("flash", "alert", "notice", "message", "status")
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
                   "source", "track", "wbr"})
# Their start and end separate words: `<li>One</li><li>Two</li>` reads "One Two".
_BLOCKS = frozenset({"address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset",
                     "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
                     "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul"})
_NO_TEXT = frozenset({"script", "style"})  # their text is code, and html.parser always finds their end


# --- the session cookie ----------------------------------------------------------------------------


def _payload(value: str) -> bytes | None:
    """The JSON bytes of a cookie value, decompressed when it starts with `.`; None when unreadable."""
    text = value.strip().strip('"')
    compressed = text.startswith(".")
    if compressed:
        text = text[1:]
    segment = text.split(".", 1)[0]  # base64url has no dot: the rest is timestamp and signature
    if not segment:
        return None
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (ValueError, binascii.Error):
        return None
    if not compressed:
        return raw if len(raw) <= MAX_DECOMPRESSED else None
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(raw, MAX_DECOMPRESSED)
    except zlib.error:
        return None
    if inflater.unconsumed_tail:  # more than MAX_DECOMPRESSED: a bomb, or not a session
        return None
    return data


def _untag(value: Any) -> Any:
    """Undo the tags of Flask's TaggedJSONSerializer that a flash can carry: tuple, Markup, tagged dict key."""
    if isinstance(value, dict) and len(value) == 1:
        [(key, inner)] = value.items()
        if key == " t" and isinstance(inner, list):
            return inner
        if key == " m" and isinstance(inner, str):
            return inner
        if key == " di" and isinstance(inner, dict) and len(inner) == 1:
            [(tagged, item)] = inner.items()
            return {str(tagged).removesuffix("__"): item}
    return value


def _message(item: Any) -> str | None:
    """The text of one stored flash: a message dict, a [category, message] pair, or a plain value."""
    item = _untag(item)
    if isinstance(item, dict):
        return _scalar(_untag(item.get("message")))
    if isinstance(item, list):
        return _scalar(_untag(item[1])) if len(item) == 2 else None  # flask.flash(): (category, message)
    return _scalar(item)


def _scalar(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return None


def _messages(stored: Any) -> Iterable[str | None]:
    stored = _untag(stored)
    if isinstance(stored, list):
        return (_message(item) for item in stored)
    return (_message(stored),)


def flash_from_session_cookie(value: str | None) -> str | None:
    """The flash text in a `session` cookie value (several joined by newlines), or None."""
    if not value or len(value) > MAX_COOKIE_CHARS:
        return None
    payload = _payload(value)
    if payload is None:
        return None
    try:
        data: Any = json.loads(payload)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(data, dict):
        return None
    texts: list[str] = []
    for key in FLASH_KEYS:
        if key in data:
            texts += [t.strip() for t in _messages(data[key]) if t and t.strip()]
    return "\n".join(texts) or None


# --- the page --------------------------------------------------------------------------------------


def _is_flash_class(word: str) -> bool:
    word = word.lower()
    if word in FLASH_WORDS or word in FLASH_PLURALS:
        return True
    for separator in ("-", "_"):
        head, sep, tail = word.partition(separator)
        if sep and head in FLASH_WORDS and tail in FLASH_TYPES:
            return True
    return False


def is_flash_element(attributes: Iterable[tuple[str, str | None]]) -> bool:
    """Whether an element with these attributes shows a flash (class word or role)."""
    for name, value in attributes:
        if not value:
            continue
        name = name.lower()
        if name == "class" and any(_is_flash_class(word) for word in value.split()):
            return True
        if name == "role" and value.strip().lower() in FLASH_ROLES:
            return True
    return False


class _FlashParser(HTMLParser):
    """Collects the text of the outermost flash elements; a stack of open tags, no recursion."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.open: dict[str, int] = {}  # tag -> how many are on the stack: a stray end tag costs O(1)
        self.flash_depth: int | None = None  # stack length when the open flash element was entered
        self.skip_depth: int | None = None  # inside <script>, <style>, ...
        self.current: list[str] = []
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self.handle_data(" ")
        if tag in _VOID:
            return
        self.stack.append(tag)
        self.open[tag] = self.open.get(tag, 0) + 1
        if self.skip_depth is None and tag in _NO_TEXT:
            self.skip_depth = len(self.stack)
        if self.flash_depth is None and self.skip_depth is None and is_flash_element(attrs):
            self.flash_depth = len(self.stack)
            self.current = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:  # <br/>; <div class="alert"/> is no flash: it has no text
            self.handle_data(" ")

    def handle_endtag(self, tag: str) -> None:
        if not self.open.get(tag):
            return  # a stray end tag
        if tag in _BLOCKS:
            self.handle_data(" ")
        while self.stack:
            if self.skip_depth is not None and len(self.stack) <= self.skip_depth:
                self.skip_depth = None
            if self.flash_depth is not None and len(self.stack) <= self.flash_depth:
                self._close_flash()
            popped = self.stack.pop()
            self.open[popped] -= 1
            if popped == tag:
                return

    def handle_data(self, data: str) -> None:
        if self.flash_depth is not None and self.skip_depth is None:
            self.current.append(data)

    def _close_flash(self) -> None:
        text = " ".join("".join(self.current).split())
        if text:
            self.found.append(text)
        self.flash_depth = None
        self.current = []

    def finish(self) -> list[str]:
        self.close()
        if self.flash_depth is not None:  # an unclosed flash element at the end of the page
            self._close_flash()
        return self.found


def _has_candidate(lowered: str) -> bool:
    """A `class=` or `role=` followed by a flash word before the next `>`. Each stretch up to a `>` is searched
    once: `class=class=…` without `>` searched to the end from each of them (a regular expression did: quadratic)."""
    searched = -1  # the end of the last stretch searched: a later start before it lies in that stretch
    for start in _CANDIDATE_START.finditer(lowered):
        begin = start.end()
        if begin <= searched:
            continue
        end = lowered.find(">", begin)
        searched = len(lowered) if end < 0 else end
        if any(lowered.find(word, begin, searched) >= 0 for word in _CANDIDATE_WORDS):
            return True
    return False


def flash_from_page(html: str) -> str | None:
    """The text of the page's flash elements (whitespace collapsed, several joined by newlines), or None."""
    if not html or len(html) > MAX_PAGE_CHARS:
        return None
    lowered = html.lower()
    if not any(word in lowered for word in _CANDIDATE_WORDS) or not _has_candidate(lowered):
        return None
    parser = _FlashParser()
    try:
        parser.feed(html)
        found = parser.finish()
    except (ValueError, AssertionError, RecursionError):  # html.parser's own complaints on broken input
        return None
    return "\n".join(found) or None
