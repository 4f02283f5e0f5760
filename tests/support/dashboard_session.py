"""Signing a browser in to a served dashboard with one of its tokens, and the served workspace's environment,
for the Plan, Secrets, History and accessibility tests."""

from __future__ import annotations

from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.support import api_server


def signed_in(server: api_server.Server, browser: Browser, token: str, **context_options: object
              ) -> tuple[BrowserContext, Page]:
    """A new browser context signed in through the sign-in form with `server.tokens[token]`, on the overview."""
    context = browser.new_context(**context_options)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto(server.url + "/ui/login")
    page.get_by_label("API token").fill(server.tokens[token])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(server.url + "/ui/")
    return context, page


def served_environment(server: api_server.Server) -> dict[str, str]:
    """The environment the `served` fixture runs qrm with (its HOME beside the workspace)."""
    return api_server.environment(server.root.parent / "home")
