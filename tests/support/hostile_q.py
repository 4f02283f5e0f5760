"""Hostile text for the .q readers: families of fragments that made a regular expression or the repair pass
quadratic, or that a reader of real files rarely meets (runs of `<`, quotes, `="`, unclosed tags, comments and
CDATA, `${`, `&`, deep nesting). For tests/adversarial/test_q_files.py and bench/q_hostile.py.

Each family is a function of a size in characters giving a text of about that size. The families whose
name starts with `fallback:` begin with a DOCTYPE, which sends the file straight to the line-based reader.
"""

from __future__ import annotations

from collections.abc import Callable

_DOCTYPE = "<!DOCTYPE x>"


def _repeat(fragment: str, size: int, head: str = "", tail: str = "") -> str:
    return head + fragment * max(1, (size - len(head) - len(tail)) // len(fragment)) + tail


FAMILIES: dict[str, Callable[[int], str]] = {
    "runs of <": lambda n: _repeat("<", n),
    "runs of <q:": lambda n: _repeat("<q:", n),
    "runs of quotes": lambda n: _repeat('"', n),
    'runs of ="': lambda n: _repeat('="', n),
    'unclosed <a b="': lambda n: _repeat('<a b="', n),
    "unclosed <a b=": lambda n: _repeat("<a b=", n),
    "one tag, many valueless attributes": lambda n: _repeat(" b", n, "<a"),
    "one tag, many duplicate attributes": lambda n: _repeat(' b="1"', n, "<a", ">"),
    "one tag, ${ without }": lambda n: _repeat("${", n, "<a "),
    'one tag, ${" without }': lambda n: _repeat('${"', n, "<a "),
    "tags of ${ without }": lambda n: _repeat("<a ${", n),
    "unclosed comments": lambda n: _repeat("<!--", n),
    "one comment of dashes": lambda n: _repeat("-", n, "<!--"),
    "unclosed CDATA": lambda n: _repeat("<![CDATA[", n),
    "unclosed processing instructions": lambda n: _repeat("<?", n),
    "an unclosed <?xml declaration": lambda n: _repeat(" ?", n, "<?xml"),
    "runs of {": lambda n: _repeat("{", n),
    "bare &": lambda n: _repeat("&", n),
    "unknown entities without ;": lambda n: _repeat("&aaaaaaaa", n),
    "& in one attribute": lambda n: _repeat("&", n, '<a b="', '">'),
    "stray closing tags": lambda n: _repeat("</", n),
    "elements never closed": lambda n: _repeat("<a>", n),
    "deep elements, then stray closings": lambda n: _repeat("<a>", n // 2) + _repeat("</b>", n // 2),
    "SQL full of <": lambda n: _repeat("a < b ", n, "<q:query>"),
    "quotes inside quotes": lambda n: _repeat("<a b=\"<a b='", n),
    "a long attribute name": lambda n: _repeat("a", n, "<q:action "),
    "prefixes": lambda n: _repeat("<a:", n),
    "fallback: a long attribute name": lambda n: _repeat("a", n, _DOCTYPE + "<q:action "),
    "fallback: unclosed quotes": lambda n: _repeat("a='", n, _DOCTYPE + "<q:action "),
    "fallback: spaces before =": lambda n: _repeat(" ", n, _DOCTYPE + "<q:action a", "="),
    "fallback: many forms": lambda n: _repeat("<form ", n, _DOCTYPE),
}
