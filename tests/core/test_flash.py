"""Reading flashes (reconciler.core.flash): from REAL Flask session cookies, made by Flask's own session
interface (both itsdangerous forms: plain and zlib-compressed), from flask.flash()'s `_flashes`, from the
forms the runner read before, and from the usual flash markups of a page. Hostile input gives None."""

from __future__ import annotations

import base64
import html
import json
import zlib
from typing import Any

import flask
import pytest
from flask.sessions import SecureCookieSessionInterface
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from reconciler.core.flash import MAX_DECOMPRESSED, flash_from_page, flash_from_session_cookie

APP = flask.Flask("flash-cookies")
APP.secret_key = "not-a-secret-of-any-server"
SERIALIZER = SecureCookieSessionInterface().get_signing_serializer(APP)
assert SERIALIZER is not None


def flask_cookie(session: dict[str, Any]) -> str:
    """The `session` cookie value Flask sets for this session (itsdangerous, signed, maybe compressed)."""
    assert SERIALIZER is not None
    value: str = SERIALIZER.dumps(session)
    return value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


LONG = "Parameter 'recipientEmail' is required"
QUANTUM_SESSION = {"user_id": None, "csrf": "a" * 32, "visits": 3}

# (id, session as the server stores it, expected flash, compressed?)
FLASK_CASES: list[tuple[str, dict[str, Any], str | None, bool]] = [
    ("quantum-error-short", {"flash": {"message": "Nope", "type": "error"}}, "Nope", False),
    ("quantum-error-compressed", {"flash": {"message": LONG, "type": "error"}, "quantum_session": QUANTUM_SESSION},
     LONG, True),
    ("quantum-success-compressed",
     {"flash": {"message": "Email sent successfully to a@b.co!", "type": "success"},
      "quantum_session": {"history": ["/email"] * 12}}, "Email sent successfully to a@b.co!", True),
    ("quantum-no-flash", {"quantum_session": {}}, None, False),
    ("quantum-empty-message", {"flash": {"message": "   ", "type": "error"}}, None, False),
    ("quantum-flash-without-message", {"flash": {"type": "error"}}, None, False),
    ("flask-flashes-one", {"_flashes": [("error", "Bad password")]}, "Bad password", False),
    ("flask-flashes-two-compressed",
     {"_flashes": [("message", "Saved. " * 10), ("warning", "Check your email")]},
     "Saved. " * 9 + "Saved.\nCheck your email", True),
    ("flask-flashes-markup", {"_flashes": [("info", Markup("<b>Hi</b>"))]}, "<b>Hi</b>", False),
    ("older-flashes-list", {"flashes": [{"message": "Thanks, Alice!", "type": "success"}]}, "Thanks, Alice!", False),
    ("older-flashes-strings", {"flashes": ["one", "two"]}, "one\ntwo", False),
]


@pytest.mark.parametrize(("session", "expected", "compressed"), [c[1:] for c in FLASK_CASES],
                         ids=[c[0] for c in FLASK_CASES])
def test_a_real_flask_session_cookie(session: dict[str, Any], expected: str | None, compressed: bool) -> None:
    value = flask_cookie(session)
    assert value.startswith(".") is compressed, value  # the case covers the form it says it does
    assert value.count(".") == 2 + compressed  # payload.timestamp.signature
    assert flash_from_session_cookie(value) == expected


def test_the_cookie_a_flask_app_sets_through_flask_flash_and_its_session() -> None:
    app = flask.Flask("quantum-like")
    app.secret_key = "another-key"

    @app.post("/send")
    def send() -> Any:
        flask.flash("Parameter 'recipientEmail' is required", "error")
        return flask.redirect("/email")

    @app.post("/quantum")
    def quantum() -> Any:
        flask.session["flash"] = {"message": "Email sent successfully to a@b.co!", "type": "success"}
        flask.session["quantum_session"] = {"id": "x" * 40}
        return flask.redirect("/email")

    for path, expected in [("/send", "Parameter 'recipientEmail' is required"),
                           ("/quantum", "Email sent successfully to a@b.co!")]:
        response = app.test_client().post(path)  # a fresh cookie jar each
        cookie = response.headers["Set-Cookie"].split(";", 1)[0].removeprefix("session=")
        assert flash_from_session_cookie(cookie) == expected


# The forms the runner read before (base64url(JSON).signature, unsigned base64url(JSON)), still read.
OLDER_CASES: list[tuple[str, str, str | None]] = [
    ("signed-flashes", b64(json.dumps({"flashes": [{"message": "Hi", "type": "success"}]}).encode()) + ".abc123",
     "Hi"),
    ("signed-flash-dict", b64(json.dumps({"flash": {"message": "Welcome back!"}}).encode()) + ".f00d", "Welcome back!"),
    ("unsigned", b64(json.dumps({"flash": {"message": "plain"}}).encode()), "plain"),
    ("quoted", '"' + b64(json.dumps({"flash": "quoted"}).encode()) + '.sig"', "quoted"),
]


@pytest.mark.parametrize(("value", "expected"), [c[1:] for c in OLDER_CASES], ids=[c[0] for c in OLDER_CASES])
def test_the_older_cookie_forms(value: str, expected: str | None) -> None:
    assert flash_from_session_cookie(value) == expected


def zlib_bomb() -> str:
    inflated = b'{"flash": {"message": "' + b"a" * (MAX_DECOMPRESSED * 16) + b'"}}'
    return "." + b64(zlib.compress(inflated, 9)) + ".aw9MOw.sig"


HOSTILE_COOKIES: list[tuple[str, str | None]] = [
    ("none", None),
    ("empty", ""),
    ("a-dot", "."),
    ("dots", "...."),
    ("not-base64", "%%%.aw9MOw.sig"),
    ("base64-of-nonsense", b64(b"\xff\xfe not json") + ".x.y"),
    ("json-list", b64(b'["flash"]') + ".x.y"),
    ("json-string", b64(b'"flash"') + ".x.y"),
    ("compressed-not-zlib", "." + b64(b"not zlib at all") + ".x.y"),
    ("compressed-truncated", "." + b64(zlib.compress(b'{"flash": "x"}')[:-6]) + ".x.y"),
    ("zlib-bomb", zlib_bomb()),
    ("deeply-nested-json", "." + b64(zlib.compress(b"[" * 50_000 + b"]" * 50_000)) + ".x.y"),
    ("deeply-nested-flash", b64(json.dumps({"flash": {"message": {"message": {"message": "x"}}}}).encode())),
    ("huge", "a" * 5_000_000),
]


@pytest.mark.parametrize("value", [c[1] for c in HOSTILE_COOKIES], ids=[c[0] for c in HOSTILE_COOKIES])
def test_a_hostile_or_foreign_cookie_gives_none(value: str | None) -> None:
    assert flash_from_session_cookie(value) is None


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_cookie_text_never_raises(value: str) -> None:
    result = flash_from_session_cookie(value)
    assert result is None or isinstance(result, str)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.booleans(), st.booleans())
def test_any_cookie_bytes_never_raise(data: bytes, compress: bool, signed: bool) -> None:
    value = ("." + b64(zlib.compress(data)) if compress else b64(data)) + (".aw9MOw.sig" if signed else "")
    result = flash_from_session_cookie(value)
    assert result is None or isinstance(result, str)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.sampled_from(["flash", "flashes", "_flashes", "message", " t", " m", "x"]),
                                      children, max_size=4),
                    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json_in_a_cookie_never_raises(data: Any) -> None:
    for value in (b64(json.dumps(data).encode()), "." + b64(zlib.compress(json.dumps(data).encode())) + ".t.s"):
        result = flash_from_session_cookie(value)
        assert result is None or isinstance(result, str)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=300).filter(lambda m: m.strip() != ""), st.sampled_from(["success", "error"]))
def test_every_message_a_flask_server_stores_reads_back(message: str, kind: str) -> None:
    value = flask_cookie({"flash": {"message": message, "type": kind}, "quantum_session": QUANTUM_SESSION})
    assert flash_from_session_cookie(value) == message.strip()


# --- the page --------------------------------------------------------------------------------------

PAGE_CASES: list[tuple[str, str, str | None]] = [
    ("bootstrap-success", '<div class="alert alert-success">Email sent successfully to a@b.co!</div>',
     "Email sent successfully to a@b.co!"),
    ("bootstrap-danger", "<div class='alert alert-danger' >Parameter 'recipientEmail' is required</div>",
     "Parameter 'recipientEmail' is required"),
    ("flash-class", '<div class="flash flash-error">Bad input</div>', "Bad input"),
    ("notice", '<p class="notice">Saved</p>', "Saved"),
    ("messages-list", '<ul class="messages"><li class="error">One</li><li>Two</li></ul>', "One Two"),
    ("flashes-list", '<ul class=flashes><li>Logged out</li></ul>', "Logged out"),
    ("word-type-alone", '<div class="alert-danger">Denied</div>', "Denied"),
    ("word-type-underscore", '<div class="flash_notice">Hello</div>', "Hello"),
    ("message-among-others", '<div class="ui message error big">Broken</div>', "Broken"),
    ("role-alert", '<span role="alert">Oops</span>', "Oops"),
    ("role-status", '<output role="Status">Uploaded</output>', "Uploaded"),
    ("uppercase", '<DIV CLASS="Alert Alert-Info">Shout</DIV>', "Shout"),
    ("whitespace-and-tags", '<div class="alert">\n  <strong>Oops!</strong>\n\t bad   thing <br>here </div>',
     "Oops! bad thing here"),
    ("entities", '<div class="alert">Tom &amp; Jerry &lt;3 &#39;x&#39;</div>', "Tom & Jerry <3 'x'"),
    ("script-inside", '<div class="alert">Saved<script>var flash = "no";</script></div>', "Saved"),
    ("several", '<div class="alert alert-success">One</div><p>x</p><div role="alert">Two</div>', "One\nTwo"),
    ("nested-read-once", '<div class="flash"><div class="alert alert-danger">Only once</div></div>', "Only once"),
    ("unclosed-at-end", '<body><div class="alert alert-danger">Unclosed <b>bold', "Unclosed bold"),
    ("closed-by-parent", '<section><div class="alert">Inner</section><p>after</p>', "Inner"),
    ("stray-end-tags", '</div></p><div class="notice">Still</span> here</div>', "Still here"),
    ("empty-alert", '<div class="alert alert-info">  </div>', None),
    ("self-closed", '<div class="alert"/><p>not a flash</p>', None),
    ("no-flash", "<html><body><h1>Welcome</h1></body></html>", None),
    ("similar-words", '<div class="alerting flashy message-count notices-board2" role="button">No</div>', None),
    ("word-with-unknown-type", '<span class="message-meta">12:30</span>', None),
    ("empty", "", None),
]


@pytest.mark.parametrize(("page", "expected"), [c[1:] for c in PAGE_CASES], ids=[c[0] for c in PAGE_CASES])
def test_the_flash_markups_of_a_page(page: str, expected: str | None) -> None:
    assert flash_from_page(page) == expected


def test_a_deeply_nested_page_is_read_without_recursion() -> None:
    depth = 50_000  # far past any recursion limit
    page = "<div>" * depth + '<div class="alert alert-danger">Deep</div>' + "</div>" * depth
    assert flash_from_page(page) == "Deep"


HOSTILE_PAGES: list[tuple[str, str]] = [
    ("larger-than-any-body", "<div class='alert'>" + "x" * 5_000_000 + "</div>"),
    ("all-open-brackets", "<" * 100_000),
    ("comment-starts", "<!--" * 10_000),
    ("charref-out-of-range", "<div class='alert'>&#99999999999;</div>"),
    ("cdata-of-open-tags", "<![CDATA[" + "<a " * 5000),
    ("endless-attributes", '<div class="alert"' + " a=" * 20_000),
    ("stray-end-tags-under-a-deep-stack", "<a>" * 150_000 + "</b>" * 150_000),
    ("unclosed-paragraphs-in-an-alert", "<div class='alert'>" + "<p>x" * 100_000),
]


@pytest.mark.parametrize("page", [c[1] for c in HOSTILE_PAGES], ids=[c[0] for c in HOSTILE_PAGES])
def test_huge_or_broken_pages_never_raise(page: str) -> None:
    result = flash_from_page(page)
    assert result is None or isinstance(result, str)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_page_text_never_raises(page: str) -> None:
    result = flash_from_page(page)
    assert result is None or isinstance(result, str)


TAGS = st.sampled_from(["div", "p", "span", "ul", "li", "script", "style", "br", "b", "section"])
ATTRS = st.sampled_from(["", ' class="alert"', ' class="flash flash-error"', ' role="status"', " class=notice",
                         ' class="x"', " role", ' class="alert'])
PIECES = st.one_of(st.builds(lambda t, a: f"<{t}{a}>", TAGS, ATTRS), st.builds(lambda t: f"</{t}>", TAGS),
                   st.text(max_size=10), st.sampled_from(["<!--", "-->", "&amp;", "&#", "<!", "<?x", "/>", "<"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=60))
def test_any_tag_soup_never_raises(pieces: list[str]) -> None:
    result = flash_from_page("".join(pieces))
    assert result is None or (isinstance(result, str) and result == result.strip() and result != "")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["alert alert-success", "alert alert-danger", "flash", "notice"]))
def test_every_escaped_message_in_a_flash_element_reads_back_normalised(message: str, classes: str) -> None:
    page = f'<html><body><div class="{classes}">{html.escape(message)}</div><p>rest</p></body></html>'
    assert flash_from_page(page) == (" ".join(message.split()) or None)
