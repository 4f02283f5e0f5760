"""The Components page in a real browser against a real `qrm serve` of tests/support/suites_api's workspace
(shop: .q pages on the Quantum stand-in; blog: no source), with one more shop page whose quirks the scan
repairs: the totals, the problems of the repaired file, the Rescan and Generate tests buttons and what a
read-only token sees."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Browser, expect

from reconciler.flows.desired import load_desired
from reconciler.flows.workspace import open_workspace
from tests.support import api_server
from tests.support.browser import screenshot
from tests.support.dashboard_session import signed_in
from tests.support.git_repos import git
from tests.support.suites_api import PAGES

# line 2: a bare & (escaped), line 3: an unclosed <br> (closed): both repaired, both reported; one action, one
# form, two queries (one of them the action's)
MENU = """\
<q:component name="Menu" type="page">
<h1>Fish & chips</h1>
<p>Open<br>late</p>
<q:query name="dishes" datasource="shop-db">SELECT id, name FROM dishes</q:query>
<q:action name="order" method="POST">
  <q:param name="dish" type="string" required="true" />
  <q:query name="addOrder" datasource="shop-db" type="insert">INSERT INTO orders (dish) VALUES (:dish)</q:query>
</q:action>
<form method="POST"><input name="dish" required></form>
</q:component>
"""


def test_rescan_shows_the_components_totals_and_the_problems_of_repaired_files(suites_served: api_server.Server,
                                                                               browser: Browser) -> None:
    pages = suites_served.root / "shop-app" / "components"
    (pages / "menu.q").write_text(MENU)
    git(suites_served.root, "add", "-A")
    git(suites_served.root, "commit", "-qm", "the menu page")
    context, page = signed_in(suites_served, browser, "everything")
    page.goto(suites_served.url + "/ui/components")
    shop = page.locator("#project-shop")
    expect(shop.get_by_role("heading", name="shop")).to_be_visible()
    page.evaluate("window.qrmNotReloaded = true")
    shop.get_by_role("button", name="Rescan shop").click()
    expect(shop.get_by_role("status")).to_have_text(
        f"Rescanned shop: {len(PAGES) + 1} components | 1 actions | 1 forms | 2 queries ({len(PAGES) + 1} added)")
    rows = shop.locator("table").first.locator("tbody tr")
    expect(rows).to_have_count(len(PAGES) + 1)
    expect(rows.filter(has_text="menu.q").locator("td")).to_have_text(["Menu", "page", "/menu", "1", "1", "2",
                                                                       "repaired"])
    expect(rows.filter(has_text="index.q").locator("td")).to_have_text(["Home", "page", "/", "0", "0", "0", "xml"])
    expect(shop.locator("tfoot td")).to_have_text([f"{len(PAGES) + 1} components", "1", "1", "2", ""])
    expect(shop.get_by_role("heading", name="Problems of repaired files")).to_be_visible()
    problems = shop.locator("table").nth(1).locator("tbody tr")
    expect(problems.filter(has_text="bare &").locator("td")).to_have_text(
        ["components/menu.q", "2", "bare & in text escaped"])
    expect(problems.filter(has_text="<br>").locator("td")).to_have_text(
        ["components/menu.q", "3", "unclosed void tag <br> closed"])
    assert page.evaluate("window.qrmNotReloaded === true")
    expect(page.locator("#project-blog")).to_contain_text("Not scanned yet")
    screenshot(page, "components")

    page.set_viewport_size({"width": 375, "height": 800})
    expect(shop.get_by_role("button", name="Rescan shop")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    context.close()


def test_generate_tests_writes_and_commits_the_suite_naming_the_viewer(suites_served: api_server.Server,
                                                                       browser: Browser) -> None:
    context, page = signed_in(suites_served, browser, "everything")
    page.goto(suites_served.url + "/ui/components")
    shop = page.locator("#project-shop")
    shop.get_by_role("button", name="Generate tests for shop").click()
    expect(shop.get_by_role("status")).to_contain_text(re.compile(r"Generated suite shop-\S+: \d+ cases \("))
    outcome = shop.get_by_role("status").inner_text()
    head = git(suites_served.root, "log", "-1", "--format=%H%n%B")
    assert "wrote manifests/" in outcome  # the first generation of this served workspace
    assert head.startswith(outcome.split("commit ")[1].strip())
    assert "Requested by token 'everything'." in head
    context.close()


def test_without_javascript_the_buttons_post_forms_and_show_the_outcome(suites_served: api_server.Server,
                                                                        browser: Browser) -> None:
    context, page = signed_in(suites_served, browser, "everything", java_script_enabled=False)
    page.goto(suites_served.url + "/ui/components")
    page.get_by_role("button", name="Rescan shop").click()
    expect(page).to_have_url(suites_served.url + "/ui/components/shop/scan")
    expect(page.locator("#project-shop").get_by_role("status")).to_contain_text("Rescanned shop")
    context.close()


def test_a_read_only_token_sees_the_components_but_no_button(suites_served: api_server.Server,
                                                             browser: Browser) -> None:
    context, page = signed_in(suites_served, browser, "reader")
    page.goto(suites_served.url + "/ui/components")
    expect(page.get_by_role("heading", name="shop")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Rescan|Generate tests"))).to_have_count(0)
    context.close()
    for action in ("scan", "generate"):
        refused = httpx.post(suites_served.url + f"/ui/components/shop/{action}", timeout=30,
                             headers={"Authorization": f"Bearer {suites_served.tokens['reader']}"})
        assert refused.status_code == 403


def test_an_unknown_project_is_refused(suites_served: api_server.Server) -> None:
    answer = httpx.post(suites_served.url + "/ui/components/nowhere/scan", timeout=30,
                        headers={"Authorization": f"Bearer {suites_served.tokens['writer']}"})
    assert answer.status_code == 404
    assert "unknown project 'nowhere'" in answer.text


def test_a_project_without_source_says_why_it_cannot_be_scanned(suites_served: api_server.Server,
                                                                 browser: Browser) -> None:
    context, page = signed_in(suites_served, browser, "everything")
    page.goto(suites_served.url + "/ui/components")
    blog = page.locator("#project-blog")
    blog.get_by_role("button", name="Rescan blog").click()
    expect(blog.get_by_role("alert")).to_have_text("project 'blog' has no source: folder to scan")
    expect(blog).to_contain_text("Not scanned yet")
    expect(page.locator("#project-shop").get_by_role("alert")).to_have_count(0)
    context.close()


def test_without_javascript_a_refused_action_answers_409_with_the_reason(suites_served: api_server.Server) -> None:
    answer = httpx.post(suites_served.url + "/ui/components/blog/scan", timeout=30,
                        headers={"Authorization": f"Bearer {suites_served.tokens['writer']}"})
    assert answer.status_code == 409
    assert "project &#39;blog&#39; has no source: folder to scan" in answer.text


def test_the_example_workspace_s_components_page_never_shows_a_secret(served: api_server.Server,
                                                                       browser: Browser) -> None:
    context, page = signed_in(served, browser, "everything")
    page.goto(served.url + "/ui/components")
    expect(page.get_by_role("heading", name="Components", exact=True)).to_be_visible()
    names = list(load_desired(open_workspace(served.root)).projects)
    assert names
    expect(page.locator("main h2")).to_have_text(names)  # every project, in manifest order
    assert api_server.CANARY not in page.content()
    context.close()
