"""core/escaping: text others wrote keeps the structure of each sink it reaches, checked with the real parsers
of each (markdown-it-py for CommonMark, lxml for XML 1.0) over any text hypothesis can make."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from lxml import etree
from markdown_it import MarkdownIt
from markdown_it.token import Token

from reconciler.core.escaping import code_span, encodable, fence, markdown_inline, masked, one_line, xml_text

# Any text, with the characters that matter to the sinks made likely.
HOSTILE = st.lists(st.one_of(st.characters(codec=None), st.sampled_from(
    [*"`*_[]()<>!#|~&\\-+=.:1 \n\r\t\x00\x1b\x85\u2028\ufffe\uffff\ud800", "<!--", "-->", "```", "1."])),
    max_size=12).map("".join)


def _parse(markdown: str) -> list[Token]:
    return MarkdownIt("commonmark").enable("table").parse(markdown)


def _plain(token: Token) -> str:
    assert token.children is not None
    kinds = {child.type for child in token.children}
    assert kinds <= {"text", "text_special"}, kinds  # no emphasis, link, code, HTML or line break
    return "".join(child.content for child in token.children)


@given(HOSTILE)
def test_one_line_never_breaks_a_line(text: str) -> None:
    assert len(one_line(text).splitlines()) <= 1
    one_line(text).encode("utf-8")  # no lone surrogate left: this raises on one


@given(HOSTILE)
@example("x\n```\n### qrm plan\n<!-- hidden")
@example("1. item")
@example("     indented")
@example("# heading")
def test_markdown_inline_is_one_list_item_of_plain_text(text: str) -> None:
    tokens = _parse(f"- {markdown_inline(text)}\n")
    shown = one_line(text).strip()  # whitespace at the edges of a paragraph is not shown
    kinds = [t.type for t in tokens]
    if kinds == ["bullet_list_open", "list_item_open", "list_item_close", "bullet_list_close"]:
        assert not shown  # an empty item: nothing but spaces
        return
    assert kinds == ["bullet_list_open", "list_item_open", "paragraph_open", "inline", "paragraph_close",
                     "list_item_close", "bullet_list_close"]
    assert _plain(tokens[3]).strip() == shown


@given(HOSTILE.filter(lambda t: bool(t)))
@example("a ``` b")
@example("`")
@example(" a ")
def test_code_span_holds_the_text_exactly(text: str) -> None:
    tokens = _parse(f"- {code_span(text)} after\n")
    assert tokens[3].children is not None
    codes = [child for child in tokens[3].children if child.type == "code_inline"]
    if one_line(text).strip(" "):
        assert [c.content for c in codes] == [one_line(text)]


@given(st.lists(HOSTILE.map(one_line), max_size=5))
@example(["```", "````", "</details>", "<!--"])
def test_fence_holds_every_line(lines: list[str]) -> None:
    tokens = _parse("\n".join(fence(lines, "diff")) + "\nafter\n")
    assert [t.type for t in tokens][:1] == ["fence"]
    assert tokens[0].content == "".join(line + "\n" for line in lines)
    assert tokens[1].type == "paragraph_open"


@given(HOSTILE)
@example("\x1b[2J\x00\x01\ufffe\ud800")
def test_xml_text_always_parses(text: str) -> None:
    root = ET.Element("testcase", {"message": xml_text(text)})
    root.text = xml_text(text)
    parsed = etree.fromstring(ET.tostring(root, encoding="unicode"))
    assert parsed.get("message") == xml_text(text)


@pytest.mark.parametrize(("text", "shown"), [
    ("a\nb", "a\\nb"), ("tab\there", "tab\\there"), ("\x1b[2J", "\\x1b[2J"), ("\u2028", "\\u2028"),
    ("\x85", "\\x85"), ("\udcff", "\\udcff"), ("caf\u00e9 \\n", "caf\u00e9 \\n"),
])
def test_one_line_shows_controls_as_repr_does(text: str, shown: str) -> None:
    assert one_line(text) == shown


def test_encodable_only_touches_lone_surrogates() -> None:
    assert encodable("a\udcff\nb\u00e9") == "a\\udcff\nb\u00e9"


@pytest.mark.parametrize(("text", "secrets", "shown"), [
    ("password hunter22 in text", ["hunter22"], "password *** in text"),
    ("token abc-abcdef", ["abc", "abc-abcdef"], "token ***"),  # the longer first: no half-shown "***-abcdef"
    ("nothing to hide", ["", "absent"], "nothing to hide"),  # an empty secret masks nothing
    ("twice: s3cret and s3cret", ["s3cret"], "twice: *** and ***"),
])
def test_masked_hides_every_secret_longest_first(text: str, secrets: list[str], shown: str) -> None:
    assert masked(text, secrets) == shown
