"""Quantum templates in flash and redirect expectations: filled when generating, `{...}` a wildcard when run."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core import templates
from reconciler.core.assertions import Response, evaluate
from reconciler.core.models import Assertion

FORM = {"action": "send", "recipientEmail": "a@b.co", "age": 18, "price": 1.5, "agree": True}


@pytest.mark.parametrize(("template", "base_path", "filled"), [
    ("Email sent to {recipientEmail}!", "", "Email sent to a@b.co!"),
    ("Email sent to {form.recipientEmail}!", "", "Email sent to a@b.co!"),
    ("Email sent to { recipientEmail }!", "", "Email sent to a@b.co!"),
    ("{application.basePath}/admin", "/blog", "/blog/admin"),
    ("{application.basePath}/admin", "", "/admin"),
    ("{age} years, {price} each, {agree}", "", "18 years, 1.5 each, true"),
    ("Hello {user.name}", "", "Hello {user.name}"),  # not sent by the case: left, a wildcard when run
    ("Uploaded: {uploadResult.filename}", "/blog", "Uploaded: {uploadResult.filename}"),
    ("Welcome back!", "/blog", "Welcome back!"),
    ("a {{literal}} b", "", "a {{literal}} b"),  # an escaped brace stays escaped
    ("a { b", "", "a {{ b"),  # a lone brace is literal text, written escaped
])
def test_fill(template: str, base_path: str, filled: str) -> None:
    assert templates.fill(template, FORM, base_path) == filled


def test_a_filled_value_with_braces_is_matched_literally() -> None:
    filled = templates.fill("Hi {name}", {"name": "{x}"})
    assert filled == "Hi {{x}}"
    assert templates.search(filled, "Hi {x}")
    assert not templates.search(filled, "Hi Ann")


@pytest.mark.parametrize(("expected", "flash", "ok"), [
    ("Hello {user.name}", "Hello Ann", True),
    ("Hello {user.name}", "Bye Ann", False),
    ("Hello {user.name}!", "Hello Ann and Bob!", True),
    ("Hello {user.name}", "Hello ", True),  # any text includes none
    ("{a} and {b}", "x and y", True),
    ("{a} and {b}", "x or y", False),
    ("Welcome back!", "Oh, Welcome back! again", True),  # a substring, as before
    ("Price (USD) {p}.", "Price (USD) 3.", True),  # regex characters are plain text
    ("Price (USD) {p}.", "Price USD 3.", False),
    ("a {{x}} b", "a {x} b", True),  # {{ and }} are literal braces
    ("a {{x}} b", "a y b", False),
    ("a { b", "a { b", True),  # a lone brace is itself
])
def test_flash_expectations_match_any_text_for_an_expression(expected: str, flash: str, ok: bool) -> None:
    response = Response(status=302, headers={}, body="", elapsed_ms=1, location="/", flash=flash)
    assert evaluate(Assertion(flash=expected), response).passed is ok


@pytest.mark.parametrize(("expected", "location", "ok"), [
    ("/blog/admin", "/blog/admin", True),
    ("/admin", "http://127.0.0.1:8000/admin", True),  # the Location ends with it, as before
    ("/admin", "/admin/x", False),
    ("/posts/{post.id}", "/posts/42", True),
    ("/posts/{post.id}", "http://h/blog/posts/42", True),
    ("/posts/{post.id}/edit", "/posts/42/view", False),
    ("{application.basePath}/admin", "/quantum-blog/admin", True),  # left unfilled: any prefix
    ("/search?q={term}", "/search?q=a+b", True),
])
def test_redirect_expectations_match_any_text_for_an_expression(expected: str, location: str, ok: bool) -> None:
    response = Response(status=302, headers={}, body="", elapsed_ms=1, location=location)
    assert evaluate(Assertion(redirect=expected), response).passed is ok


def test_no_flash_or_no_location_fails() -> None:
    response = Response(status=200, headers={}, body="", elapsed_ms=1)
    assert not evaluate(Assertion(flash="{x}"), response).passed
    assert not evaluate(Assertion(redirect="{x}"), response).passed


# A template: literal runs (any text, braces escaped) between expressions.
_literal = st.text(max_size=12)
_name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,10}", fullmatch=True).filter(
    lambda n: not n.startswith("form.") and n != templates.BASE_PATH)  # those two are filled by other rules


@given(st.lists(st.tuples(_literal, _name), min_size=1, max_size=4), _literal,
       st.lists(st.text(max_size=12), min_size=4, max_size=4), st.text(max_size=6), st.text(max_size=6))
def test_a_template_with_wildcards_matches_any_fill(pieces: list[tuple[str, str]], tail: str, fills: list[str],
                                                    before: str, after: str) -> None:
    template = "".join(templates.escape(text) + "{" + name + "}" for text, name in pieces) + templates.escape(tail)
    rendered = "".join(text + fill for (text, _), fill in zip(pieces, fills, strict=False)) + tail
    assert templates.search(template, before + rendered + after)  # flash: anywhere in the text
    assert templates.ends_with(template, before + rendered)  # redirect: at the end of the Location


@given(st.dictionaries(_name, st.text(max_size=8), max_size=3), st.lists(st.tuples(_literal, _name), max_size=4),
       st.text(max_size=8))
def test_filling_what_the_case_sends_still_matches_what_the_server_renders(
        sent: dict[str, str], pieces: list[tuple[str, str]], other: str) -> None:
    """The server renders every expression; the generator fills those it knows: the rest match anything."""
    template = "".join(templates.escape(text) + "{" + name + "}" for text, name in pieces)
    rendered = "".join(text + sent.get(name, other) for text, name in pieces)
    assert templates.search(templates.fill(template, sent), rendered)
