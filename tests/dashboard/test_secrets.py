"""The Secrets page in a real browser: names, scopes and when each was last set, the same rows GET
/resources/secrets answers; never a value (neither CANARY nor a secret set here), for every token with read."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import Browser, expect

from tests.support import api_server
from tests.support.browser import screenshot
from tests.support.dashboard_session import served_environment, signed_in

GLOBAL_VALUE = "global-" + os.urandom(12).hex()


@pytest.fixture(scope="module", autouse=True)
def global_secret(served: api_server.Server) -> None:
    """A global secret beside the example's project and environment ones."""
    api_server.qrm(served.root, served_environment(served), "secrets", "set", "SMTP_PASSWORD",
                   input=GLOBAL_VALUE + "\n")


@pytest.mark.parametrize("token", ["reader", "trusted", "everything"])
def test_every_reader_sees_names_scopes_and_last_set_but_no_value(served: api_server.Server, browser: Browser,
                                                                   token: str) -> None:
    context, page = signed_in(served, browser, token)
    page.get_by_role("link", name="Secrets").click()
    expect(page.get_by_role("heading", name="Secrets", level=1)).to_be_visible()
    listed = served.get("/resources/secrets", served.tokens["reader"]).json()["secrets"]
    kinds = {1: "global", 2: "project", 3: "environment"}
    expected = [[s["name"], kinds[len(s["key"].split("/"))] + (f" {s['key'].rpartition('/')[0]}" if "/" in s["key"]
                                                              else ""), s["changed_at"]] for s in listed]
    assert [row[:2] for row in expected] == [["SMTP_PASSWORD", "global"],
                                             ["BLOG_DB_PASSWORD", "project quantumblog"],
                                             ["BLOG_DB_PASSWORD", "environment quantumblog/prod"]]
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(3)
    shown = [[cell.inner_text() for cell in row.locator("td").all()] for row in rows.all()]
    assert [row[:2] for row in shown] == [row[:2] for row in expected]
    # when: relative to now ("5 min ago"), the exact time the API gives in the <time> element
    assert all(re.fullmatch(r"\d+ (s|min|h|d) ago", row[2]) for row in shown), shown
    assert [row.locator("time").get_attribute("datetime") for row in rows.all()] == [row[2] for row in expected]
    expect(page.get_by_role("table")).to_contain_text("3 secret(s)")
    content = page.content()
    assert api_server.CANARY not in content and GLOBAL_VALUE not in content
    if token == "reader":
        screenshot(page, "secrets")
    context.close()


def test_a_token_without_read_is_refused_as_by_the_api(served: api_server.Server, browser: Browser) -> None:
    assert served.get("/resources/secrets", served.tokens["keeper"]).status_code == 403
    context = browser.new_context()
    page = context.new_page()
    page.goto(served.url + "/ui/login")
    page.get_by_label("API token").fill(served.tokens["keeper"])
    page.get_by_role("button", name="Sign in").click()
    page.goto(served.url + "/ui/secrets")
    expect(page.get_by_role("alert")).to_have_text("✖ keeper has no 'read' scope")
    assert "SMTP_PASSWORD" not in page.content()
    context.close()
