"""Signing in to the dashboard, in a real browser against a real `qrm serve`: the one-time login link it
prints, the token form, the cookie's attributes, sign-out, and what a cross-site request gets."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.support import api_server
from tests.support.browser import login_link, screenshot
from tests.support.dashboard_session import signed_in


def test_the_login_link_signs_in_once_with_an_httponly_strict_cookie(served: api_server.Server,
                                                                      browser: Browser) -> None:
    link = login_link(served.log())
    context = browser.new_context()
    page = context.new_page()
    page.goto(served.url + link)
    expect(page).to_have_url(served.url + "/ui/")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_text("console")).to_be_visible()
    [cookie] = [c for c in context.cookies() if c["name"] == "qrm_session"]
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
    assert page.evaluate("document.cookie") == ""  # the page's scripts cannot read it
    screenshot(page, "overview")

    again = browser.new_context().new_page()
    again.goto(served.url + link)
    expect(again.get_by_role("alert")).to_contain_text("used already")
    context.close()


@pytest.mark.parametrize(("token", "shown"), [("reader", "reader (read)"),
                                              ("everything", "everything (read, write, secrets)")])
def test_a_token_signs_in_through_the_form(served: api_server.Server, browser: Browser, token: str,
                                           shown: str) -> None:
    page = browser.new_page()
    page.goto(served.url + "/ui/")
    expect(page.get_by_role("heading", name="Sign in to qrm")).to_be_visible()
    page.get_by_label("API token").fill(served.tokens[token])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(served.url + "/ui/")
    expect(page.locator("header")).to_contain_text(shown)
    assert served.tokens[token] not in page.content()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to qrm")).to_be_visible()
    page.goto(served.url + "/ui/")
    expect(page.get_by_role("heading", name="Sign in to qrm")).to_be_visible()
    page.close()


@pytest.mark.parametrize(("typed", "reason"), [("qrm_not-a-token", "not known"), ("", "")])
def test_a_wrong_token_is_refused_on_the_form(served: api_server.Server, typed: str, reason: str) -> None:
    answer = httpx.post(served.url + "/ui/login", data={"token": typed}, follow_redirects=False)
    assert answer.status_code in (401, 422) if typed == "" else answer.status_code == 401
    assert "qrm_session" not in answer.cookies
    assert reason in answer.text


def test_without_a_session_every_page_asks_to_sign_in(served: api_server.Server) -> None:
    answer = httpx.get(served.url + "/ui/")
    assert answer.status_code == 401
    assert "Sign in to qrm" in answer.text


@contextmanager
def other_site(html: str) -> Iterator[str]:
    """Another origin (localhost, not 127.0.0.1, on its own port) serving one page: a forger's site."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html.encode())

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()


def test_a_form_posted_from_another_site_reaches_the_dashboard_without_the_session(
        served: api_server.Server, browser: Browser) -> None:
    context, page = signed_in(served, browser, "everything")
    forged = (f'<form method="post" action="{served.url}/ui/logout"><input name="csrf" value="guess"></form>'
              "<script>document.forms[0].submit()</script>")
    with other_site(forged) as url:
        page.goto(url)
        expect(page).to_have_url(served.url + "/ui/logout")
        # SameSite=Strict: the browser sent no cookie, so the post is refused as from nobody
        expect(page.get_by_role("heading", name="Sign in to qrm")).to_be_visible()
    page.goto(served.url + "/ui/")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()  # still signed in
    context.close()


@pytest.mark.parametrize(("headers", "data", "reason"), [
    ({}, {}, "CSRF token is missing or wrong"),
    ({}, {"csrf": "0" * 32}, "CSRF token is missing or wrong"),
    ({"Origin": "http://evil.example"}, {"csrf": "x"}, "cross-site request (from http://evil.example)"),
    ({"Sec-Fetch-Site": "cross-site"}, {}, "cross-site request is refused"),
])
def test_a_post_with_the_cookie_but_not_from_a_dashboard_page_is_refused(
        served: api_server.Server, browser: Browser, headers: dict[str, str], data: dict[str, str],
        reason: str) -> None:
    context, page = signed_in(served, browser, "everything")
    cookie = next(c["value"] for c in context.cookies() if c["name"] == "qrm_session")
    answer = httpx.post(served.url + "/ui/logout", cookies={"qrm_session": cookie}, headers=headers, data=data)
    assert answer.status_code == 403
    assert reason in answer.text
    page.reload()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    context.close()
